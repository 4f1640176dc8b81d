"""Datasets of the grokking literature in pure NumPy: algorithmic tasks generated exactly, and image tasks read
from installed packages (`grokkit.images`)."""

from __future__ import annotations

import difflib
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from grokkit.errors import UsageError
from grokkit.images import IMAGE_CLASSES, IMAGE_SHAPES, LOADERS

MAX_EXAMPLES = 50_000_000
"""Largest input space we generate (int32 tokens: ~600 MB for 3 tokens per example)."""

MAX_TOKENS = 3 * MAX_EXAMPLES
"""Largest token array we generate: sparse parity's examples are n_bits + 1 tokens long."""

MAX_P = math.isqrt(MAX_EXAMPLES)
"""Largest modulus: p * p examples stay within MAX_EXAMPLES (7071)."""


def brief(value: object, limit: int = 40) -> str:
    """A value for an error message, never longer than about `limit` characters: a 400-digit number is
    "a 400-digit number", a long text is cut with "..."."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**limit:
        return f"a {len(str(abs(value)))}-digit {'negative ' if value < 0 else ''}number"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class Task:
    """A named task: a formula over an input space, with the paper it comes from."""

    name: str
    formula: str
    source: str
    family: str  # "modular", "s5", "rand", "parity" or "image"
    needs_prime: bool = False


@dataclass(frozen=True)
class Dataset:
    """Every example of a task once; tokens[n, seq] with the answer labels[n] as target.

    Pairwise tasks use the sequence `[x, y, =]` over the vocabulary `0..n_values-1`
    (operands) plus `n_values` (the `=` token). Sparse parity uses `[b_1, ..., b_n, =]`
    with bits 0/1 and `=` = 2. Image tasks have no tokens: `tokens` holds each image's
    `n_values` real-valued features (float32), which the MLP's first layer reads the way it
    reads one operand's one-hot vector.
    """

    task: str
    tokens: np.ndarray  # [n_examples, seq_len] int32, or [n_examples, n_values] float32 for image tasks
    labels: np.ndarray  # [n_examples] int32
    n_values: int  # operand tokens are 0..n_values-1 and "=" is n_values; image tasks: features per image
    n_classes: int

    @property
    def vocab_size(self) -> int:
        return self.n_values + 1

    @property
    def n_operands(self) -> int:
        return self.tokens.shape[1] - 1

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Split:
    """Indices into a Dataset; disjoint and together complete."""

    train_idx: np.ndarray  # [n_train] int32
    val_idx: np.ndarray  # [n_val] int32


_P = "Power et al. 2022, Grokking (appendix A.1.1)"


def _mod_div(x, y, p):
    return x * _inverses(p)[y] % p


def _div_if_odd_else_sub(x, y, p):
    return np.where(y % 2 == 1, x * _inverses(p)[y] % p, (x - y) % p)


_MODULAR: dict[str, tuple[str, str, Callable, bool, bool]] = {
    # name: (formula, source, label function, needs a prime, excludes y == 0)
    "mod-add": ("(x + y) mod p", "Power et al. 2022; Nanda et al. 2023", lambda x, y, p: (x + y) % p, False, False),
    "mod-sub": ("(x - y) mod p", _P, lambda x, y, p: (x - y) % p, False, False),
    "mod-mul": ("(x * y) mod p", "Lee et al. 2024 (Grokfast)", lambda x, y, p: (x * y) % p, False, False),
    "mod-div": ("(x / y) mod p, y != 0", _P, _mod_div, True, True),
    "mod-div-odd-sub": ("x / y if y odd else x - y (mod p)", _P, _div_if_odd_else_sub, True, False),
    "mod-x2-y2": ("(x^2 + y^2) mod p", _P, lambda x, y, p: (x * x + y * y) % p, False, False),
    "mod-x2-xy-y2": ("(x^2 + xy + y^2) mod p", _P, lambda x, y, p: (x * x + x * y + y * y) % p, False, False),
    "mod-x2-xy-y2-x": (
        "(x^2 + xy + y^2 + x) mod p",
        _P,
        lambda x, y, p: (x * x + x * y + y * y + x) % p,
        False,
        False,
    ),
    "mod-x3-xy": ("(x^3 + xy) mod p", _P, lambda x, y, p: (x * x % p * x + x * y) % p, False, False),
    "mod-x3-xy2-y": (
        "(x^3 + xy^2 + y) mod p",
        _P,
        lambda x, y, p: (x * x % p * x + x * (y * y % p) + y) % p,
        False,
        False,
    ),
}

_S5: dict[str, tuple[str, Callable]] = {
    "s5-compose": ("x . y (composition in S5)", lambda c, inv, x, y: c[x, y]),
    "s5-conjugate": ("x . y . x^-1 in S5", lambda c, inv, x, y: c[c[x, y], inv[x]]),
    "s5-xyx": ("x . y . x in S5", lambda c, inv, x, y: c[c[x, y], x]),
}

TASKS: dict[str, Task] = {
    **{
        name: Task(name, formula, source, "modular", needs_prime)
        for name, (formula, source, _, needs_prime, _) in _MODULAR.items()
    },
    **{name: Task(name, formula, _P, "s5") for name, (formula, _) in _S5.items()},
    "rand": Task(
        "rand",
        "random table T[x, y] in [0, p) (memorization-only control)",
        "Power et al. 2022 (random operation); Liu et al. 2022",
        "rand",
    ),
    "sparse-parity": Task(
        "sparse-parity",
        "XOR of the first k of n random bits",
        "Barak et al. 2022, Hidden progress in deep learning",
        "parity",
    ),
    "digits": Task(
        "digits",
        "8 x 8 handwritten digit image (64 pixels in [0, 1]) -> digit",
        "scikit-learn's bundled UCI optical digits (Alpaydin & Kaynak 1998); the images extra",
        "image",
    ),
    "mnist1d": Task(
        "mnist1d",
        "1-D digit signal (40 samples) -> digit",
        "Greydanus 2020, MNIST-1D (the mnist1d package's generator); the images extra",
        "image",
    ),
}

S5_ORDER = 120


def get_task(name: str) -> Task:
    """Look up a task by name; unknown names raise a UsageError that suggests the closest."""
    if name in TASKS:
        return TASKS[name]
    close = difflib.get_close_matches(name, TASKS, n=3, cutoff=0.4) if len(name) <= 100 else []
    hint = f"did you mean {', '.join(close)}?" if close else f"choose one of {', '.join(TASKS)}"
    raise UsageError(f"unknown task {brief(name)}: {hint}", option="--task")


def is_prime(n: int) -> bool:
    """Deterministic primality by trial division: for the sizes we handle (p <= MAX_P), never unbounded input."""
    if n < 2:
        return False
    if n < 4:
        return True
    if n % 2 == 0:
        return False
    return all(n % d for d in range(3, int(n**0.5) + 1, 2))


def _inverses(p: int) -> np.ndarray:
    """Multiplicative inverses mod prime p (0 maps to 0), by Fermat's little theorem."""
    values = np.arange(p, dtype=np.int64)
    result = np.ones(p, dtype=np.int64)
    base, exponent = values % p, p - 2
    while exponent:
        if exponent & 1:
            result = result * base % p
        base = base * base % p
        exponent >>= 1
    result[0] = 0
    return result


def s5_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Permutations of 5 in lexicographic order, composition table and inverses.

    Composition convention: (x . y)(i) = x(y(i)), i.e. apply y first.
    """
    perms = np.array(list(itertools.permutations(range(5))), dtype=np.int64)  # [120, 5]
    place_values = 5 ** np.arange(4, -1, -1)  # base-5 code of a permutation
    index_of = np.full(5**5, -1, dtype=np.int64)
    index_of[perms @ place_values] = np.arange(S5_ORDER)
    composed = perms[np.arange(S5_ORDER)[:, None, None], perms[None, :, :]]  # [x, y, i] = x[y[i]]
    compose = index_of[composed @ place_values]
    inverse = index_of[np.argsort(perms, axis=1) @ place_values]
    return perms, compose, inverse


TASK_PARAMETERS = {
    "modular": ("p",),
    "rand": ("p",),
    "s5": (),
    "parity": ("n_bits", "k_bits", "n_samples"),
    "image": (),
}
"""The data settings each task family reads; the others mean nothing for it."""


def task_parameters(task: str) -> tuple[str, ...]:
    """Names of the data settings (p, n_bits, ...) that a task uses."""
    return TASK_PARAMETERS[get_task(task).family]


def task_label(task: str, p: int, n_bits: int, k_bits: int, n_samples: int) -> str:
    """A task with the settings it uses, for names and headers: "mod-add-p97", "sparse-parity-n12-k3-s2000"."""
    short = {"p": f"p{p}", "n_bits": f"n{n_bits}", "k_bits": f"k{k_bits}", "n_samples": f"s{n_samples}"}
    return "-".join([task, *(short[name] for name in task_parameters(task))])


def task_shape(task: str, p: int, n_bits: int = 12) -> tuple[int, int, int]:
    """(vocabulary size, sequence length, classes) of a task's examples, without generating them.

    An image task is one real-valued operand: (features, 2, classes), as the MLP's one first-layer table reads it.
    """
    family = get_task(task).family
    if family == "image":
        return IMAGE_SHAPES[task][1], 2, IMAGE_CLASSES
    if family == "parity":
        return 3, n_bits + 1, 2
    n_values = S5_ORDER if family == "s5" else p
    return n_values + 1, 3, n_values


def input_space_size(task: str, p: int, n_bits: int = 0, n_samples: int = 0) -> int:
    """Number of examples a task has, without generating them."""
    family = get_task(task).family
    if family == "image":
        return IMAGE_SHAPES[task][0]
    if family == "s5":
        return S5_ORDER**2
    if family == "parity":
        return n_samples
    if task == "mod-div":
        return p * (p - 1)
    return p * p


def validate_task_params(task: str, p: int, n_bits: int = 12, k_bits: int = 3, n_samples: int = 2000) -> Task:
    """Check (task, p, parity sizes) and raise a UsageError that says what would be right.

    Sizes are checked before anything that loops over p (the primality test, the nearest prime).
    """
    spec = get_task(task)
    if spec.family in ("modular", "rand"):
        if p < 2:
            raise UsageError(f"p must be at least 2, got {brief(p)}", option="--p")
        if p > MAX_P or input_space_size(task, p) > MAX_EXAMPLES:
            size = f"{input_space_size(task, p):,} examples" if p <= MAX_EXAMPLES else "too many examples"
            raise UsageError(
                f"p={brief(p)} gives {size}, over the limit of {MAX_EXAMPLES:,}; use p <= {MAX_P}", option="--p"
            )
        if spec.needs_prime and not is_prime(p):
            nearby = [q for q in range(max(2, p - 20), p + 20) if is_prime(q)]
            closest = min(nearby, key=lambda q: abs(q - p))
            raise UsageError(f"task '{task}' needs a prime p (division), got {p}; try {closest}", option="--p")
    if spec.family == "parity":
        if not 1 <= n_bits <= 62:
            raise UsageError(f"n-bits must be in [1, 62], got {brief(n_bits)}", option="--n-bits")
        if not 1 <= k_bits <= n_bits:
            raise UsageError(f"k-bits must be in [1, n-bits={n_bits}], got {brief(k_bits)}", option="--k-bits")
        most = min(2**n_bits, MAX_EXAMPLES, MAX_TOKENS // (n_bits + 1))
        if not 2 <= n_samples <= most:
            raise UsageError(
                f"n-samples must be in [2, {most:,}] for {n_bits} bits, got {brief(n_samples)}",
                option="--n-samples",
            )
    return spec


def make_dataset(
    task: str, p: int = 97, *, seed: int = 0, n_bits: int = 12, k_bits: int = 3, n_samples: int = 2000
) -> Dataset:
    """Every example of `task` exactly once, in a fixed order (x-major for pairs; the package's for images)."""
    spec = validate_task_params(task, p, n_bits, k_bits, n_samples)
    if spec.family == "image":
        features, labels = LOADERS[task]()
        return Dataset(task, features, labels, n_values=features.shape[1], n_classes=IMAGE_CLASSES)
    if spec.family == "parity":
        return _sparse_parity(n_bits, k_bits, n_samples, seed)
    n_values = S5_ORDER if spec.family == "s5" else p
    x, y = (a.ravel() for a in np.meshgrid(np.arange(n_values), np.arange(n_values), indexing="ij"))
    if spec.family == "modular":
        _, _, label_fn, _, excludes_zero = _MODULAR[task]
        if excludes_zero:
            x, y = x[y != 0], y[y != 0]
        labels = label_fn(x, y, p)
    elif spec.family == "s5":
        _, compose, inverse = s5_tables()
        labels = _S5[task][1](compose, inverse, x, y)
    else:  # rand: a fixed random table, seeded by the data seed
        labels = np.random.default_rng([seed, p]).integers(0, p, size=p * p)
    equals = np.full_like(x, n_values)
    tokens = np.stack([x, y, equals], axis=1).astype(np.int32)
    return Dataset(task, tokens, labels.astype(np.int32), n_values=n_values, n_classes=n_values)


def _sparse_parity(n_bits: int, k_bits: int, n_samples: int, seed: int) -> Dataset:
    rng = np.random.default_rng([seed, n_bits, k_bits])
    codes = rng.choice(2**n_bits, size=n_samples, replace=False)
    tokens = np.full((n_samples, n_bits + 1), 2, dtype=np.int32)  # bit i is column i; "=" (2) last
    for i in range(n_bits):  # a column at a time: no [n, n_bits] int64 temporary
        tokens[:, i] = (codes >> i) & 1
    labels = tokens[:, :k_bits].sum(axis=1) % 2
    return Dataset("sparse-parity", tokens, labels.astype(np.int32), n_values=2, n_classes=2)


def split_dataset(n_examples: int, train_frac: float, seed: int) -> Split:
    """A deterministic random split of range(n_examples) by (train fraction, seed)."""
    if not 0.0 < train_frac < 1.0:
        raise UsageError(f"train fraction must be strictly between 0 and 1, got {train_frac}", option="--train-frac")
    n_train = round(train_frac * n_examples)
    if n_train == 0 or n_train == n_examples:
        side = "train" if n_train == 0 else "validation"
        raise UsageError(
            f"train fraction {train_frac} of {n_examples} examples leaves an empty {side} set",
            option="--train-frac",
        )
    order = np.random.default_rng(seed).permutation(n_examples).astype(np.int32)
    return Split(train_idx=np.sort(order[:n_train]), val_idx=np.sort(order[n_train:]))
