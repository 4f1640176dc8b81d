"""Each task's basis: the group its answers live in, and an orthonormal basis of functions on it grouped
by irreducible representation (pure NumPy, built once per run).

Chughtai, Chan & Nanda 2023 ("A Toy Model of Universality"): a network trained on composition in a
finite group G computes logits(x, y, z) ~ sum over a few key irreps rho of w_rho chi_rho(x y z^-1).
The functions on G split into isotypic components, one per irrep rho, each of dimension d_rho^2, with
projector (P_rho f)(g) = (d_rho / |G|) sum_h chi_rho(h) f(h^-1 g). For a cyclic group the real
components are the Fourier frequencies k = 1..n//2 (cos and sin of 2 pi k g / n), which is Nanda et
al. 2023's basis for modular addition.

- cyclic (`mod-add`, `mod-sub`): Z_p, elements = residues.
- multiplicative (`mod-mul`, `mod-div`, p prime): the non-zero residues form Z_{p-1} under
  multiplication; residue x is element log_g(x) for the smallest primitive root g, so x*y and x/y are
  log x +- log y mod (p-1). Examples whose operands or answer involve 0 are not in the group and are
  left out of the measures.
- S5 (`s5-compose`, `s5-conjugate`, `s5-xyx`): the 7 irreps of S5 from characters computed from the
  permutations (fixed points, their squares, the sign), never typed in.
- spectrum only (the other modular tasks, `mod-mul` with p not prime): Z_p's Fourier basis for the
  embedding's spectrum; their answers are not a group product of the operands, so restricted and
  excluded loss are not defined.
- `sparse-parity` and `rand` have no group basis (parity has its own measure, `grokkit.parity`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from grokkit.data import S5_ORDER, Dataset, get_task, is_prime, s5_tables

CYCLIC_TASKS = {"mod-add": 1, "mod-sub": -1}
"""Tasks whose answer is a + sign * b mod p."""
MULTIPLICATIVE_TASKS = {"mod-mul": 1, "mod-div": -1}
"""Tasks whose answer is a * b^sign mod p: a + sign * b in the discrete-log labels (p prime)."""
MEASURE_NAMES = ("restricted_loss", "excluded_loss", "embed_gini", "relevant_weight_share", "bit_weight_gini")
"""The progress measures' names in metrics.jsonl, each recorded when the task has it (README, Progress measures)."""
SIGNAL_NAMES = ("dist_from_init", "last_layer_norm", "neuron_gini", "embed_eff_rank", "softmax_collapse", "grad_cosine")
"""The task-agnostic signals' names in metrics.jsonl, recorded for every task and model (`grokkit.signals`)."""
S5_IRREPS = ("sign", "standard", "standard_sign", "5d", "5d_sign", "6d")
"""The non-trivial irreps of S5 in `s5_characters`' order (dimensions 1, 4, 4, 5, 5, 6)."""


@dataclass(frozen=True)
class GroupBasis:
    """An orthonormal basis of functions on a group, grouped into components (irreps/frequencies)."""

    group: str  # "Z_97", "Z_96 (discrete log base 5)", "S5"
    basis_GG: np.ndarray  # [G, G] float32, orthonormal rows; row r belongs to component_of_row[r]
    component_of_row: np.ndarray  # [G] int32: 0 = the trivial (constant) component, 1..R the others
    labels: tuple[str, ...]  # R component names: frequencies "1".."n//2", or irrep names
    value_of_element: np.ndarray  # [G] int32: the operand token of each group element
    answer_defined: bool  # whether an example's answer is a group element (restricted/excluded loss)

    @property
    def dims(self) -> np.ndarray:
        """Each component's dimension (rows of the basis): [R]."""
        return np.bincount(self.component_of_row, minlength=len(self.labels) + 1)[1:]

    @property
    def is_frequency(self) -> bool:
        """Components are Fourier frequencies (named by k), not irreps."""
        return not self.group.startswith("S")

    def answer_elements(self, dataset: Dataset) -> np.ndarray:
        """Each example's answer as a group element, -1 where it is outside the group: [N] int32."""
        element_of_value = np.full(dataset.n_classes, -1, np.int64)
        element_of_value[self.value_of_element] = np.arange(len(self.value_of_element))
        answer = element_of_value[dataset.labels]
        outside = (element_of_value[dataset.tokens[:, :-1]] < 0).any(axis=1)
        return np.where(outside, -1, answer).astype(np.int32)


def fourier_basis(n: int) -> np.ndarray:
    """Orthonormal Fourier basis over Z_n, rows: constant, cos(w_1 x), sin(w_1 x), ... [n, n]."""
    x = np.arange(n)
    rows = [np.ones(n)]
    for k in range(1, n // 2 + 1):
        rows.append(np.cos(2 * np.pi * k * x / n))
        if 2 * k != n:
            rows.append(np.sin(2 * np.pi * k * x / n))
    basis = np.stack(rows)
    return (basis / np.linalg.norm(basis, axis=1, keepdims=True)).astype(np.float32)


def frequency_of_row(n: int) -> np.ndarray:
    """The frequency k of each row of `fourier_basis(n)` (0 for the constant): [n] int32."""
    return ((np.arange(n) + 1) // 2).astype(np.int32)


def primitive_root(p: int) -> int:
    """The smallest generator of the multiplicative group mod a prime p."""
    order = p - 1
    factors = {q for q in range(2, order + 1) if order % q == 0 and is_prime(q)}
    return next(g for g in range(1, p) if all(pow(g, order // q, p) != 1 for q in factors))


def discrete_log_table(p: int) -> tuple[int, np.ndarray]:
    """(g, power_J): g the smallest primitive root mod p, power_J[j] = g^j mod p for j in 0..p-2."""
    g = primitive_root(p)
    power = np.ones(p - 1, np.int64)
    for j in range(1, p - 1):
        power[j] = power[j - 1] * g % p
    return g, power


def cycle_basis(n: int, value_of_element: np.ndarray, group: str, answer_defined: bool) -> GroupBasis:
    labels = tuple(str(k) for k in range(1, n // 2 + 1))
    return GroupBasis(group, fourier_basis(n), frequency_of_row(n), labels, value_of_element.astype(np.int32),
                      answer_defined)  # fmt: skip


@cache
def s5_characters() -> tuple[np.ndarray, np.ndarray]:
    """(characters [7, 120], dimensions [7]) of S5's irreps: trivial, then S5_IRREPS' order.

    From the permutation character (fixed points): standard = fix - 1; Sym^2(standard) =
    trivial + standard + 5d and Lambda^2(standard) = 6d, via chi(g)^2 and chi(g^2); the sign
    twists give the other three.
    """
    perms, compose, _ = s5_tables()
    fixed = (perms == np.arange(5)).sum(axis=1).astype(np.float64)
    standard = fixed - 1
    standard_of_square = standard[compose[np.arange(S5_ORDER), np.arange(S5_ORDER)]]
    later = np.triu(np.ones((5, 5), bool), k=1)  # pairs i < j
    inversions = ((perms[:, :, None] > perms[:, None, :]) & later).sum(axis=(1, 2))
    sign = np.where(inversions % 2 == 0, 1.0, -1.0)
    symmetric = (standard**2 + standard_of_square) / 2
    alternating = (standard**2 - standard_of_square) / 2
    five = symmetric - 1 - standard
    characters = np.stack([np.ones(S5_ORDER), sign, standard, standard * sign, five, five * sign, alternating])
    return characters, characters[:, 0].astype(np.int64)


def isotypic_projector(character_G: np.ndarray, compose: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    """P[g, g'] = (d / |G|) chi(g g'^-1): (P f)(g) = (d / |G|) sum_h chi(h) f(h^-1 g), as a matrix [G, G]."""
    order = len(character_G)
    g_times_inverse = compose[np.arange(order)[:, None], inverse[None, :]]
    return character_G[0] / order * character_G[g_times_inverse]


@cache
def s5_basis() -> GroupBasis:
    """S5's orthonormal basis: each irrep's isotypic component (rank d^2) spanned by its projector's eigenvectors."""
    _, compose, inverse = s5_tables()
    characters, _ = s5_characters()
    rows, components = [], []
    for index, character in enumerate(characters):
        values, vectors = np.linalg.eigh(isotypic_projector(character, compose, inverse))
        span = vectors[:, values > 0.5].T
        rows.append(span)
        components += [index] * len(span)
    basis = np.concatenate(rows).astype(np.float32)
    return GroupBasis("S5", basis, np.asarray(components, np.int32), S5_IRREPS, np.arange(S5_ORDER, dtype=np.int32),
                      True)  # fmt: skip


def task_basis(task: str, p: int) -> GroupBasis | None:
    """The basis `task`'s progress measures use (module docstring), or None (parity, rand, images)."""
    family = get_task(task).family
    if family == "s5":
        return s5_basis()
    if family != "modular":
        return None
    if task in CYCLIC_TASKS:
        return cycle_basis(p, np.arange(p), f"Z_{p}", True)
    if task in MULTIPLICATIVE_TASKS and is_prime(p) and p > 2:
        g, power = discrete_log_table(p)
        return cycle_basis(p - 1, power, f"Z_{p - 1} (discrete log base {g})", True)
    return cycle_basis(p, np.arange(p), f"Z_{p}", False)
