"""Runs that start from another run: `--init-from RUN[@STEP]`, `--train-subset`, `--mask-from RUN@STEP --prune Q`,
and the label noise of `--label-noise XI`.

Sources are pinned when a run starts (`pin_sources`): config.json then holds the source run's absolute path,
the checkpoint's step (`RUN@STEP`) and its SHA-256, so the provenance is on disk and a source that changes
afterwards is refused rather than silently used. The new run writes a checkpoint of its initial state before
training, so from then on (resume included) it starts from its own checkpoints, never from the source again.

Step counter. Without `--init-optimizer` only the parameters are taken: the new run starts at step 0 with a
fresh optimizer state (its warmup and schedule start again). With it, the source's optimizer state *and* its
step counter are taken, so the schedule, the optimizer's own counters and the per-step keys fold_in(key, step)
continue at STEP: with the same config (and seed, which gives the key) the run continues the source's
trajectory bit for bit.

Pruning (grokking tickets): every parameter tensor with at least two dimensions (token and positional
embeddings, attention, MLP and unembedding matrices; MLP models: their weight matrices) loses the round(Q * size)
entries of smallest magnitude in the source checkpoint (ties by position); biases and LayerNorm parameters are
never pruned (`--mask-random`, the control, prunes as many entries per tensor at random positions drawn from
the seed). The mask is applied to the new run's fresh initialization (rewind to init) and kept in the
optimizer state, where `grokkit.optim.keep_pruned` zeroes every update of a pruned weight (weight decay
included), so the pruned weights stay exactly 0 through training, resume and sweeps.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from grokkit.checkpoint import CheckpointError, list_checkpoints, load_checkpoint
from grokkit.config import Config, option_name
from grokkit.data import Split, brief
from grokkit.errors import UsageError

_SOURCE = re.compile(r"^(?P<run>.*?)(?:@(?P<step>[0-9]+(?:_[0-9]+)*))?$", re.DOTALL)  # STEP: 100, 1_000
INIT_FROM, MASK_FROM = option_name("train.init_from"), option_name("optim.mask_from")
DATA_KEYS = ("task", "p", "train_frac", "n_bits", "k_bits", "n_samples")
"""Data settings a source run must share with the new run (and its data seed), so its split is this run's."""
NOISE_SALT = 0x6E6F6973  # "nois": the label-noise draw's stream, apart from the split's
SUBSET_SALT = 0x73756273  # "subs"
MASK_SALT = 0x6D61736B  # "mask": --mask-random's draw


@dataclass(frozen=True)
class Source:
    run: Path
    step: int
    sha256: str
    config: Config
    arrays: dict[str, np.ndarray]

    @property
    def pinned(self) -> str:
        return f"{self.run}@{self.step}"


def parse_source(text: str, option: str) -> tuple[Path, int | None]:
    """'RUN' or 'RUN@STEP' -> (path, step or None)."""
    match = _SOURCE.match(text)
    if not match or not match.group("run"):
        raise UsageError(f"expected RUN or RUN@STEP, got {brief(text)}", option=option)
    step = match.group("step")
    return Path(match.group("run")), int(step) if step else None


def load_source(text: str, option: str, need_step: bool = False) -> Source:
    """Read a source run's config and one checkpoint (STEP, or its newest); every problem is one UsageError."""
    from grokkit.rundir import RunDir

    path, step = parse_source(text, option)
    if need_step and step is None:
        raise UsageError(f"name the checkpoint: RUN@STEP, got {brief(text)}", option=option)
    try:
        run = RunDir.open(path)
        config = run.config()
        infos = list_checkpoints(run.checkpoints)
    except UsageError as err:
        message = str(err).removeprefix(f"{err.option}: ") if err.option else str(err)
        raise UsageError(message, option=option) from None
    except (OSError, ValueError) as err:  # a name too long for the file system, a NUL byte
        detail = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise UsageError(f"cannot read {brief(str(path))}: {detail}", option=option) from None
    if step is None:
        if not infos:
            raise UsageError(f"{path} has no checkpoint", option=option)
        info = infos[-1]
    else:
        found = [i for i in infos if i.step == step]
        if not found:
            have = ", ".join(str(i.step) for i in infos) or "none"
            raise UsageError(f"{path} has no checkpoint at step {step} (it has: {have})", option=option)
        info = found[0]
    try:
        arrays, meta = load_checkpoint(info)
    except CheckpointError as err:
        raise UsageError(f"{path}: checkpoint {err}", option=option) from None
    return Source(path.resolve(), info.step, str(meta["sha256"]), config, arrays)


def _check_data(source: Source, config: Config, option: str) -> None:
    theirs, ours = source.config.data, config.data
    for key in DATA_KEYS:
        if getattr(theirs, key) != getattr(ours, key):
            raise UsageError(
                f"the source run has {key} {getattr(theirs, key)!r}, this run {getattr(ours, key)!r}: "
                "it must have the same task and data",
                option=option,
            )
    if source.config.data_seed != config.data_seed:
        raise UsageError(
            f"the source run has data seed {source.config.data_seed}, this run {config.data_seed}: "
            f"it must have the same split (pass {option_name('data.data_seed')} {source.config.data_seed} "
            "to keep the source's split whatever the seed)",
            option=option,
        )


def _check_shapes(source: Source, template: dict[str, Any], prefix: str, option: str) -> None:
    """Every template array under `prefix` must be in the source with the same shape and dtype, and no more."""
    ours = {k: v for k, v in template.items() if k.startswith(prefix)}
    theirs = {k: v for k, v in source.arrays.items() if k.startswith(prefix)}
    for name, like in ours.items():
        if name not in theirs:
            raise UsageError(f"the source checkpoint has no tensor {name} (another model or optimizer)", option=option)
        got = theirs[name]
        if got.shape != like.shape or got.dtype != like.dtype:
            raise UsageError(
                f"tensor {name} is {got.dtype}{list(got.shape)} in the source, {like.dtype}{list(like.shape)} here",
                option=option,
            )
    extra = sorted(set(theirs) - set(ours))
    if extra:
        raise UsageError(f"the source checkpoint has tensor {extra[0]}, which this model lacks", option=option)


def _template(config: Config) -> dict[str, Any]:
    import jax

    from grokkit.train import _leaf_name, abstract_state, make_experiment

    paths = jax.tree_util.tree_flatten_with_path(abstract_state(make_experiment(config)))[0]
    return {_leaf_name(path): leaf for path, leaf in paths}


def pin_sources(config: Config, cache: dict[tuple[str, bool], Source] | None = None) -> Config:
    """Check and pin --init-from and --mask-from: absolute RUN@STEP and the checkpoint's SHA-256 in the config.

    Refuses (UsageError, exit 2) a missing or damaged source, another task or data, mismatched tensor
    shapes, a subset that leaves no example, and a checksum that differs from a pinned one. `cache` (a sweep
    checking every member) keeps each source read once.
    """
    cache = {} if cache is None else cache

    def load(text: str, option: str, need_step: bool = False) -> Source:
        if (text, need_step) not in cache:
            cache[text, need_step] = load_source(text, option, need_step)
        return cache[text, need_step]

    t, o = config.train, config.optim
    if t.init_from is None and o.mask_from is None:
        return config
    template = _template(config)
    if t.init_from is not None:
        source = load(t.init_from, INIT_FROM)
        _check_pin(source, t.init_sha256, INIT_FROM)
        _check_data(source, config, INIT_FROM)
        _check_shapes(source, template, "params/", INIT_FROM)
        if t.init_optimizer:
            _check_shapes(source, template, "opt_state/", INIT_FROM)
            if source.step >= config.train.steps:  # it would start with its budget spent: nothing to train
                raise UsageError(
                    f"{INIT_FROM} {source.pinned} continues at step {source.step:,} "
                    f"({option_name('train.init_optimizer')}), so the "
                    f"budget must exceed it: pass a total above {source.step:,}",
                    option=option_name("train.steps"),
                )
        config = dataclasses.replace(
            config, train=dataclasses.replace(t, init_from=source.pinned, init_sha256=source.sha256)
        )
        if config.data.train_subset is not None:
            n_train = len(_source_split(source).train_idx)
            if round(config.data.train_subset * n_train) < 1:
                raise UsageError(
                    f"{config.data.train_subset} of the {n_train} training examples leaves none",
                    option=option_name("data.train_subset"),
                )
    if o.mask_from is not None:
        source = load(o.mask_from, MASK_FROM, need_step=True)
        _check_pin(source, o.mask_sha256, MASK_FROM)
        if source.config.data.task != config.data.task or source.config.data.p != config.data.p:
            raise UsageError(
                f"the source run is {source.config.data.task} p={source.config.data.p}, this run "
                f"{config.data.task} p={config.data.p}",
                option=MASK_FROM,
            )
        _check_shapes(source, template, "params/", MASK_FROM)
        config = dataclasses.replace(
            config, optim=dataclasses.replace(o, mask_from=source.pinned, mask_sha256=source.sha256)
        )
    return config


def _check_pin(source: Source, sha256: str | None, option: str) -> None:
    if sha256 is not None and sha256 != source.sha256:
        raise UsageError(
            f"{source.pinned} has checksum {source.sha256[:12]}, not the {sha256[:12]} this run was started from "
            "(the source run was resumed or restarted since)",
            option=option,
        )


def _source_split(source: Source) -> Split:
    from grokkit.rundir import RunDir

    return RunDir.open(source.run).split()


def subset_split(split: Split, config: Config) -> Split:
    """The training indices a run trains on: all of `split`'s, or round(train_subset * n) of them drawn
    (without replacement, sorted) from the data seed; validation unchanged."""
    fraction = config.data.train_subset
    if fraction is None or fraction >= 1.0:
        return split
    n = round(fraction * len(split.train_idx))
    rng = np.random.default_rng([config.data_seed, SUBSET_SALT])
    chosen = np.sort(rng.permutation(len(split.train_idx))[:n])
    return Split(train_idx=split.train_idx[chosen], val_idx=split.val_idx)


def corrupt_labels(labels: np.ndarray, n_classes: int, xi: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Doshi et al. 2024's label noise: round(xi * n) positions (drawn without replacement from `seed`) get a
    label drawn uniformly from the n_classes - 1 *other* classes. Returns (noisy labels, sorted positions)."""
    labels = np.asarray(labels)
    n = len(labels)
    count = round(xi * n)
    if count == 0 or n_classes < 2:
        return labels.copy(), np.zeros(0, np.int32)
    rng = np.random.default_rng([seed, NOISE_SALT])
    where = np.sort(rng.permutation(n)[:count]).astype(np.int32)
    shift = rng.integers(1, n_classes, size=count)  # 1 .. n_classes - 1: never the true class
    noisy = labels.copy()
    noisy[where] = (labels[where] + shift) % n_classes
    return noisy, where


def _state_from(template_state: Any, arrays: dict[str, np.ndarray]) -> Any:
    from grokkit.train import state_from_arrays

    return state_from_arrays(template_state, arrays)


def prune_mask(weights: np.ndarray, q: float) -> np.ndarray:
    """Per tensor: False for the round(q * size) entries of smallest |w| (ties: first by position), else True."""
    flat = np.abs(np.asarray(weights, np.float64)).ravel()
    count = round(q * flat.size)
    keep = np.ones(flat.size, bool)
    keep[np.argsort(flat, kind="stable")[:count]] = False
    return keep.reshape(np.shape(weights))


def prunable(name: str, shape: tuple[int, ...]) -> bool:
    """Which parameter tensors pruning applies to: those with two or more dimensions (weight matrices and
    embeddings); biases and LayerNorm parameters are one-dimensional and never pruned."""
    return name.startswith("params/") and len(shape) >= 2


def apply_lineage(exp: Any, state: Any) -> Any:
    """A pinned config's initial state from a fresh one (`init_state`): the --init-from checkpoint's parameters
    (with --init-optimizer, its optimizer state and step too), then the --mask-from mask on the weights
    and in the optimizer state. A config with neither is returned unchanged."""
    import jax
    import jax.numpy as jnp
    import optax

    from grokkit.optim import build_optimizer, hyperparameters
    from grokkit.train import _leaf_name, state_to_arrays, with_config_hyperparameters

    config: Config = exp.config
    t, o = config.train, config.optim
    if t.init_from is None and o.mask_from is None:
        return state
    arrays = state_to_arrays(state)
    if t.init_from is not None:
        source = load_source(t.init_from, INIT_FROM)
        _check_pin(source, t.init_sha256, INIT_FROM)
        taken = ("params/", "opt_state/", "step") if t.init_optimizer else ("params/",)
        arrays.update({k: v for k, v in source.arrays.items() if k.startswith(taken)})
    masks: dict[str, np.ndarray] = {}
    if o.mask_from is not None and o.prune > 0:  # --prune 0 (a sweep's dense baseline) prunes nothing
        source = load_source(o.mask_from, MASK_FROM, need_step=True)
        _check_pin(source, o.mask_sha256, MASK_FROM)
        rng = np.random.default_rng([config.seed, MASK_SALT])
        for name, value in list(arrays.items()):
            if prunable(name, value.shape):
                scores = rng.standard_normal(value.shape) if o.mask_random else source.arrays[name]
                masks[name] = prune_mask(scores, o.prune)
                arrays[name] = np.where(masks[name], value, np.zeros_like(value))
    new = _state_from(state, arrays)
    if not (t.init_from is not None and t.init_optimizer):  # a fresh optimizer state for the new weights
        fresh = jax.jit(lambda params, hyper: build_optimizer(o, hyper).init(params))
        new = new._replace(opt_state=fresh(new.params, hyperparameters(o)))
    else:
        new = with_config_hyperparameters(new, config)
    if masks:

        def mask_of(path, leaf):
            name = "params/" + _leaf_name(path)
            return jnp.asarray(masks[name], leaf.dtype) if name in masks else jnp.ones_like(leaf)

        if not optax.tree_utils.tree_get_all_with_path(new.opt_state, "keep_mask"):
            raise AssertionError("the optimizer has no keep_pruned state although --prune is set")
        mask = jax.tree_util.tree_map_with_path(mask_of, new.params)
        new = new._replace(opt_state=optax.tree_utils.tree_set(new.opt_state, keep_mask=mask))
    return new


def initial_state(exp: Any) -> Any:
    """The step-0 (or, with --init-optimizer, step-STEP) state of a run: `init_state` then `apply_lineage`."""
    from grokkit.train import init_state

    return apply_lineage(exp, init_state(exp))


NOISE_FILE = "label_noise.npz"


def write_noise_file(run_path: Path, exp: Any) -> None:
    """With --label-noise: RUN/label_noise.npz, the corrupted examples (dataset indices), their true labels and
    the labels trained on instead."""
    from grokkit.atomic import atomic_write_bytes

    if exp.config.data.label_noise <= 0:
        return
    import io

    noisy, where = exp.train_labels
    index = exp.train_idx[where]
    buffer = io.BytesIO()
    np.savez(buffer, index=index, true_label=exp.dataset.labels[index], noisy_label=noisy[where])
    atomic_write_bytes(Path(run_path) / NOISE_FILE, buffer.getvalue())
