"""`grokkit inspect`: what a checkpoint's model computes, in the Fourier terms of Nanda et al. 2023."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from grokkit.atomic import atomic_write_bytes
from grokkit.bases import CYCLIC_TASKS, fourier_basis, frequency_of_row
from grokkit.checkpoint import CheckpointError, list_checkpoints, load_checkpoint
from grokkit.errors import UsageError
from grokkit.models import Transformer
from grokkit.progress import basis_data, component_norms, cross_entropy, gini, key_component_mask, split_logits
from grokkit.reference import plain_transformer_internals
from grokkit.rundir import RunDir
from grokkit.train import Experiment, TrainState, abstract_state, make_experiment, state_from_arrays

DOMINATED = 0.5
"""A neuron belongs to a frequency when that frequency explains at least this share of its variance."""


@dataclass(frozen=True)
class Inspection:
    run_name: str
    step: int
    p: int
    spectrum: list[float]  # embedding norm per frequency k = 1..p//2
    key_frequencies: list[int]
    embed_gini: float
    neurons: int
    neurons_by_frequency: dict[int, int]  # key frequency -> neurons it dominates
    accuracy: float  # all pairs
    restricted_accuracy: float
    restricted_loss: float
    excluded_loss: float
    attention_BHT: np.ndarray  # final position's attention over [x, y, =], every pair (transformer only)
    ipr_F: np.ndarray  # each first-layer MLP neuron's inverse participation ratio (`neuron_ipr`)


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


def inspect_run(path: Path, step: int | None = None) -> Inspection:
    """Load a checkpoint and measure its Fourier structure on every pair of the task."""
    run = RunDir.open(path)
    config = run.config()
    if config.data.task not in CYCLIC_TASKS:
        raise UsageError(
            f"inspect explains modular addition/subtraction ({', '.join(CYCLIC_TASKS)}); "
            f"this run's task is {config.data.task}",
            option="RUN_DIR",
        )
    from grokkit.jax_setup import configure_jax

    configure_jax()
    exp = make_experiment(config, split=run.split())
    state = load_state(run, exp, step)
    model = nnx.merge(exp.graphdef, state.params)
    p = exp.dataset.n_values
    tokens, labels = jnp.asarray(exp.dataset.tokens), jnp.asarray(exp.dataset.labels)
    if isinstance(model, Transformer):
        inside = jax.jit(lambda t: plain_transformer_internals(model, t))(tokens)
        logits, hidden, attention = inside["logits_BC"], inside["mlp_hidden_BF"], np.asarray(inside["attention_BHT"])
    else:
        logits, hidden, attention = model(tokens), model.first_hidden(tokens), np.zeros((0, 0, 0))
    assert exp.basis is not None
    basis = basis_data(exp.basis, exp.dataset)
    assert basis.answer_N is not None
    norms = component_norms(model.operand_embedding(p), basis.basis_GG, basis.component_of_row_G, p // 2)
    mask = key_component_mask(norms, basis.dims_R)
    keys = [int(k) + 1 for k in np.flatnonzero(np.asarray(mask))]
    row_mask = jnp.concatenate([jnp.zeros((1,), bool), mask])[basis.component_of_row_G].astype(logits.dtype)
    restricted, excluded = split_logits(logits, basis.answer_N, basis.basis_GG, row_mask)
    train_idx = jnp.asarray(exp.train_idx)
    dominant, share = neuron_frequencies(np.asarray(hidden), p)
    return Inspection(
        run_name=run.path.name,
        step=int(state.step),
        p=p,
        spectrum=[float(x) for x in np.asarray(norms)],
        key_frequencies=keys,
        embed_gini=float(gini(norms)),
        neurons=int(hidden.shape[1]),
        neurons_by_frequency={k: int(np.sum((dominant == k) & (share >= DOMINATED))) for k in keys},
        accuracy=float((logits.argmax(-1) == labels).mean()),
        restricted_accuracy=float((restricted.argmax(-1) == labels).mean()),
        restricted_loss=float(cross_entropy(restricted, labels)),
        excluded_loss=float(cross_entropy(excluded[train_idx], labels[train_idx])),
        attention_BHT=attention,
        ipr_F=neuron_ipr(input_weights(model, p)),
    )


def spectra_over_training(path: Path) -> tuple[list[int], np.ndarray]:
    """The embedding spectrum at every stored checkpoint: (steps, norms [checkpoints, p//2])."""
    run = RunDir.open(path)
    config = run.config()
    exp = make_experiment(config, split=run.split())
    template = abstract_state(exp)
    steps, rows = [], []
    for info in list_checkpoints(run.checkpoints):
        try:
            arrays, _ = load_checkpoint(info)
        except CheckpointError:
            continue
        model = nnx.merge(exp.graphdef, state_from_arrays(template, arrays).params)
        steps.append(info.step)
        p = exp.dataset.n_values
        basis, rows_k = jnp.asarray(fourier_basis(p)), jnp.asarray(frequency_of_row(p))
        rows.append(np.asarray(component_norms(model.operand_embedding(p), basis, rows_k, p // 2)))
    return steps, np.stack(rows) if rows else np.zeros((0, exp.dataset.n_values // 2))


def write_figures(path: Path, result: Inspection, out_dir: Path) -> list[Path]:
    """Spectrum over training (heatmap), neuron-frequency clusters, attention patterns; PNGs in out_dir."""
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

    steps, spectra = spectra_over_training(path)
    fig, ax = plt.subplots(figsize=(8, 4), constrained_layout=True)
    if len(steps):
        image = ax.imshow(spectra.T, aspect="auto", origin="lower", cmap="viridis",
                          extent=(-0.5, len(steps) - 0.5, 0.5, spectra.shape[1] + 0.5))  # fmt: skip
        ax.set_xticks(range(len(steps)), [f"{s:,}" for s in steps], rotation=60, fontsize=7)
        fig.colorbar(image, ax=ax, label="embedding norm")
    ax.set_xlabel("checkpoint step")
    ax.set_ylabel("frequency k")
    ax.set_title(f"{result.run_name}: embedding Fourier spectrum over training")
    save(fig, "spectrum_over_training.png")

    fig, ax = plt.subplots(figsize=(7, 3.5), constrained_layout=True)
    keys = result.key_frequencies
    ax.bar([str(k) for k in keys], [result.neurons_by_frequency[k] for k in keys], color="tab:purple")
    ax.set_xlabel("key frequency k")
    ax.set_ylabel(f"neurons (share ≥ {DOMINATED:.0%})")
    ax.set_title(f"{result.run_name} @ {result.step:,}: {result.neurons} MLP neurons by dominant frequency")
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
    return written
