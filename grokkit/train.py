"""The training loop: a pure step, lax.scan between evaluations, one jitted chunk function."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, partial
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from grokkit.analysis import Ending, early_exit_due
from grokkit.bases import MEASURE_NAMES, SIGNAL_NAMES, GroupBasis, task_basis
from grokkit.config import Config, DataConfig, Loss, LossDtype, ModelConfig, ModelKind, OptimConfig, TrainConfig
from grokkit.data import Dataset, Split, get_task, make_dataset, split_dataset, task_shape
from grokkit.errors import TrainingDiverged, UsageError
from grokkit.models import build_model
from grokkit.optim import INJECTED, build_optimizer, hyperparameters
from grokkit.parity import parity_measures
from grokkit.progress import BasisData, basis_data, key_field, key_names, progress_measures
from grokkit.signals import distance_from_init, gradient_chunk, task_agnostic_signals

METRIC_NAMES = ("train_loss", "train_acc", "val_loss", "val_acc", "param_norm")
NOISE_METRICS = ("train_acc_clean", "train_acc_corrupted", "train_acc_corrupted_true")
"""With --label-noise: accuracy on the uncorrupted training examples, on the corrupted ones against the labels
trained on (memorized noise; its fall is Doshi et al.'s forgetting), and on the corrupted ones against their
true labels."""
LAZINESS_METRICS = ("relative_weight_change",)
"""With --output-scale: ||theta - theta_0|| / ||theta_0||, how far training has moved the weights (Kumar et al.
2024: small while training is lazy, growing once features are learned)."""


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
    basis: BasisData | None  # the task's basis, for the progress measures (grokkit.bases)
    init_params: nnx.State  # theta_0, the seed's initial parameters, for dist_from_init (grokkit.signals)


@dataclass(frozen=True)
class Experiment:
    """Everything built once per run from a config: data, split, model structure, optimizer."""

    config: Config
    dataset: Dataset
    split: Split
    graphdef: Any
    tx: optax.GradientTransformation

    def loss(self, logits_BC: jax.Array, labels_B: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The configured loss and the accuracy."""
        return loss_and_accuracy(logits_BC, labels_B, self.config.train.loss, self.config.train.loss_dtype)

    def outputs(self, params: nnx.State, init_params: nnx.State | None, tokens_BT: jax.Array) -> jax.Array:
        """The network's outputs: the model's, or with --output-scale alpha, alpha * (f_theta - f_theta0) (Kumar
        et al. 2024; `init_params` is theta_0)."""
        logits_BC = nnx.merge(self.graphdef, params)(tokens_BT)
        alpha = self.config.model.output_scale
        if alpha is None:
            return logits_BC
        return alpha * (logits_BC - nnx.merge(self.graphdef, init_params)(tokens_BT))

    def training_objective(self, loss: jax.Array) -> jax.Array:
        """What the optimizer minimizes: the loss, divided by alpha^2 with --output-scale (Kumar et al. 2024, after
        Chizat et al. 2019; with SGD this is their learning rate eta_0 / alpha^2)."""
        alpha = self.config.model.output_scale
        return loss if alpha is None else loss / alpha**2

    @cached_property
    def train_idx(self) -> np.ndarray:
        """The examples trained on: the split's training examples, or --train-subset's part of them."""
        from grokkit.lineage import subset_split

        return subset_split(self.split, self.config).train_idx

    @cached_property
    def train_labels(self) -> tuple[np.ndarray, np.ndarray]:
        """(the labels trained on, positions in `train_idx` whose label --label-noise replaced)."""
        from grokkit.lineage import corrupt_labels

        d, ds = self.config.data, self.dataset
        return corrupt_labels(ds.labels[self.train_idx], ds.n_classes, d.label_noise, self.config.data_seed)

    @property
    def n_train(self) -> int:
        return len(self.train_idx)

    @cached_property
    def basis(self) -> GroupBasis | None:
        """The task's basis for the progress measures (None: parity, rand)."""
        return task_basis(self.dataset.task, self.config.data.p)

    def device_data(self) -> Data:
        ds, sp = self.dataset, self.split
        return Data(
            train=Batch(jnp.asarray(ds.tokens[self.train_idx]), jnp.asarray(self.train_labels[0])),
            every=Batch(jnp.asarray(ds.tokens), jnp.asarray(ds.labels)),
            train_idx=jnp.asarray(self.train_idx),
            val_idx=jnp.asarray(sp.val_idx),
            basis=None if self.basis is None else basis_data(self.basis, ds),
            init_params=initial_params(self),
        )


def _model_factory(config: Config) -> Callable[[int], nnx.Module]:
    d = config.data
    return partial(build_model, config.model, *task_shape(d.task, d.p, d.n_bits))


def make_experiment(config: Config, split: Split | None = None) -> Experiment:
    """Build the dataset, the split (or use a stored one), the model structure and the optimizer."""
    d = config.data
    if get_task(d.task).family == "image" and config.model.kind != ModelKind.mlp:
        raise UsageError(f"task '{d.task}' has real-valued image inputs, which only the MLP reads; use --model mlp",
                         option="--model")  # fmt: skip
    dataset = make_dataset(d.task, d.p, seed=config.data_seed, n_bits=d.n_bits, k_bits=d.k_bits, n_samples=d.n_samples)
    if split is None:
        split = split_dataset(len(dataset), d.train_frac, config.data_seed)
    abstract_model = nnx.eval_shape(lambda: _model_factory(config)(config.seed))
    graphdef, _ = nnx.split(abstract_model)
    return Experiment(config, dataset, split, graphdef, build_optimizer(config.optim))


def make_init_fn(exp: Experiment) -> Callable[[Config], TrainState]:
    """One compiled initializer for every run that shares `exp`'s structure; the seed, the init scale
    and the optimizer's hyperparameters are arguments, not constants."""

    @jax.jit
    def init(seed, init_scale, hyper):
        _, params = nnx.split(_model_factory(exp.config)(seed))
        params = jax.tree.map(lambda w: w * init_scale.astype(w.dtype), params)
        tx = build_optimizer(exp.config.optim, hyper)
        return TrainState(jnp.zeros((), jnp.int32), params, tx.init(params), jax.random.PRNGKey(seed))

    def for_config(config: Config) -> TrainState:
        return init(jnp.int32(config.seed), jnp.float32(config.model.init_scale), hyperparameters(config.optim))

    return for_config


_INIT_FNS: dict[Any, Callable[[Config], TrainState]] = {}


def initial_params(exp: Experiment) -> nnx.State:
    """theta_0 for `dist_from_init`: the step-0 parameters `make_init_fn(exp)(exp.config)` gives (the seed's
    initialization at the config's init scale), recomputed rather than stored, so checkpoints and resume are
    unchanged. The seed's, also for --init-from runs (grokkit.signals says why). One compiled initializer per
    structure (model, optimizer, dataset shapes), shared by every run and sweep member that has it."""
    c = exp.config
    neutral = dataclasses.replace(
        c,
        seed=0,
        preset=None,
        data=DataConfig(),
        model=dataclasses.replace(c.model, init_scale=ModelConfig.init_scale),
        optim=dataclasses.replace(c.optim, **{k: getattr(OptimConfig, k) for k in INJECTED}),
        train=TrainConfig(),
    )
    d = c.data
    key = (neutral, task_shape(d.task, d.p, d.n_bits))
    if key not in _INIT_FNS:
        _INIT_FNS[key] = make_init_fn(exp)
    return _INIT_FNS[key](c).params


def init_state(exp: Experiment) -> TrainState:
    """The step-0 state, built in one compiled program (eager init would compile op by op)."""
    return make_init_fn(exp)(exp.config)


def with_config_hyperparameters(state: TrainState, config: Config) -> TrainState:
    """Set the optimizer-state hyperparameters from `config` (config.json stays the source of truth on resume)."""
    current = state.opt_state.hyperparams
    values = {k: jnp.asarray(v, dtype=jnp.asarray(current[k]).dtype) for k, v in hyperparameters(config.optim).items()}
    return state._replace(opt_state=state.opt_state._replace(hyperparams=values))


def abstract_state(exp: Experiment) -> TrainState:
    """Shapes and dtypes of the state, without computing it."""
    return jax.eval_shape(lambda: init_state(exp))


def loss_and_accuracy(
    logits_BC: jax.Array, labels_B: jax.Array, loss: Loss = Loss.softmax, dtype: LossDtype = LossDtype.float32
) -> tuple[jax.Array, jax.Array]:
    """Mean loss (softmax or StableMax cross-entropy, or squared error to the one-hot label) and accuracy."""
    x_BC = logits_BC.astype(dtype.value)
    if loss == Loss.softmax:
        loss_B = optax.softmax_cross_entropy_with_integer_labels(x_BC, labels_B)
    elif loss == Loss.stablemax:
        loss_B = -jnp.take_along_axis(log_stablemax(x_BC), labels_B[:, None], axis=-1)[:, 0]
    else:
        loss_B = jnp.sum(jnp.square(x_BC - jax.nn.one_hot(labels_B, x_BC.shape[-1], dtype=x_BC.dtype)), -1)
    return loss_B.mean().astype(jnp.float32), (logits_BC.argmax(-1) == labels_B).mean()


def log_stablemax(x_BC: jax.Array) -> jax.Array:
    """Prieto et al. 2025: s(x) = x + 1 for x >= 0, 1 / (1 - x) for x < 0, normalized over classes; its log."""
    s_BC = jnp.where(x_BC >= 0, x_BC + 1, 1 / (1 - jnp.minimum(x_BC, 0)))
    return jnp.log(s_BC) - jnp.log(s_BC.sum(-1, keepdims=True))


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


def train_step(
    exp: Experiment, state: TrainState, batch: Batch, init_params: nnx.State | None = None
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer update: a pure function (state, batch) -> (state, metrics); `init_params` is theta_0, which
    only --output-scale's centring reads (`Experiment.outputs`)."""

    def objective(params):
        loss, accuracy = exp.loss(exp.outputs(params, init_params, batch.tokens_BT), batch.labels_B)
        return exp.training_objective(loss), (loss, accuracy)

    (_, (loss, accuracy)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    updates, opt_state = exp.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return state._replace(step=state.step + 1, params=params, opt_state=opt_state), {
        "loss": loss,
        "accuracy": accuracy,
    }


def evaluate(exp: Experiment, params: nnx.State, data: Data) -> dict[str, Any]:
    """Loss and accuracy on the FULL train and validation sets, parameter norms, the task-agnostic signals
    (grokkit.signals), progress measures."""
    model = nnx.merge(exp.graphdef, params)
    logits_NC = outputs_in_chunks(partial(exp.outputs, params, data.init_params), data.every.tokens_BT)
    labels_N = data.every.labels_B

    train_logits_BC = logits_NC[data.train_idx]
    train_loss, train_acc = exp.loss(train_logits_BC, data.train.labels_B)  # the labels trained on
    val_loss, val_acc = exp.loss(logits_NC[data.val_idx], labels_N[data.val_idx])
    metrics = {
        "train_loss": train_loss,
        "train_acc": train_acc,
        "val_loss": val_loss,
        "val_acc": val_acc,
        "param_norm": parameter_norm(params),
        "param_norms": {name: parameter_norm(group) for name, group in parameter_groups(params).items()},
    }

    def batch_loss(p: nnx.State, tokens_BT: jax.Array, labels_B: jax.Array) -> jax.Array:
        return exp.loss(exp.outputs(p, data.init_params, tokens_BT), labels_B)[0]

    train, chunk = data.train, gradient_chunk(exp.config.optim.batch_size, exp.n_train)
    signals = task_agnostic_signals(
        model, params, data.init_params, batch_loss, train.tokens_BT, train.labels_B, train_logits_BC,
        exp.dataset.n_values, chunk,
    )  # fmt: skip
    metrics.update(signals)
    if exp.config.model.output_scale is not None:
        metrics["relative_weight_change"] = relative_weight_change(params, data.init_params)
    if exp.config.data.label_noise > 0:
        metrics.update(noise_accuracies(logits_NC[data.train_idx], data.train.labels_B, labels_N[data.train_idx]))
    if data.basis is not None:
        embed_VD = model.operand_embedding(exp.dataset.n_values)
        metrics.update(progress_measures(embed_VD, logits_NC, labels_N, data.train_idx, data.basis))
    if exp.dataset.task == "sparse-parity":
        metrics.update(parity_measures(model, data.every.tokens_BT, exp.config.data.k_bits))
    return metrics


EVAL_CHUNK = 1024
"""The evaluation's forward pass over every example goes this many at a time: one pass over all of them spills
the activations out of cache (2-core CPU, measured with the model's own forward: power2022's 9,312 examples 140
ms whole, 68 in chunks of 1,024; nanda2023's 12,769, 29 ms whole, 15 in chunks)."""


def outputs_in_chunks(outputs: Callable[[jax.Array], jax.Array], tokens_NT: jax.Array) -> jax.Array:
    """`outputs(tokens_NT)`, computed EVAL_CHUNK examples at a time under `lax.map`, then the remainder."""
    n = tokens_NT.shape[0]
    count, rest = divmod(n, EVAL_CHUNK)
    if count <= 1:
        return outputs(tokens_NT)
    whole_KBT = tokens_NT[: count * EVAL_CHUNK].reshape(count, EVAL_CHUNK, *tokens_NT.shape[1:])
    logits_NC = jax.lax.map(outputs, whole_KBT).reshape(count * EVAL_CHUNK, -1)
    return jnp.concatenate([logits_NC, outputs(tokens_NT[count * EVAL_CHUNK :])]) if rest else logits_NC


def relative_weight_change(params: nnx.State, init_params: nnx.State) -> jax.Array:
    """`relative_weight_change` = ||theta - theta_0|| / ||theta_0|| over all parameters (LAZINESS_METRICS)."""
    return distance_from_init(params, init_params) / parameter_norm(init_params)


def noise_accuracies(logits_BC: jax.Array, trained_B: jax.Array, true_B: jax.Array) -> dict[str, jax.Array]:
    """NOISE_METRICS from the training logits, the labels trained on and the true labels (a corrupted example
    is one whose two labels differ); 0 where a group is empty."""
    predicted_B = logits_BC.argmax(-1)
    corrupted_B = trained_B != true_B

    def mean_over(hit_B, where_B):
        return jnp.sum(hit_B & where_B) / jnp.maximum(jnp.sum(where_B), 1)

    return {
        "train_acc_clean": mean_over(predicted_B == true_B, ~corrupted_B),
        "train_acc_corrupted": mean_over(predicted_B == trained_B, corrupted_B),
        "train_acc_corrupted_true": mean_over(predicted_B == true_B, corrupted_B),
    }


def parameter_groups(params: nnx.State) -> dict[str, Any]:
    """Parameters by top-level module (blocks split per layer): {"embed_VD": ..., "blocks/0": ...}."""
    groups: dict[str, list] = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        keys = [str(getattr(k, "key", getattr(k, "idx", k))) for k in path]
        name = "/".join(keys[:2]) if keys[0] in ("blocks", "hidden") and len(keys) > 2 else keys[0]
        groups.setdefault(name, []).append(leaf)
    return groups


ChunkFn = Callable[[TrainState, Data, int], tuple[TrainState, dict[str, jax.Array]]]


def make_chunk_fn(exp: Experiment, data_axes: Data | None = None) -> ChunkFn:
    """`n_steps` training steps under lax.scan, then a full evaluation; jitted, state donated.

    With `data_axes` (vmap in_axes for the data), the state carries a leading member axis M
    and every member trains in the same program (`grokkit sweep`).
    """

    def run_steps(state: TrainState, data: Data, n_steps: int):
        def body(state, _):
            state, _ = train_step(exp, state, select_batch(exp, state, data.train), data.init_params)
            return state, None

        state, _ = jax.lax.scan(body, state, None, length=n_steps)
        return state, evaluate(exp, state.params, data)

    if data_axes is not None:
        single = run_steps

        def run_steps(state: TrainState, data: Data, n_steps: int):
            return jax.vmap(partial(single, n_steps=n_steps), in_axes=(0, data_axes))(state, data)

    jitted = jax.jit(run_steps, static_argnums=2, donate_argnums=0)
    if exp.config.train.loss_dtype == LossDtype.float32:
        return jitted

    def chunk_x64(state: TrainState, data: Data, n_steps: int):
        with jax.enable_x64(True):  # float64 exists only while tracing/calling under this flag
            return jitted(state, data, n_steps)

    return chunk_x64


class Sink(Protocol):
    """Where the loop reports: metrics, checkpoints, summary (any object with these methods)."""

    def on_eval(self, record: dict[str, Any]) -> None: ...
    def on_checkpoint(self, state: TrainState, elapsed_s: float) -> None: ...
    def on_finish(self, reason: Ending) -> None: ...


class RunSink:
    """A Sink that reports nothing (a run without a directory)."""

    def on_eval(self, record: dict[str, Any]) -> None: ...
    def on_checkpoint(self, state: TrainState, elapsed_s: float) -> None: ...
    def on_finish(self, reason: Ending) -> None: ...


@dataclass
class Lane:
    """One run inside the training loop (alone, or one member of a group)."""

    sink: Sink
    history: list[dict[str, Any]]
    step: int
    elapsed_before: float = 0.0
    last_saved: int | None = None
    reason: Ending | None = None  # None while training
    error: str = ""


@dataclass
class FitResult:
    state: TrainState
    history: list[dict[str, Any]]
    reason: Ending  # never diverged: fit raises TrainingDiverged
    elapsed_s: float


def eval_record(
    metrics: dict[str, Any], step: int, elapsed_s: float, basis: GroupBasis | None = None
) -> dict[str, Any]:
    """One metrics.jsonl line from an evaluation's (host) metrics (`basis` names the key components)."""
    record: dict[str, Any] = {"step": step, **{k: float(metrics[k]) for k in METRIC_NAMES}}
    record["param_norms"] = {name: float(v) for name, v in metrics["param_norms"].items()}
    record.update({name: float(metrics[name]) for name in NOISE_METRICS + LAZINESS_METRICS if name in metrics})
    record.update({name: float(metrics[name]) for name in SIGNAL_NAMES if name in metrics})
    record.update({name: float(metrics[name]) for name in MEASURE_NAMES if name in metrics})
    if basis is not None and "key_component_mask" in metrics:
        record[key_field(basis)] = key_names(basis, metrics["key_component_mask"])
    record["elapsed_s"] = round(elapsed_s, 3)
    return record


class Program(Protocol):
    """What `run_lanes` drives: the states of its lanes, advanced one compiled chunk at a time."""

    def advance(self, active: list[int], n_steps: int) -> list[dict[str, Any]]:
        """Train the lanes in `active` by `n_steps` steps, evaluate; their host metrics, in `active`'s order."""
        ...

    def state(self, i: int) -> TrainState:
        """Lane i's current state (what a checkpoint saves)."""
        ...


class OneByOne:
    """Every lane with its own state and data, advanced by the single-run chunk one lane after another.

    Lane i's arithmetic is exactly a standalone run's: the same compiled program on the same
    inputs, whatever the other lanes are or how many there are. All the lanes' chunks are
    dispatched before any metrics are read, so lanes placed on different devices run at once.
    """

    def __init__(self, chunk: ChunkFn, states: list[TrainState], data: list[Data]):
        self.chunk, self.states, self.data = chunk, list(states), list(data)

    def advance(self, active: list[int], n_steps: int) -> list[dict[str, Any]]:
        pending = []
        for i in active:
            self.states[i], metrics = self.chunk(self.states[i], self.data[i], n_steps)
            pending.append(metrics)
        return [jax.device_get(metrics) for metrics in pending]

    def state(self, i: int) -> TrainState:
        return self.states[i]


def run_lanes(
    exp: Experiment,
    program: Program,
    lanes: list[Lane],
    *,
    should_stop: Callable[[], bool] = lambda: False,
    on_chunk: Callable[[int, list[Lane]], None] = lambda step, lanes: None,
    pause: Callable[[], bool] = lambda: False,
) -> None:
    """Train every lane from their common step to the budget, an early exit, a stop request or NaN/Inf.

    Evaluations fall on multiples of `eval_every` and checkpoints on multiples of
    `checkpoint_every`, so an interrupted run resumes onto the same grid. A lane that turns
    NaN/Inf stops before anything from the bad chunk is saved. Lane i is `program`'s lane i;
    finished lanes are not advanced. Returns early, with lanes still training, when `pause()` says so.
    """
    cfg = exp.config.train
    start = time.perf_counter()

    def finish(i: int, reason: Ending) -> None:
        lane = lanes[i]
        if lane.step != lane.last_saved:
            lane.sink.on_checkpoint(program.state(i), lane.elapsed_before + time.perf_counter() - start)
            lane.last_saved = lane.step
        lane.reason = reason
        lane.sink.on_finish(reason)

    while True:
        for i, lane in enumerate(lanes):
            running = lane.reason is None
            if running and cfg.early_exit and early_exit_due(lane.history, cfg.early_exit_window, cfg.watch_after):
                finish(i, Ending.early_exit)
            elif lane.reason is None and lane.step >= cfg.steps:
                finish(i, Ending.budget)
        active = [i for i, lane in enumerate(lanes) if lane.reason is None]
        if not active or pause():
            return
        if should_stop():
            for i in active:
                finish(i, Ending.interrupted)
            return
        step = lanes[active[0]].step
        n_steps = min(cfg.eval_every - step % cfg.eval_every, cfg.steps - step)
        for i, metrics in zip(active, program.advance(active, n_steps), strict=True):
            lane = lanes[i]
            lane.step += n_steps
            record = eval_record(metrics, lane.step, lane.elapsed_before + time.perf_counter() - start, exp.basis)
            bad = [k for k in METRIC_NAMES if not math.isfinite(record[k])]
            if bad:
                kept = (
                    f"the last good checkpoint (step {lane.last_saved}) is kept"
                    if lane.last_saved
                    else "no checkpoint was written"
                )
                lane.reason = Ending.diverged
                lane.error = (
                    f"{', '.join(bad)} became NaN/Inf by step {lane.step}; training stopped and {kept}. "
                    "Lower --lr or check the config."
                )
                lane.sink.on_finish(Ending.diverged)
                continue
            lane.history.append(record)
            lane.sink.on_eval(record)
            if lane.step % cfg.checkpoint_every == 0:
                lane.sink.on_checkpoint(program.state(i), record["elapsed_s"])
                lane.last_saved = lane.step
        on_chunk(lanes[active[0]].step, lanes)


def fit(
    exp: Experiment,
    state: TrainState,
    history: list[dict[str, Any]] | None = None,
    *,
    sink: Sink | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    elapsed_before: float = 0.0,
) -> FitResult:
    """Train one run from `state` to the step budget (or early exit, or a stop request).

    Raises TrainingDiverged on NaN/Inf, before anything from the bad chunk is saved.
    """
    step = int(state.step)
    lane = Lane(sink or RunSink(), list(history or []), step, elapsed_before, last_saved=step if step > 0 else None)
    start = time.perf_counter()
    program = OneByOne(make_chunk_fn(exp), [state], [exp.device_data()])
    run_lanes(exp, program, [lane], should_stop=should_stop)
    state = program.states[0]
    if lane.reason == Ending.diverged:
        raise TrainingDiverged(lane.error)
    assert lane.reason is not None  # without `pause`, run_lanes returns with every lane finished
    return FitResult(state, lane.history, lane.reason, elapsed_before + time.perf_counter() - start)


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
