"""The training loop: a pure step, lax.scan between evaluations, one jitted chunk function."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from grokkit.analysis import early_exit_due
from grokkit.config import Config
from grokkit.data import Dataset, Split, make_dataset, split_dataset
from grokkit.errors import TrainingDiverged
from grokkit.models import build_model
from grokkit.optim import build_optimizer
from grokkit.progress import SUPPORTED_TASKS, progress_measures, sum_directions

METRIC_NAMES = ("train_loss", "train_acc", "val_loss", "val_acc", "param_norm")


class TrainState(NamedTuple):
    step: jax.Array  # int32 []
    params: nnx.State
    opt_state: optax.OptState
    key: jax.Array  # uint32 [2], the run's PRNG key; per-step keys are fold_in(key, step)


class Batch(NamedTuple):
    tokens_BT: jax.Array
    labels_B: jax.Array


class Data(NamedTuple):
    train: Batch  # the train split, gathered once: the full batch
    every: Batch  # every example in dataset order (for pairwise tasks, the x-major grid)
    train_idx: jax.Array
    val_idx: jax.Array
    directions: jax.Array | None  # cos/sin(w_k(a +- b)) over the grid, for the progress measures


@dataclass(frozen=True)
class Experiment:
    """Everything built once per run from a config: data, split, model structure, optimizer."""

    config: Config
    dataset: Dataset
    split: Split
    graphdef: Any
    tx: optax.GradientTransformation

    @property
    def n_train(self) -> int:
        return len(self.split.train_idx)

    @property
    def tracks_progress(self) -> bool:
        """Whether the Fourier progress measures apply (modular addition/subtraction over the full grid)."""
        return self.dataset.task in SUPPORTED_TASKS

    def device_data(self) -> Data:
        ds, sp = self.dataset, self.split
        directions = None
        if self.tracks_progress:
            directions = jnp.asarray(sum_directions(ds.n_values, SUPPORTED_TASKS[ds.task]))
        return Data(
            train=Batch(jnp.asarray(ds.tokens[sp.train_idx]), jnp.asarray(ds.labels[sp.train_idx])),
            every=Batch(jnp.asarray(ds.tokens), jnp.asarray(ds.labels)),
            train_idx=jnp.asarray(sp.train_idx),
            val_idx=jnp.asarray(sp.val_idx),
            directions=directions,
        )


def _model_factory(config: Config, dataset: Dataset) -> Callable[[int], nnx.Module]:
    seq_len = dataset.tokens.shape[1]
    return partial(build_model, config.model, dataset.vocab_size, seq_len, dataset.n_classes)


def make_experiment(config: Config, split: Split | None = None) -> Experiment:
    """Build the dataset, the split (or use a stored one), the model structure and the optimizer."""
    d = config.data
    dataset = make_dataset(d.task, d.p, seed=config.data_seed, n_bits=d.n_bits, k_bits=d.k_bits, n_samples=d.n_samples)
    if split is None:
        split = split_dataset(len(dataset), d.train_frac, config.data_seed)
    abstract_model = nnx.eval_shape(lambda: _model_factory(config, dataset)(config.seed))
    graphdef, _ = nnx.split(abstract_model)
    return Experiment(config, dataset, split, graphdef, build_optimizer(config.optim))


def init_state(exp: Experiment) -> TrainState:
    """The step-0 state, built in one compiled program (eager init would compile op by op)."""

    @jax.jit
    def init(key):
        _, params = nnx.split(_model_factory(exp.config, exp.dataset)(exp.config.seed))
        return TrainState(jnp.zeros((), jnp.int32), params, exp.tx.init(params), key)

    return init(jax.random.PRNGKey(exp.config.seed))


def abstract_state(exp: Experiment) -> TrainState:
    """Shapes and dtypes of the state, without computing it."""
    return jax.eval_shape(lambda: init_state(exp))


def loss_and_accuracy(logits_BC: jax.Array, labels_B: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean softmax cross-entropy and accuracy of logits against integer labels."""
    loss = optax.softmax_cross_entropy_with_integer_labels(logits_BC, labels_B).mean()
    return loss, (logits_BC.argmax(-1) == labels_B).mean()


def parameter_norm(params: nnx.State) -> jax.Array:
    """L2 norm of all parameters together."""
    return jnp.sqrt(sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree.leaves(params)))


def select_batch(exp: Experiment, state: TrainState, train: Batch) -> Batch:
    """Full batch, or `batch_size` examples without replacement drawn from fold_in(key, step)."""
    size = exp.config.optim.batch_size
    if size is None:
        return train
    idx_B = jax.random.choice(jax.random.fold_in(state.key, state.step), exp.n_train, (size,), replace=False)
    return Batch(train.tokens_BT[idx_B], train.labels_B[idx_B])


def train_step(exp: Experiment, state: TrainState, batch: Batch) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer update: a pure function (state, batch) -> (state, metrics)."""

    def loss_fn(params):
        return loss_and_accuracy(nnx.merge(exp.graphdef, params)(batch.tokens_BT), batch.labels_B)

    (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = exp.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return state._replace(step=state.step + 1, params=params, opt_state=opt_state), {
        "loss": loss,
        "accuracy": accuracy,
    }


def evaluate(exp: Experiment, params: nnx.State, data: Data) -> dict[str, Any]:
    """Loss and accuracy on the FULL train and validation sets, parameter norms, progress measures."""
    model = nnx.merge(exp.graphdef, params)
    logits_NC = model(data.every.tokens_BT)
    labels_N = data.every.labels_B

    train_loss, train_acc = loss_and_accuracy(logits_NC[data.train_idx], labels_N[data.train_idx])
    val_loss, val_acc = loss_and_accuracy(logits_NC[data.val_idx], labels_N[data.val_idx])
    metrics = {
        "train_loss": train_loss,
        "train_acc": train_acc,
        "val_loss": val_loss,
        "val_acc": val_acc,
        "param_norm": parameter_norm(params),
        "param_norms": {name: parameter_norm(group) for name, group in parameter_groups(params).items()},
    }
    if data.directions is not None:
        embed_PD = model.operand_embedding(exp.dataset.n_values)
        metrics.update(progress_measures(embed_PD, logits_NC, labels_N, data.train_idx, data.directions))
    return metrics


def parameter_groups(params: nnx.State) -> dict[str, Any]:
    """Parameters by top-level module (blocks split per layer): {"embed_VD": ..., "blocks/0": ...}."""
    groups: dict[str, list] = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        keys = [str(getattr(k, "key", getattr(k, "idx", k))) for k in path]
        name = "/".join(keys[:2]) if keys[0] in ("blocks", "hidden") and len(keys) > 2 else keys[0]
        groups.setdefault(name, []).append(leaf)
    return groups


def make_chunk_fn(exp: Experiment) -> Callable[[TrainState, Data, int], tuple[TrainState, dict[str, jax.Array]]]:
    """`n_steps` training steps under lax.scan, then a full evaluation; jitted, state donated."""

    def run_steps(state: TrainState, data: Data, n_steps: int):
        def body(state, _):
            state, _ = train_step(exp, state, select_batch(exp, state, data.train))
            return state, None

        state, _ = jax.lax.scan(body, state, None, length=n_steps)
        return state, evaluate(exp, state.params, data)

    return jax.jit(run_steps, static_argnums=2, donate_argnums=0)


class RunSink:
    """Where the loop reports: metrics, checkpoints, summary (a run directory, or nothing)."""

    def on_eval(self, record: dict[str, Any]) -> None: ...
    def on_checkpoint(self, state: TrainState, elapsed_s: float) -> None: ...


@dataclass
class FitResult:
    state: TrainState
    history: list[dict[str, Any]]
    reason: str  # "budget", "early-exit", "interrupted"
    elapsed_s: float


def fit(
    exp: Experiment,
    state: TrainState,
    history: list[dict[str, Any]] | None = None,
    *,
    sink: RunSink | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    elapsed_before: float = 0.0,
) -> FitResult:
    """Train from `state` to the step budget (or early exit, or a stop request).

    Evaluations fall on multiples of `eval_every` and checkpoints on multiples of
    `checkpoint_every`, so an interrupted run resumes onto the same grid. Raises
    TrainingDiverged on NaN/Inf, before anything from the bad chunk is saved.
    """
    cfg = exp.config.train
    sink = sink or RunSink()
    history = list(history or [])
    chunk = make_chunk_fn(exp)
    data = exp.device_data()
    step = int(state.step)
    start = time.perf_counter()
    last_saved: int | None = step if step > 0 else None  # a resumed run starts from a checkpoint
    reason = "budget"
    while step < cfg.steps:
        if cfg.early_exit and early_exit_due(history, cfg.early_exit_window):
            reason = "early-exit"
            break
        if should_stop():
            reason = "interrupted"
            break
        n_steps = min(cfg.eval_every - step % cfg.eval_every, cfg.steps - step)
        state, metrics = chunk(state, data, n_steps)
        step += n_steps
        record = {"step": step, **{k: float(metrics[k]) for k in METRIC_NAMES}}
        record["param_norms"] = {name: float(v) for name, v in metrics["param_norms"].items()}
        if "restricted_loss" in metrics:
            for name in ("restricted_loss", "excluded_loss", "embed_gini"):
                record[name] = float(metrics[name])
            record["key_frequencies"] = [int(k) + 1 for k in np.flatnonzero(np.asarray(metrics["key_frequency_mask"]))]
        record["elapsed_s"] = round(elapsed_before + time.perf_counter() - start, 3)
        bad = [k for k in METRIC_NAMES if not math.isfinite(record[k])]
        if bad:
            kept = (
                f"the last good checkpoint (step {last_saved}) is kept" if last_saved else "no checkpoint was written"
            )
            raise TrainingDiverged(
                f"{', '.join(bad)} became NaN/Inf by step {step}; training stopped and {kept}. "
                "Lower --lr or check the config."
            )
        history.append(record)
        sink.on_eval(record)
        if step % cfg.checkpoint_every == 0:
            sink.on_checkpoint(state, record["elapsed_s"])
            last_saved = step
    else:
        if cfg.early_exit and early_exit_due(history, cfg.early_exit_window):
            reason = "early-exit"
    if step != last_saved:
        sink.on_checkpoint(state, elapsed_before + time.perf_counter() - start)
    return FitResult(state, history, reason, elapsed_before + time.perf_counter() - start)


def state_to_arrays(state: TrainState) -> dict[str, np.ndarray]:
    """Flatten the state to {"params/blocks/0/w_q_DHK/value": array, ...} for `.npz`."""
    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    return {_leaf_name(path): np.asarray(leaf) for path, leaf in leaves}


def state_from_arrays(template: TrainState, arrays: dict[str, np.ndarray]) -> TrainState:
    """Inverse of `state_to_arrays`, checked leaf by leaf against the template's shapes."""
    paths, treedef = jax.tree_util.tree_flatten_with_path(template)
    leaves = []
    for path, like in paths:
        name = _leaf_name(path)
        if name not in arrays:
            raise ValueError(f"missing array '{name}'")
        value = arrays[name]
        if value.shape != like.shape or value.dtype != like.dtype:
            raise ValueError(f"'{name}' is {value.dtype}{list(value.shape)}, expected {like.dtype}{list(like.shape)}")
        leaves.append(jnp.asarray(value))
    extra = set(arrays) - {_leaf_name(p) for p, _ in paths}
    if extra:
        raise ValueError(f"unexpected arrays {sorted(extra)[:3]}")
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _leaf_name(path) -> str:
    return jax.tree_util.keystr(path, simple=True, separator="/")
