"""`grokkit inspect`: what a checkpoint's model computes, in its task's basis (`grokkit.bases`).

One family of views per kind of task, each a frozen dataclass below:

- `CyclicInspection` (mod-add, mod-sub): Nanda et al. 2023's Fourier view: the embedding's spectrum, key
  frequencies, MLP neurons per frequency, attention, neuron IPR, the model restricted to its key frequencies.
- `MultiplicativeInspection` (mod-mul, mod-div, p prime): the same in the discrete-log basis (Z_{p-1}),
  beside the additive Z_p spectrum of the raw residues, which looks dense; pairs involving 0 are left out.
- `S5Inspection` (s5-compose, s5-conjugate, s5-xyx): Chughtai et al. 2023's irreps: embedding and logit
  norm per irrep, key irreps, the model restricted to them; and how much of the logits' dependence on the
  answer is a function of the answer's coset of a point stabilizer (Stander et al. 2024).
- `SpectrumInspection` (the other modular tasks, mod-mul with p not prime): the embedding's Z_p spectrum
  only; their answers are not a group product of the operands, so restricted/excluded loss are not defined.
- `ParityInspection` (sparse-parity): the first layer's weight per input bit (`grokkit.parity`).

`rand` has no structure to look for: `inspect_run` refuses it with a usage error naming what is available.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from grokkit.atomic import atomic_write_bytes
from grokkit.bases import CYCLIC_TASKS, GroupBasis, cycle_basis, fourier_basis, task_basis
from grokkit.checkpoint import CheckpointError, list_checkpoints, load_checkpoint
from grokkit.data import get_task, s5_tables
from grokkit.errors import UsageError
from grokkit.models import Transformer
from grokkit.parity import bit_weights, parity_measures
from grokkit.progress import component_norms, cross_entropy, gini, key_component_mask, key_names, split_logits
from grokkit.reference import plain_transformer_internals
from grokkit.rundir import RunDir
from grokkit.train import Experiment, TrainState, abstract_state, make_experiment, state_from_arrays

DOMINATED = 0.5
"""A neuron belongs to a frequency when that frequency explains at least this share of its variance."""
NO_INSPECTION = (
    "inspect looks for structure in a task's group basis (modular arithmetic, S5, sparse parity); task {task} "
    "has none: use `grokkit report` for its curves and verdict, `grokkit export` for its metrics and checkpoints"
)


@dataclass(frozen=True)
class Inspection:
    """What every view has: the checkpoint and the model's accuracy on every example."""

    family: ClassVar[str] = ""
    run_name: str
    step: int
    task: str
    model: str  # "transformer" or "mlp"
    accuracy: float  # all examples


@dataclass(frozen=True)
class CyclicInspection(Inspection):
    """mod-add / mod-sub in the Fourier basis of Z_p (Nanda et al. 2023)."""

    family: ClassVar[str] = "cyclic"
    p: int
    spectrum: list[float]  # embedding norm per frequency k = 1..p//2
    key_frequencies: list[int]
    embed_gini: float
    neurons: int
    neurons_by_frequency: dict[int, int]  # key frequency -> neurons it dominates
    restricted_accuracy: float
    restricted_loss: float
    excluded_loss: float
    attention_BHT: np.ndarray  # final position's attention over [x, y, =], every pair (transformer only)
    ipr_F: np.ndarray  # each first-layer MLP neuron's inverse participation ratio (`neuron_ipr`)


@dataclass(frozen=True)
class MultiplicativeInspection(Inspection):
    """mod-mul / mod-div (p prime) in the discrete-log basis: residue x is element log_g(x) of Z_{p-1}."""

    family: ClassVar[str] = "multiplicative"
    p: int
    generator: int  # g, the smallest primitive root mod p
    log_spectrum: list[float]  # embedding norm per frequency k = 1..(p-1)//2 of log_g x
    log_gini: float
    additive_spectrum: list[float]  # embedding norm per frequency k = 1..p//2 of the residue x (Z_p Fourier)
    additive_gini: float
    key_frequencies: list[int]  # in the log basis
    restricted_accuracy: float  # examples in the group (no 0)
    restricted_loss: float
    excluded_loss: float  # training examples in the group
    examples_in_group: int
    examples: int


@dataclass(frozen=True)
class S5Inspection(Inspection):
    """S5 tasks per irrep (Chughtai et al. 2023) and per point stabilizer's cosets (Stander et al. 2024)."""

    family: ClassVar[str] = "s5"
    irreps: list[str]  # the non-trivial irreps, bases.S5_IRREPS
    irrep_dims: list[int]  # d (the component has d^2 dimensions)
    embed_norms: list[float]  # norm of the operand embedding's projection on each isotypic component
    logit_norms: list[float]  # norm of P_rho F (`logit_component_norms`)
    key_irreps: list[str]
    embed_gini: float
    restricted_accuracy: float
    restricted_loss: float
    excluded_loss: float
    left_coset_share: list[float]  # point i: share of F's variance over answers explained by s(i)
    right_coset_share: list[float]  # point i: ... by s^-1(i)

    @property
    def composition(self) -> bool:
        """The answer is the product of the operands (x . y), the case Chughtai et al.'s algorithm describes."""
        return self.task == "s5-compose"


@dataclass(frozen=True)
class SpectrumInspection(Inspection):
    """A modular task without a group answer: the embedding's Z_p spectrum only."""

    family: ClassVar[str] = "spectrum"
    p: int
    spectrum: list[float]
    strongest: list[int]  # frequencies the key rule picks on the embedding
    embed_gini: float
    reason: str  # why restricted/excluded loss are not defined


@dataclass(frozen=True)
class ParityInspection(Inspection):
    """Sparse parity: the first-layer weight per input bit (`grokkit.parity`); weights None for MLP embed=sum."""

    family: ClassVar[str] = "parity"
    n_bits: int
    k_bits: int
    weights: list[float] | None
    relevant_weight_share: float | None
    bit_weight_gini: float | None


AnyInspection = CyclicInspection | MultiplicativeInspection | S5Inspection | SpectrumInspection | ParityInspection


def load_state(run: RunDir, exp: Experiment, step: int | None) -> TrainState:
    """The checkpoint at `step` (default: the newest valid one), strictly loaded."""
    infos = list_checkpoints(run.checkpoints)
    if step is not None:
        infos = [i for i in infos if i.step == step]
        if not infos:
            steps = ", ".join(str(i.step) for i in list_checkpoints(run.checkpoints)) or "none"
            raise UsageError(f"no checkpoint at step {step} in {run.path} (checkpoints: {steps})", option="--step")
    for info in reversed(infos):
        try:
            arrays, _ = load_checkpoint(info)
            return state_from_arrays(abstract_state(exp), arrays)
        except (CheckpointError, ValueError):
            continue
    raise UsageError(f"{run.path} has no valid checkpoint to inspect", option="RUN_DIR")


def neuron_frequencies(hidden_NF: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray]:
    """Each neuron's dominant frequency over the (a, b) grid and the share of its variance it explains.

    The activations over the grid are expanded in the 2-D Fourier basis; frequency k owns the
    terms made of the constant, cos(w_k .) and sin(w_k .) of a and of b (the constant term excluded).
    """
    basis = fourier_basis(p)
    grid_FPP = hidden_NF.T.reshape(-1, p, p)
    coefficients = (basis[None] @ grid_FPP @ basis.T[None]) ** 2
    coefficients[:, 0, 0] = 0.0
    total = coefficients.sum(axis=(1, 2)) + 1e-12
    shares = []
    for k in range(1, p // 2 + 1):
        rows = [0, 2 * k - 1] + ([2 * k] if 2 * k < p else [])
        block = coefficients[:, rows][:, :, rows]
        shares.append(block.sum(axis=(1, 2)))
    shares = np.stack(shares, axis=1) / total[:, None]
    return shares.argmax(axis=1) + 1, shares.max(axis=1)


def neuron_ipr(weights_OPF: np.ndarray) -> np.ndarray:
    """Doshi et al. 2024's inverse participation ratio of each neuron's input weights over the residues:
    IPR = sum_k |w_k|^4 / (sum_k |w_k|^2)^2 over the Fourier components w_k (k = 1 .. p//2, the constant
    left out) of its weights on every operand table O, side by side. 1: one frequency (periodic, a
    generalizing neuron); 1 / (O * p//2): spread evenly (memorizing)."""
    weights = np.asarray(weights_OPF, np.float64)
    power_OKF = np.abs(np.fft.rfft(weights - weights.mean(axis=1, keepdims=True), axis=1)[:, 1:]) ** 2
    power_NF = power_OKF.reshape(-1, power_OKF.shape[-1])
    return (power_NF**2).sum(0) / np.maximum(power_NF.sum(0) ** 2, 1e-300)


def input_weights(model: Any, p: int) -> np.ndarray:
    """The first MLP layer's weights as a function of each operand's residue, [O, p, F]: the MLP model's
    embedding tables; for the transformer the token embedding times the first block's w_in (attention and
    the positional embedding left out, one shared table)."""
    if isinstance(model, Transformer):
        return np.asarray(model.operand_embedding(p) @ model.blocks[0].w_in_DF[...])[None]
    return np.asarray(model.embed_OVF[...][:, :p])


def answer_mean_logits(logits_NC: np.ndarray, answer_N: np.ndarray, order: int) -> np.ndarray:
    """F[s, c]: the mean logit of class c over the examples whose answer is group element s (answer -1: left
    out; an element no example answers gets 0), as `progress.split_logits` splits them: [order, C] float64."""
    logits = np.asarray(logits_NC, np.float64)
    answer = np.asarray(answer_N)
    inside = answer >= 0
    sums_GC = np.zeros((order, logits.shape[1]))
    np.add.at(sums_GC, answer[inside], logits[inside])
    counts_G = np.bincount(answer[inside], minlength=order)
    return sums_GC / np.maximum(counts_G, 1)[:, None]


def logit_component_norms(
    logits_NC: np.ndarray, answer_N: np.ndarray, basis_GG: np.ndarray, component_of_row_G: np.ndarray
) -> np.ndarray:
    """||P_rho F|| per non-trivial component rho, F = `answer_mean_logits`, P_rho projecting along the answer
    axis (the Frobenius norm over answers s and classes c): [R].

    Their squares add up to ||F - mean over answers||^2, the logits' variation with the answer; a model whose
    logits are w chi_rho(s c^-1) (Chughtai et al.'s algorithm on one irrep) has all of it in rho.
    """
    basis = np.asarray(basis_GG, np.float64)
    rows_G = np.asarray(component_of_row_G)
    coefficients_GC = basis @ answer_mean_logits(logits_NC, answer_N, basis.shape[0])
    squared = np.bincount(rows_G, weights=np.square(coefficients_GC).sum(axis=1), minlength=rows_G.max() + 1)
    return np.sqrt(squared[1:])


def coset_shares(mean_GC: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each point i of 0..4 and the stabilizer H_i = {h : h(i) = i} (index 5; S5 has no other subgroups of
    index 5): the share of F's variance over the answers s (summed over classes) explained by the left coset
    s H_i, i.e. by s(i), and by the right coset H_i s, i.e. by s^-1(i): ([5], [5]) in [0, 1].

    `mean_GC` is F (`answer_mean_logits`) over S5 in `s5_tables` order. A function of s(i) is a matrix
    coefficient of the permutation representation (trivial + standard), so once F's mean over answers is
    removed each share is at most the standard irrep's share of F's variance.
    """
    perms, _, _ = s5_tables()
    centered = mean_GC - mean_GC.mean(axis=0)
    total = max(float(np.square(centered).sum()), 1e-300)

    def explained(key_G: np.ndarray) -> float:
        counts = np.bincount(key_G, minlength=5)
        sums = np.zeros((5, centered.shape[1]))
        np.add.at(sums, key_G, centered)
        return float((np.square(sums).sum(axis=1) / np.maximum(counts, 1)).sum()) / total

    inverse_perms = np.argsort(perms, axis=1)
    left = np.array([explained(perms[:, i]) for i in range(5)])
    right = np.array([explained(inverse_perms[:, i]) for i in range(5)])
    return left, right


@dataclass(frozen=True)
class Restricted:
    """The model restricted to its key components, as the training evaluation's progress measures."""

    key_mask: np.ndarray  # [R] bool
    accuracy: float  # examples in the group
    loss: float
    excluded_loss: float  # training examples in the group


# compiled once per shape: op-by-op, each of their few dozen operations would compile on its own
_component_norms = jax.jit(component_norms, static_argnums=3)
_gini = jax.jit(gini)
_key_component_mask = jax.jit(key_component_mask)


@jax.jit
def _restricted_measures(logits_NC, labels_N, answer_N, basis_GG, row_mask_G, train_idx):
    restricted_NC, excluded_NC = split_logits(logits_NC, answer_N, basis_GG, row_mask_G)
    inside_N = (answer_N >= 0).astype(jnp.float32)
    hits_N = (restricted_NC.argmax(-1) == labels_N).astype(jnp.float32)
    accuracy = jnp.sum(hits_N * inside_N) / jnp.maximum(inside_N.sum(), 1)
    excluded = cross_entropy(excluded_NC[train_idx], labels_N[train_idx], inside_N[train_idx])
    return accuracy, cross_entropy(restricted_NC, labels_N, inside_N), excluded


def embedding_norms(model: Any, basis: GroupBasis, n_values: int) -> np.ndarray:
    """Norm of the operand embedding's projection on each non-trivial component (`progress.component_norms`)."""
    embed = model.operand_embedding(n_values)[jnp.asarray(basis.value_of_element)]
    n = len(basis.labels)
    return np.asarray(_component_norms(embed, jnp.asarray(basis.basis_GG), jnp.asarray(basis.component_of_row), n))


def key_mask(basis: GroupBasis, norms_R: np.ndarray) -> np.ndarray:
    """The key components (`progress.key_component_mask`): [R] bool."""
    return np.asarray(_key_component_mask(jnp.asarray(norms_R), jnp.asarray(basis.dims, jnp.float32)))


def restricted(exp: Experiment, basis: GroupBasis, norms_R: np.ndarray, logits_NC: jax.Array) -> Restricted:
    """Key components (from the embedding norms) and the restricted/excluded loss, as `progress_measures`."""
    mask = key_mask(basis, norms_R)
    row_mask = jnp.asarray(np.concatenate([[False], mask])[basis.component_of_row], logits_NC.dtype)
    accuracy, loss, excluded = _restricted_measures(
        logits_NC,
        jnp.asarray(exp.dataset.labels),
        jnp.asarray(basis.answer_elements(exp.dataset)),
        jnp.asarray(basis.basis_GG),
        row_mask,
        jnp.asarray(exp.train_idx),
    )
    return Restricted(key_mask=mask, accuracy=float(accuracy), loss=float(loss), excluded_loss=float(excluded))


def inspect_run(path: Path, step: int | None = None) -> AnyInspection:
    """Load a checkpoint and measure it in its task's basis (module docstring); rand is a usage error."""
    run = RunDir.open(path)
    config = run.config()
    task = config.data.task
    family = get_task(task).family
    if family not in ("modular", "s5", "parity"):
        raise UsageError(NO_INSPECTION.format(task=task), option="RUN_DIR")
    from grokkit.jax_setup import configure_jax

    configure_jax()
    exp = make_experiment(config, split=run.split())
    state = load_state(run, exp, step)
    model = nnx.merge(exp.graphdef, state.params)
    tokens, labels = jnp.asarray(exp.dataset.tokens), jnp.asarray(exp.dataset.labels)
    logits = jax.jit(lambda t: model(t))(tokens)
    common: dict[str, Any] = {
        "run_name": run.path.name,
        "step": int(state.step),
        "task": task,
        "model": "transformer" if isinstance(model, Transformer) else "mlp",
        "accuracy": float((logits.argmax(-1) == labels).mean()),
    }
    if family == "parity":
        return _inspect_parity(exp, model, tokens, common)
    basis = task_basis(task, config.data.p)
    assert basis is not None
    if task in CYCLIC_TASKS:
        return _inspect_cyclic(exp, model, tokens, basis, common)
    norms = embedding_norms(model, basis, exp.dataset.n_values)
    if family == "s5":
        found = restricted(exp, basis, norms, logits)
        answer = basis.answer_elements(exp.dataset)
        mean_GC = answer_mean_logits(np.asarray(logits), answer, len(basis.value_of_element))
        left, right = coset_shares(mean_GC)
        logit_norms = logit_component_norms(np.asarray(logits), answer, basis.basis_GG, basis.component_of_row)
        return S5Inspection(
            **common,
            irreps=list(basis.labels),
            irrep_dims=[round(float(np.sqrt(d))) for d in basis.dims],
            embed_norms=[float(x) for x in norms],
            logit_norms=[float(x) for x in logit_norms],
            key_irreps=[str(name) for name in key_names(basis, found.key_mask)],
            embed_gini=float(_gini(jnp.asarray(norms))),
            restricted_accuracy=found.accuracy,
            restricted_loss=found.loss,
            excluded_loss=found.excluded_loss,
            left_coset_share=[float(x) for x in left],
            right_coset_share=[float(x) for x in right],
        )
    p = config.data.p
    if basis.answer_defined:  # mod-mul, mod-div with p prime: the discrete-log basis
        found = restricted(exp, basis, norms, logits)
        additive = embedding_norms(model, cycle_basis(p, np.arange(p), f"Z_{p}", False), p)
        inside = int((basis.answer_elements(exp.dataset) >= 0).sum())
        return MultiplicativeInspection(
            **common,
            p=p,
            generator=int(basis.value_of_element[1]),
            log_spectrum=[float(x) for x in norms],
            log_gini=float(_gini(jnp.asarray(norms))),
            additive_spectrum=[float(x) for x in additive],
            additive_gini=float(_gini(jnp.asarray(additive))),
            key_frequencies=[int(k) for k in key_names(basis, found.key_mask)],
            restricted_accuracy=found.accuracy,
            restricted_loss=found.loss,
            excluded_loss=found.excluded_loss,
            examples_in_group=inside,
            examples=len(exp.dataset),
        )
    mask = key_mask(basis, norms)
    if task == "mod-mul":
        reason = f"p = {p} is not prime, so the non-zero residues are not a cyclic group under multiplication"
    else:
        reason = f"the answer {get_task(task).formula} is not a group product of the operands"
    return SpectrumInspection(
        **common,
        p=p,
        spectrum=[float(x) for x in norms],
        strongest=[int(k) for k in key_names(basis, mask)],
        embed_gini=float(_gini(jnp.asarray(norms))),
        reason=reason,
    )


def _inspect_cyclic(
    exp: Experiment, model: Any, tokens: jax.Array, basis: GroupBasis, common: dict[str, Any]
) -> CyclicInspection:
    p = exp.dataset.n_values
    if isinstance(model, Transformer):
        inside = jax.jit(lambda t: plain_transformer_internals(model, t))(tokens)
        logits, hidden, attention = inside["logits_BC"], inside["mlp_hidden_BF"], np.asarray(inside["attention_BHT"])
    else:
        logits, hidden, attention = model(tokens), model.first_hidden(tokens), np.zeros((0, 0, 0))
    norms = embedding_norms(model, basis, p)
    found = restricted(exp, basis, norms, logits)
    keys = [int(k) for k in key_names(basis, found.key_mask)]
    dominant, share = neuron_frequencies(np.asarray(hidden), p)
    return CyclicInspection(
        **common,
        p=p,
        spectrum=[float(x) for x in norms],
        key_frequencies=keys,
        embed_gini=float(_gini(jnp.asarray(norms))),
        neurons=int(hidden.shape[1]),
        neurons_by_frequency={k: int(np.sum((dominant == k) & (share >= DOMINATED))) for k in keys},
        restricted_accuracy=found.accuracy,
        restricted_loss=found.loss,
        excluded_loss=found.excluded_loss,
        attention_BHT=attention,
        ipr_F=neuron_ipr(input_weights(model, p)),
    )


def _inspect_parity(exp: Experiment, model: Any, tokens: jax.Array, common: dict[str, Any]) -> ParityInspection:
    k_bits = exp.config.data.k_bits
    weights, measures = jax.jit(lambda t: (bit_weights(model, t), parity_measures(model, t, k_bits)))(tokens)
    return ParityInspection(
        **common,
        n_bits=tokens.shape[1] - 1,
        k_bits=k_bits,
        weights=None if weights is None else [float(x) for x in np.asarray(weights)],
        relevant_weight_share=float(measures["relevant_weight_share"]) if measures else None,
        bit_weight_gini=float(measures["bit_weight_gini"]) if measures else None,
    )


def over_training(path: Path, measure: Callable[[Any, Experiment], Any]) -> tuple[list[int], np.ndarray]:
    """`measure(model, experiment)` at every stored checkpoint: (steps, values [checkpoints, ...])."""
    run = RunDir.open(path)
    exp = make_experiment(run.config(), split=run.split())
    template = abstract_state(exp)
    steps, rows = [], []
    for info in list_checkpoints(run.checkpoints):
        try:
            arrays, _ = load_checkpoint(info)
            params = state_from_arrays(template, arrays).params
        except (CheckpointError, ValueError):
            continue
        steps.append(info.step)
        rows.append(np.asarray(measure(nnx.merge(exp.graphdef, params), exp)))
    return steps, np.stack(rows) if rows else np.zeros((0, 0))


def spectra_over_training(path: Path, basis: GroupBasis) -> tuple[list[int], np.ndarray]:
    """The embedding's norm per component of `basis` at every stored checkpoint: (steps, [checkpoints, R])."""
    return over_training(path, lambda model, exp: embedding_norms(model, basis, exp.dataset.n_values))


def write_figures(path: Path, result: AnyInspection, out_dir: Path) -> list[Path]:
    """The family's figures as PNGs in out_dir (`inspect --help`); [] when there is nothing to draw."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("figures need matplotlib: pip install 'grokkit[plot]'", option="--png") from None
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot write {out_dir}: {err.strerror}", option="--png") from None
    written: list[Path] = []

    def save(fig: Any, name: str) -> None:
        # rendered in memory, then written as a new file in out_dir: a symlink or FIFO planted
        # at `name` (a shared /tmp) is replaced or refused, never written through
        target = out_dir / name
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=150)
        plt.close(fig)
        try:
            atomic_write_bytes(target, buffer.getvalue())
        except OSError as err:
            raise UsageError(f"cannot write {target}: {err.strerror}", option="--png") from None
        written.append(target)

    def heatmap(steps: list[int], values: np.ndarray, ylabel: str, title: str) -> None:
        fig, ax = plt.subplots(figsize=(8, 4), constrained_layout=True)
        if len(steps):
            image = ax.imshow(values.T, aspect="auto", origin="lower", cmap="viridis",
                              extent=(-0.5, len(steps) - 0.5, 0.5, values.shape[1] + 0.5))  # fmt: skip
            ax.set_xticks(range(len(steps)), [f"{s:,}" for s in steps], rotation=60, fontsize=7)
            fig.colorbar(image, ax=ax, label="embedding norm")
        ax.set_xlabel("checkpoint step")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        save(fig, "spectrum_over_training.png")

    def bars(ax: Any, values: list[float], keys: list[int], title: str, xlabel: str) -> None:
        ks = range(1, len(values) + 1)
        ax.bar(ks, values, color=["tab:purple" if k in keys else "tab:gray" for k in ks])
        ax.set_xlabel(xlabel)
        ax.set_ylabel("embedding norm")
        ax.set_title(title)

    name = result.run_name
    config = RunDir.open(path).config()
    basis = task_basis(config.data.task, config.data.p)
    if isinstance(result, CyclicInspection | SpectrumInspection):
        assert basis is not None
        steps, spectra = spectra_over_training(path, basis)
        heatmap(steps, spectra, "frequency k", f"{name}: embedding Fourier spectrum (Z_{result.p}) over training")
    if isinstance(result, CyclicInspection):
        fig, ax = plt.subplots(figsize=(7, 3.5), constrained_layout=True)
        keys = result.key_frequencies
        ax.bar([str(k) for k in keys], [result.neurons_by_frequency[k] for k in keys], color="tab:purple")
        ax.set_xlabel("key frequency k")
        ax.set_ylabel(f"neurons (share ≥ {DOMINATED:.0%})")
        ax.set_title(f"{name} @ {result.step:,}: {result.neurons} MLP neurons by dominant frequency")
        save(fig, "neuron_clusters.png")
        if result.attention_BHT.size:
            heads = result.attention_BHT.shape[1]
            fig, axes = plt.subplots(1, heads, figsize=(3 * heads, 3), constrained_layout=True, squeeze=False)
            for h, ax in enumerate(axes[0]):
                weights = result.attention_BHT[:, h, 0].reshape(result.p, result.p)
                ax.imshow(weights, cmap="magma", vmin=0, vmax=1, origin="lower")
                ax.set_title(f"head {h}: attention to x")
                ax.set_xlabel("b")
                ax.set_ylabel("a")
            save(fig, "attention_patterns.png")
    elif isinstance(result, MultiplicativeInspection):
        assert basis is not None
        steps, spectra = spectra_over_training(path, basis)
        heatmap(steps, spectra, f"frequency k of log_{result.generator} x",
                f"{name}: embedding spectrum in the discrete-log basis (Z_{result.p - 1}) over training")  # fmt: skip
        fig, axes = plt.subplots(2, 1, figsize=(8, 6), constrained_layout=True)
        bars(axes[0], result.log_spectrum, result.key_frequencies,
             f"discrete-log basis Z_{result.p - 1} (g = {result.generator}): Gini {result.log_gini:.2f}",
             f"frequency k of log_{result.generator} x")  # fmt: skip
        bars(axes[1], result.additive_spectrum, [],
             f"additive basis Z_{result.p} (Fourier of the residues): Gini {result.additive_gini:.2f}",
             "frequency k of x")  # fmt: skip
        fig.suptitle(f"{name} @ {result.step:,}: one embedding, two bases")
        save(fig, "spectra.png")
    elif isinstance(result, S5Inspection):
        assert basis is not None
        dims = np.asarray(result.irrep_dims, float)
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
        colors = ["tab:purple" if r in result.key_irreps else "tab:gray" for r in result.irreps]
        ticks = [f"{r}\n(d={d})" for r, d in zip(result.irreps, result.irrep_dims, strict=True)]
        axes[0].bar(ticks, np.asarray(result.embed_norms) / dims, color=colors)
        axes[0].set_ylabel("embedding norm / d")
        axes[0].set_title("embedding per irrep (key irreps purple)")
        logit_power = np.square(result.logit_norms)
        axes[1].bar(ticks, logit_power / max(logit_power.sum(), 1e-300), color=colors)
        axes[1].set_ylabel("share of the logits' variation with the answer")
        axes[1].set_title("logits per irrep")
        for ax in axes:
            ax.tick_params(axis="x", labelsize=7)
        fig.suptitle(f"{name} @ {result.step:,} ({result.task})")
        save(fig, "irrep_power.png")
        steps, norms = spectra_over_training(path, basis)
        fig, ax = plt.subplots(figsize=(8, 4), constrained_layout=True)
        for r, irrep in enumerate(result.irreps):
            if len(steps):
                ax.plot(steps, norms[:, r] / dims[r], marker="o", markersize=3, label=f"{irrep} (d={dims[r]:g})",
                        linewidth=2.5 if irrep in result.key_irreps else 1.0)  # fmt: skip
        ax.set_xlabel("checkpoint step")
        ax.set_ylabel("embedding norm / d")
        ax.set_title(f"{name}: embedding per irrep over training")
        if len(steps):
            ax.legend(fontsize=7)
        save(fig, "irrep_power_over_training.png")
    elif isinstance(result, ParityInspection) and result.weights is not None:
        k = result.k_bits
        fig, ax = plt.subplots(figsize=(7, 3.5), constrained_layout=True)
        bits = range(result.n_bits)
        ax.bar(bits, result.weights, color=["tab:purple" if i < k else "tab:gray" for i in bits])
        ax.set_xlabel(f"input bit (0..{k - 1} relevant, purple)")
        ax.set_ylabel("first-layer weight")
        ax.set_title(f"{name} @ {result.step:,}: weight per bit, relevant share {result.relevant_weight_share:.2f}")
        save(fig, "bit_weights.png")
        steps, weights = over_training(path, lambda model, exp: bit_weights(model, jnp.asarray(exp.dataset.tokens)))
        fig, ax = plt.subplots(figsize=(8, 4), constrained_layout=True)
        for i in bits if len(steps) else ():
            ax.plot(steps, weights[:, i], color="tab:purple" if i < k else "tab:gray",
                    linewidth=2.0 if i < k else 0.8, label="relevant bits" if i == 0 else None)  # fmt: skip
        ax.set_xlabel("checkpoint step")
        ax.set_ylabel("first-layer weight")
        ax.set_title(f"{name}: weight per bit over training (gray: irrelevant bits)")
        if len(steps):
            ax.legend(fontsize=7)
        save(fig, "bit_weights_over_training.png")
    return written
