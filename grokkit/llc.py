"""The local learning coefficient (LLC) of a checkpoint, estimated by localized SGLD (`grokkit llc`).

Lau, Furman, Wang, Murfet, Wei 2023 ("Quantifying degeneracy in singular models via the learning
coefficient"); the estimator timaeus-research/devinterp implements in PyTorch (`SGLD`, `LLCEstimator`,
`estimate_learning_coeff`), written here in JAX:

    λ̂(w*) = nβ · (E_w[L_n(w)] − L_n(w*))

where the expectation is over the tempered posterior localized at w*, ∝ exp(−nβ L_n(w) − γ/2 ‖w − w*‖²),
sampled by SGLD started at w*:

    w ← w − (ε/2) · (nβ ∇L_B(w) + γ (w − w*)) + √ε · ξ,   ξ ~ N(0, I)

L_B is the mean loss over a minibatch B of m training examples drawn without replacement at every step
(the whole training set when m = n), L_n the mean loss over all n. This is devinterp's `SGLD.step`
exactly: `dw = nbeta·grad + localization·(w − w0)`, `w −= lr/2 · dw`, `w += sqrt(lr) · N(0, 1)`
(noise standard deviation √ε, `noise_level` 1), with `lr` = ε, `localization` = γ, `nbeta` = nβ.

Each draw records L_B(w) at the draw's w, the minibatch loss of the forward pass that also gives the
gradient (devinterp's `LLCEstimator` does the same); since B is drawn independently of w, its mean over
draws is an unbiased estimate of E_w[L_n(w)]. The first `burn_in` steps are not recorded. Per chain,
λ̂_c = nβ (mean over draws − L_n(w*)); the estimate is the mean over chains and the spread their
standard deviation (ddof 1, like torch's `std`).

Defaults and where they differ from devinterp:

- nβ = m / log m with m the SGLD batch size: devinterp's `default_nbeta(dataloader)` (batch size over
  its log). Lau et al.'s β* = 1 / log n with n the training-set size gives n / log n: the same number
  when SGLD runs full batch (m = n). grokkit's default m is the run's own batch size, capped at
  `DEFAULT_MAX_BATCH` (the default runs train full batch on thousands of examples; a capped minibatch
  makes a step several times cheaper), so nβ = m / log m with that m, printed with every estimate.
- L_n(w*) is the loss on the whole training set, not devinterp's average over `num_chains` minibatches
  (`get_init_loss_multi_batch`): exact, and one forward pass.
- γ = `DEFAULT_GAMMA` = 1000 (devinterp's default is 0, no localization; its grokking example uses 5 on a
  ~5k-parameter MLP, Lau et al.'s experiments 100). In flat directions the localized posterior has a
  per-coordinate spread of 1/√γ; on the default mod-add transformer (≈ 230k parameters, per-coordinate
  weight scale ‖w*‖/√P ≈ 0.075) γ = 100 gives 0.1, larger than the weights themselves, and the chains kept
  climbing or left the basin (`grokkit llc --calibrate --gamma 100` at its last checkpoint, step 1850:
  λ̂ 192 still drifting at ε 1e-4, a loss of 8 > log 97 at ε 1e-3); at γ = 1000 (spread 0.03) they settled.
- ε = `DEFAULT_EPSILON` = 3e-4 (devinterp's default lr 0.01 is far too large at nβ in the tens; its
  grokking example calibrates to 3e-3 at nβ = 2): what the calibration rule picks on the default run both
  while it memorizes (step 300) and after it generalized (step 1850); ε = 1e-3 escaped there, 1e-4 was
  still drifting after the default burn-in.
- chains × draws = 4 × 200 with 100 burn-in steps (devinterp: 10 × 100, no burn-in): vmapped chains
  cost almost nothing extra on an accelerator, but on a CPU each chain is a full forward/backward.
- Every checkpoint is sampled with the same seed (common random numbers: the minibatches and noise are
  the same sequence at each step), so differences along a trajectory are not sampling noise of the keys.

Randomness: chain c's step t uses `fold_in(fold_in(PRNGKey(seed), c), t)`, split into the minibatch key
and the noise key, so the result depends only on the seed and the settings (not on the order of calls).

A regular minimum in d dimensions has λ = d/2 (e.g. L = ½ Σ a_i (w_i − w*_i)²); degenerate ones less
(L = w⁴ in 1-D: λ = 1/4). Both are tests (tests/test_llc.py).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from grokkit.data import brief
from grokkit.errors import UsageError
from grokkit.llc_store import (  # the defaults and llc.json, importable without JAX
    AGREEMENT,
    CALIBRATION_EPSILON_FACTORS,
    CALIBRATION_FILE,
    CALIBRATION_NBETA_FACTORS,
    DEFAULT_BURN_IN,
    DEFAULT_CHAINS,
    DEFAULT_DRAWS,
    DEFAULT_EPSILON,
    DEFAULT_GAMMA,
    DEFAULT_MAX_BATCH,
    ESCAPE_SHARE,
    FORMAT_VERSION,
    LLC_FILE,
    MAX_DRIFT,
    RECOMMENDATION_RULE,
    default_nbeta,
)

LossFn = Callable[[Any, Any], jax.Array]
"""(params, batch) -> the mean loss over the batch, a scalar."""


# --- the estimator: any loss function of (params, batch) ---------------------------------------------


def sgld_sampler(loss_fn: LossFn, *, n: int | None, batch_size: int | None, chains: int, steps: int) -> Any:
    """A jitted `sample(params_star, data, key, epsilon, nbeta, gamma) -> losses [chains, steps]`.

    `data` is a pytree whose leaves have a leading axis of n examples (or None: the loss needs no data);
    every step draws `batch_size` of them without replacement (all of them, in order, when `batch_size`
    is None or n). ε, nβ, γ and w* are arguments, not constants: one compile serves every checkpoint and
    every calibration setting. The loss recorded at step t is L_B(w_t), before that step's update.
    """
    minibatch = n is not None and batch_size is not None and batch_size < n

    def pick(data: Any, key: jax.Array) -> Any:
        if not minibatch:
            return data
        assert n is not None and batch_size is not None
        idx = jax.random.choice(key, n, (batch_size,), replace=False)
        return jax.tree.map(lambda x: x[idx], data)

    def chain(params_star: Any, data: Any, key: jax.Array, epsilon, nbeta, gamma) -> jax.Array:
        # One flat parameter vector: one noise draw and one update per step, whatever the model's leaves.
        w_star, unravel = ravel_pytree(params_star)
        e, nb, gm = (jnp.asarray(v, w_star.dtype) for v in (epsilon, nbeta, gamma))
        grad_fn = jax.value_and_grad(lambda w, batch: loss_fn(unravel(w), batch))

        def step(w: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
            k_batch, k_noise = jax.random.split(jax.random.fold_in(key, t))
            loss, g = grad_fn(w, pick(data, k_batch))
            noise = jax.random.normal(k_noise, w.shape, w.dtype)
            return w - (e / 2) * (nb * g + gm * (w - w_star)) + jnp.sqrt(e) * noise, loss

        _, losses = jax.lax.scan(step, w_star, jnp.arange(steps))
        return losses

    def sample(params_star: Any, data: Any, key: jax.Array, epsilon, nbeta, gamma) -> jax.Array:
        chain_keys = jax.vmap(lambda c: jax.random.fold_in(key, c))(jnp.arange(chains))
        return jax.vmap(chain, in_axes=(None, None, 0, None, None, None))(
            params_star, data, chain_keys, epsilon, nbeta, gamma
        )

    return jax.jit(sample)


@dataclass(frozen=True)
class Estimate:
    """One λ̂ with the numbers behind it; `losses` is the recorded trace [chains, draws] (burn-in dropped)."""

    llc_mean: float
    llc_sd: float
    llc_chains: list[float]
    init_loss: float  # L_n(w*)
    mean_loss: float  # the mean recorded minibatch loss over the finite chains' draws
    drift: float  # see `stationarity`; NaN when undefined
    diverged: int  # chains whose loss went NaN/Inf at any step
    nbeta: float
    losses: np.ndarray = field(repr=False, compare=False)
    chance_loss: float | None = None  # the loss of uniform predictions, where the loss has one (grokkit runs)

    @property
    def escaped(self) -> bool:
        """The chains' loss rose by more than ESCAPE_SHARE of the way from L_n(w*) to guessing: they left
        the checkpoint's basin (localization too weak for this ε and nβ), whatever their stationarity."""
        if self.chance_loss is None:
            return False
        return not self.mean_loss - self.init_loss <= ESCAPE_SHARE * self.chance_loss

    @property
    def stationary(self) -> bool:
        return self.diverged == 0 and self.llc_mean > 0 and abs(self.drift) <= MAX_DRIFT and not self.escaped

    def as_json(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "losses"}
        out["escaped"] = self.escaped
        out["stationary"] = self.stationary
        return _finite_or_none(out)


def stationarity(losses_CD: np.ndarray, init_loss: float) -> float:
    """Relative drift of the chains' mean loss trace: (mean of the last quarter of draws − mean of the
    first quarter) / (mean over all draws − L_n(w*)). Near 0: the chains sampled one distribution; large
    and positive: still climbing from w* (more burn-in, or a larger ε); large: wandering off or diverging."""
    trace = losses_CD.mean(axis=0)
    q = max(1, len(trace) // 4)
    excess = float(trace.mean() - init_loss)
    if not math.isfinite(excess) or excess <= 0:
        return math.nan
    return float((trace[-q:].mean() - trace[:q].mean()) / excess)


def summarize(
    losses_CS: np.ndarray, init_loss: float, nbeta: float, burn_in: int, chance_loss: float | None = None
) -> Estimate:
    """λ̂ per chain and over chains from a loss trace [chains, burn_in + draws]."""
    losses_CS = np.asarray(losses_CS, dtype=np.float64)
    finite_C = np.isfinite(losses_CS).all(axis=1)
    kept_CD = losses_CS[:, burn_in:]
    per_chain = nbeta * (kept_CD.mean(axis=1) - init_loss)
    per_chain = np.where(finite_C, per_chain, np.nan)
    good = per_chain[finite_C]
    mean = float(good.mean()) if len(good) else math.nan
    sd = float(good.std(ddof=1)) if len(good) > 1 else (0.0 if len(good) else math.nan)
    good_CD = kept_CD[finite_C]
    return Estimate(
        llc_mean=mean,
        llc_sd=sd,
        llc_chains=[float(x) for x in per_chain],
        init_loss=float(init_loss),
        mean_loss=float(good_CD.mean()) if len(good_CD) else math.nan,
        drift=stationarity(good_CD, init_loss) if len(good_CD) else math.nan,
        diverged=int((~finite_C).sum()),
        nbeta=float(nbeta),
        losses=kept_CD,
        chance_loss=chance_loss,
    )


def estimate_llc(
    loss_fn: LossFn,
    params: Any,
    data: Any = None,
    *,
    epsilon: float,
    gamma: float,
    nbeta: float | None = None,
    chains: int = DEFAULT_CHAINS,
    draws: int = DEFAULT_DRAWS,
    burn_in: int = DEFAULT_BURN_IN,
    batch_size: int | None = None,
    seed: int = 0,
) -> Estimate:
    """λ̂ at `params` for a loss `loss_fn(params, batch)` (module docstring).

    `data`: a pytree of arrays with a leading axis of n examples, or None when the loss needs none (then
    `nbeta` is required). `batch_size`: examples per SGLD step (None: all n). `nbeta` None: m / log m.
    """
    n = None if data is None else int(jax.tree.leaves(data)[0].shape[0])
    if nbeta is None:
        if n is None:
            raise ValueError("nbeta is required when the loss takes no data")
        nbeta = default_nbeta(min(batch_size or n, n))
    sample = sgld_sampler(loss_fn, n=n, batch_size=batch_size, chains=chains, steps=burn_in + draws)
    init_loss = float(jax.jit(loss_fn)(params, data))
    losses = sample(params, data, jax.random.PRNGKey(seed), epsilon, nbeta, gamma)
    return summarize(np.asarray(losses), init_loss, nbeta, burn_in)


# --- settings and checks -----------------------------------------------------------------------------


MAX_CHAINS = 1024
MAX_SAMPLER_STEPS = 10_000_000
"""At most this many SGLD steps over all chains at one checkpoint (the recorded losses alone: 40 MB; the default
is 1,200), so a mistyped count is refused at once instead of running for days or failing inside XLA."""
MAX_SEED = 2**31 - 1


@dataclass(frozen=True)
class LLCSettings:
    """The sampler's settings; None for nbeta and batch_size: the defaults for the run (module docstring)."""

    epsilon: float = DEFAULT_EPSILON
    nbeta: float | None = None
    gamma: float = DEFAULT_GAMMA
    chains: int = DEFAULT_CHAINS
    draws: int = DEFAULT_DRAWS
    burn_in: int = DEFAULT_BURN_IN
    batch_size: int | None = None
    seed: int = 0

    def check(self) -> None:
        """Non-positive counts or step sizes are usage errors naming their option."""
        for name, value in (("--chains", self.chains), ("--draws", self.draws)):
            if value < 1:
                raise UsageError(f"must be a positive number, got {value}", option=name)
        if self.burn_in < 0:
            raise UsageError(f"must be 0 or more, got {self.burn_in}", option="--burn-in")
        if not 0 <= self.seed <= MAX_SEED:
            raise UsageError(f"must be in [0, {MAX_SEED}], got {self.seed}", option="--seed")
        if self.chains > MAX_CHAINS:
            raise UsageError(f"must be at most {MAX_CHAINS}, got {brief(self.chains)}", option="--chains")
        steps = self.chains * (self.burn_in + self.draws)
        if steps > MAX_SAMPLER_STEPS:
            raise UsageError(
                f"chains x (burn-in + draws) is {brief(steps)} SGLD steps, over the limit of {MAX_SAMPLER_STEPS:,}; "
                "lower --draws or --burn-in",
                option="--draws",
            )
        if self.batch_size is not None and self.batch_size < 1:
            raise UsageError(f"must be a positive number, got {self.batch_size}", option="--batch-size")
        for name, real in (("--epsilon", self.epsilon), ("--nbeta", self.nbeta)):
            if real is not None and not (math.isfinite(real) and real > 0):
                raise UsageError(f"must be a positive number, got {real:g}", option=name)
        if not (math.isfinite(self.gamma) and self.gamma >= 0):
            raise UsageError(f"must be 0 or more, got {self.gamma:g}", option="--gamma")

    def resolved(self, n_train: int, run_batch: int | None) -> LLCSettings:
        """Fill in the batch size (the run's, at most DEFAULT_MAX_BATCH) and nβ (m / log m)."""
        self.check()
        batch = self.batch_size or min(run_batch or n_train, DEFAULT_MAX_BATCH, n_train)
        if batch > n_train:
            raise UsageError(f"{batch} is more than the run's {n_train} training examples", option="--batch-size")
        return replace(self, batch_size=batch, nbeta=self.nbeta or default_nbeta(batch))


# --- grokkit runs --------------------------------------------------------------------------------------


@dataclass
class _RunSampler:
    """A run's model, training data and one compiled sampler, shared by every checkpoint and setting."""

    exp: Any
    settings: LLCSettings
    sample: Any  # the compiled sampler
    init_loss: Any  # the compiled full-training-set loss
    data: Any
    x64: bool
    compile_s: float
    chance_loss: float

    def estimate(self, params: Any, epsilon: float, nbeta: float) -> Estimate:
        s = self.settings
        with self._precision():
            init_loss = float(self.init_loss(params, self.data))
            scalars = (jnp.float32(epsilon), jnp.float32(nbeta), jnp.float32(s.gamma))
            losses = self.sample(params, self.data, jax.random.PRNGKey(s.seed), *scalars)
            losses = np.asarray(losses)
        return summarize(losses, init_loss, nbeta, s.burn_in, self.chance_loss)

    def _precision(self) -> contextlib.AbstractContextManager:
        return jax.enable_x64(True) if self.x64 else contextlib.nullcontext()


def _run_sampler(exp: Any, template_params: Any, settings: LLCSettings) -> _RunSampler:
    from flax import nnx

    from grokkit.config import LossDtype

    def loss_fn(params: Any, batch: tuple[jax.Array, jax.Array]) -> jax.Array:
        tokens, labels = batch
        return exp.loss(nnx.merge(exp.graphdef, params)(tokens), labels)[0]

    data = (jnp.asarray(exp.dataset.tokens[exp.train_idx]), jnp.asarray(exp.train_labels[0]))
    assert settings.batch_size is not None and settings.nbeta is not None
    sampler = sgld_sampler(
        loss_fn,
        n=exp.n_train,
        batch_size=settings.batch_size,
        chains=settings.chains,
        steps=settings.burn_in + settings.draws,
    )
    x64 = exp.config.train.loss_dtype != LossDtype.float32
    start = time.perf_counter()
    with jax.enable_x64(True) if x64 else contextlib.nullcontext():
        scalar = jax.ShapeDtypeStruct((), jnp.float32)
        key = jax.random.PRNGKey(0)
        compiled = sampler.lower(template_params, data, key, scalar, scalar, scalar).compile()
        init_loss = jax.jit(loss_fn).lower(template_params, data).compile()
        labels = data[1]
        chance = float(exp.loss(jnp.zeros((len(labels), exp.dataset.n_classes), jnp.float32), labels)[0])
    return _RunSampler(exp, settings, compiled, init_loss, data, x64, time.perf_counter() - start, chance)


@dataclass(frozen=True)
class _Loaded:
    run: Any  # RunDir
    exp: Any  # Experiment
    checkpoints: list[tuple[int, Any]]  # (step, params), oldest first
    skipped: list[int]  # steps whose checkpoint could not be read
    records: dict[int, dict[str, Any]]  # metrics.jsonl by step
    history: list[dict[str, Any]]  # metrics.jsonl in order


def _load_run(path: Path, only_step: int | None = None, last_only: bool = False) -> _Loaded:
    from grokkit.checkpoint import CheckpointError, list_checkpoints, load_checkpoint
    from grokkit.jax_setup import configure_jax
    from grokkit.rundir import RunDir
    from grokkit.train import abstract_state, make_experiment, state_from_arrays

    run = RunDir.open(path)
    config = run.config()
    if config.model.output_scale is not None:
        raise UsageError(
            f"{run.path} was trained with --output-scale (the network alpha (f - f0)); the LLC is implemented for "
            "the plain network only",
            option="RUN_DIR",
        )
    infos = list_checkpoints(run.checkpoints) if run.checkpoints.is_dir() else []
    if not infos:
        raise UsageError(f"{run.path} has no checkpoints to estimate the LLC at", option="RUN_DIR")
    if only_step is not None:
        chosen = [i for i in infos if i.step == only_step]
        if not chosen:
            steps = ", ".join(str(i.step) for i in infos)
            raise UsageError(f"no checkpoint at step {only_step} in {run.path} (checkpoints: {steps})", option="--step")
        infos = chosen
    configure_jax()
    exp = make_experiment(config, split=run.split())
    template = abstract_state(exp)
    loaded, skipped = [], []
    for info in reversed(infos) if last_only else infos:
        try:
            arrays, _ = load_checkpoint(info)
            loaded.append((info.step, state_from_arrays(template, arrays).params))
        except (CheckpointError, ValueError, OSError):
            skipped.append(info.step)
            continue
        if last_only:
            break
    if not loaded:
        raise UsageError(f"{run.path} has no readable checkpoint (damaged: steps {skipped})", option="RUN_DIR")
    history = run.read_metrics().records
    records = {int(r["step"]): r for r in history}
    return _Loaded(run, exp, loaded, sorted(skipped), records, history)


def _accuracies(records: dict[int, dict[str, Any]], step: int) -> dict[str, float | None]:
    """train/val accuracy at `step` from metrics.jsonl (the latest evaluation at or before it)."""
    steps = [s for s in records if s <= step]
    record = records[max(steps)] if steps else {}
    return {"train_acc": record.get("train_acc"), "val_acc": record.get("val_acc")}


def _milestones(history: list[dict[str, Any]]) -> dict[str, int | None]:
    """The run's memorized (train 99%) and generalized (validation 99%) steps, as `report` finds them."""
    from grokkit.analysis import milestones

    found = milestones(history) if history else {}
    return {"memorized": found.get("memorized_step"), "generalized": found.get("generalized_step")}


def _peak(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The checkpoint with the largest λ̂."""
    finite = [r for r in rows if r["llc_mean"] is not None]
    if not finite:
        return None
    top = max(finite, key=lambda r: r["llc_mean"])
    return {"step": top["step"], "llc_mean": top["llc_mean"]}


def _device() -> str:
    device = jax.devices()[0]
    return f"{device.platform} ({getattr(device, 'device_kind', device.platform)})"


def estimate_run(
    path: Path, settings: LLCSettings = LLCSettings(), on_checkpoint: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    """λ̂ at every stored checkpoint of a run; written to RUN/llc.json and returned (the same document).

    `on_checkpoint(done, total)` is called before each checkpoint (for a progress display).
    """
    settings.check()
    start = time.perf_counter()
    loaded = _load_run(path)
    exp = loaded.exp
    settings = settings.resolved(exp.n_train, exp.config.optim.batch_size)
    sampler = _run_sampler(exp, loaded.checkpoints[0][1], settings)
    assert settings.nbeta is not None
    rows = []
    sampling_s = 0.0
    for done, (step, params) in enumerate(loaded.checkpoints):
        if on_checkpoint is not None:
            on_checkpoint(done, len(loaded.checkpoints))
        t0 = time.perf_counter()
        estimate = sampler.estimate(params, settings.epsilon, settings.nbeta)
        sampling_s += time.perf_counter() - t0
        rows.append({"step": step, **estimate.as_json(), **_accuracies(loaded.records, step)})
    if on_checkpoint is not None:
        on_checkpoint(len(loaded.checkpoints), len(loaded.checkpoints))
    total_s = time.perf_counter() - start
    document = {
        "format": FORMAT_VERSION,
        "estimator": "nbeta * (mean SGLD minibatch loss over draws - full training loss at the checkpoint)",
        "settings": _settings_json(settings, exp.n_train),
        "trajectory": rows,
        "milestones": _milestones(loaded.history),
        "peak": _peak(rows),
        "skipped_steps": loaded.skipped,
        "cost": _cost(total_s, sampler.compile_s, sampling_s, len(rows), settings),
    }
    write_llc(loaded.run.path, document)
    return document


def _settings_json(settings: LLCSettings, n_train: int) -> dict[str, Any]:
    assert settings.batch_size is not None
    return {
        **asdict(settings),
        "n_train": n_train,
        "nbeta_default": default_nbeta(settings.batch_size),
        "steps_per_chain": settings.burn_in + settings.draws,
    }


def _cost(total_s: float, compile_s: float, sampling_s: float, count: int, settings: LLCSettings) -> dict[str, Any]:
    steps = count * settings.chains * (settings.burn_in + settings.draws)
    return {
        "seconds": round(total_s, 3),
        "compile_seconds": round(compile_s, 3),
        "sampling_seconds": round(sampling_s, 3),
        "seconds_per_checkpoint": round(sampling_s / count, 3) if count else None,
        "sgld_steps": steps,
        "microseconds_per_sgld_step": round(1e6 * sampling_s / steps, 1) if steps else None,
        "device": _device(),
    }


def write_llc(run_dir: Path, document: dict[str, Any], name: str = LLC_FILE) -> None:
    """RUN/llc.json (or the calibration file), written atomically."""
    from grokkit.atomic import atomic_write_json
    from grokkit.errors import StorageError

    try:
        atomic_write_json(Path(run_dir) / name, _finite_or_none(document))
    except OSError as err:
        raise StorageError(f"cannot write {Path(run_dir) / name}: {err.strerror or err}") from None


# --- calibration -----------------------------------------------------------------------------------


def calibrate_run(
    path: Path,
    settings: LLCSettings = LLCSettings(),
    step: int | None = None,
    epsilons: Sequence[float] | None = None,
    nbetas: Sequence[float] | None = None,
    on_setting: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """λ̂ and the stationarity diagnostic over a grid of ε × nβ at one checkpoint (default: the newest).

    The grid defaults to settings.epsilon and the resolved nβ times CALIBRATION_*_FACTORS. The
    recommendation (`recommend`) is part of the returned document, which is also written to
    RUN/llc_calibration.json.
    """
    settings.check()
    start = time.perf_counter()
    loaded = _load_run(path, only_step=step, last_only=step is None)
    exp = loaded.exp
    settings = settings.resolved(exp.n_train, exp.config.optim.batch_size)
    assert settings.nbeta is not None
    epsilons = list(epsilons or [settings.epsilon * f for f in CALIBRATION_EPSILON_FACTORS])
    nbetas = list(nbetas or [settings.nbeta * f for f in CALIBRATION_NBETA_FACTORS])
    at_step, params = loaded.checkpoints[0]
    sampler = _run_sampler(exp, params, settings)
    grid: list[dict[str, Any]] = []
    sampling_s = 0.0
    total = len(epsilons) * len(nbetas)
    for nbeta in nbetas:
        for epsilon in epsilons:
            if on_setting is not None:
                on_setting(len(grid), total)
            t0 = time.perf_counter()
            estimate = sampler.estimate(params, epsilon, nbeta)
            sampling_s += time.perf_counter() - t0
            grid.append({"epsilon": epsilon, **estimate.as_json(), "mean_trace": _quartiles(estimate.losses)})
    if on_setting is not None:
        on_setting(total, total)
    document = {
        "format": FORMAT_VERSION,
        "step": at_step,
        **_accuracies(loaded.records, at_step),
        "settings": _settings_json(settings, exp.n_train),
        "grid": grid,
        "recommendation": recommend(grid, settings.nbeta),
        "rule": RECOMMENDATION_RULE,
        "cost": _cost(time.perf_counter() - start, sampler.compile_s, sampling_s, total, settings),
    }
    write_llc(loaded.run.path, document, CALIBRATION_FILE)
    return document


def _quartiles(losses_CD: np.ndarray) -> list[float]:
    """The chains' mean loss in each quarter of the draws (what the drift compares)."""
    trace = losses_CD.mean(axis=0) if len(losses_CD) else np.full(4, np.nan)
    return [float(part.mean()) if len(part) else math.nan for part in np.array_split(trace, 4)]


def recommend(grid: list[dict[str, Any]], default: float) -> dict[str, Any] | None:
    """Apply RECOMMENDATION_RULE to calibration rows (each with epsilon, nbeta, llc_mean, stationary)."""
    by_nbeta: dict[float, list[dict[str, Any]]] = {}
    for row in grid:
        if row["stationary"]:
            by_nbeta.setdefault(row["nbeta"], []).append(row)
    if not by_nbeta:
        return None
    nbeta = min(by_nbeta, key=lambda nb: abs(math.log(nb / default)))
    rows = sorted(by_nbeta[nbeta], key=lambda r: r["epsilon"])
    chosen = rows[0]
    for smaller, larger in itertools.pairwise(rows):
        if abs(larger["llc_mean"] - smaller["llc_mean"]) <= AGREEMENT * abs(smaller["llc_mean"]):
            chosen = larger
    return {"epsilon": chosen["epsilon"], "nbeta": chosen["nbeta"], "llc_mean": chosen["llc_mean"]}


# --- helpers ---------------------------------------------------------------------------------------------


def _finite_or_none(value: Any) -> Any:
    """NaN/Inf (not JSON) as null, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(v) for v in value]
    return value
