"""One frozen, typed configuration for a run, its defaults, the paper presets, and validation."""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import tomllib
import typing
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from grokkit.data import MAX_EXAMPLES, MAX_P, brief, get_task, input_space_size, task_shape, validate_task_params
from grokkit.errors import UsageError

INT32_MAX = 2**31 - 1
"""Seeds and step counts become int32 (jax.random.PRNGKey(jnp.int32(seed)), TrainState.step)."""
FLOAT32_MAX = 3.4028234663852886e38
"""Hyperparameters become float32 (optax.inject_hyperparams, the init scale)."""
MAX_WIDTH = 2**20
"""Largest single model dimension (d-model, d-mlp, width, heads); the parameter count is bounded too."""
MAX_LAYERS = 64
"""Most transformer layers or MLP hidden layers: each is compiled on its own."""
MAX_PARAMETERS = 1_000_000_000
"""Most model parameters (4 GB of float32 weights, three times that with AdamW's state); the same bound holds
for Grokfast-MA's window of past gradients."""
MAX_NAME = 100
"""Longest task or preset name we look up."""
MAX_CONFIG_BYTES = 100_000
"""Largest TOML config file we read (a config is a few hundred bytes)."""
MAX_CONFIG_DOTS = 1_000
"""Most dots outside strings and comments in a config file: dotted keys and decimal points. A key of n parts
costs tomllib O(n^2) time (50,000 parts: 30 s), and a config has a dozen numbers and a few tables."""
_STRINGS_AND_COMMENTS = re.compile(
    r'"""(?:[^\\]|\\[\s\S])*?(?:"""|\Z)|\'\'\'[\s\S]*?(?:\'\'\'|\Z)|"(?:[^"\\\n]|\\.)*"?|\'[^\'\n]*\'?|#[^\n]*'
)
"""TOML strings (closed or not: never a failed match, so linear time) and comments."""

_STEPS = "step counts are int32"
_SEEDS = "seeds are int32"
_SHAPE = "array dimension"
INT_BOUNDS: dict[str, tuple[int | None, int, str]] = {
    # key: (lowest, highest, why the highest); a lower bound of None is checked where it depends on the task
    "seed": (0, INT32_MAX, _SEEDS),
    "data.data_seed": (0, INT32_MAX, _SEEDS),
    "data.p": (None, MAX_P, f"a larger p gives p * p examples, over the limit of {MAX_EXAMPLES:,}"),
    "data.n_bits": (None, 62, "bits of an int64"),
    "data.k_bits": (None, 62, "bits of an int64"),
    "data.n_samples": (None, MAX_EXAMPLES, "the example limit"),
    "model.layers": (1, MAX_LAYERS, "each layer is compiled"),
    "model.depth": (1, MAX_LAYERS, "each layer is compiled"),
    "model.d_model": (1, MAX_WIDTH, _SHAPE),
    "model.heads": (1, MAX_WIDTH, _SHAPE),
    "model.d_mlp": (1, MAX_WIDTH, _SHAPE),
    "model.width": (1, MAX_WIDTH, _SHAPE),
    "optim.warmup": (0, INT32_MAX, _STEPS),
    "optim.batch_size": (1, MAX_EXAMPLES, "the example limit"),
    "optim.grokfast_window": (1, INT32_MAX, _SHAPE),
    "train.steps": (1, INT32_MAX, _STEPS),
    "train.eval_every": (1, INT32_MAX, _STEPS),
    "train.checkpoint_every": (1, INT32_MAX, _STEPS),
    "train.keep_checkpoints": (1, INT32_MAX, "int32"),
    "train.early_exit_window": (0, INT32_MAX, _STEPS),
}
"""The accepted range of every integer setting, checked whenever a value enters a config (`coerce`)."""

INJECTED = ("lr", "wd", "beta1", "beta2", "momentum", "grokfast_alpha", "grokfast_lambda")
"""Optimizer settings held in the optimizer's state as float32 (optax.inject_hyperparams), so a sweep can vary them
and config.json sets them on every resume."""
FLOAT32_KEYS = frozenset(
    {*(f"optim.{name}" for name in INJECTED), "optim.adam_eps", "model.init_scale", "model.output_scale"}
)
"""Settings used as float32: their bounds hold for the float32 value too (0.999999999 is 1.0 there)."""

FLOAT_BOUNDS: dict[str, tuple[float, bool, float | None, str]] = {
    # key: (lowest, lowest excluded, highest (excluded) or None, the rule in words)
    "data.train_frac": (0.0, True, 1.0, "strictly between 0 and 1"),
    "model.init_scale": (0.0, True, None, "> 0"),
    "model.output_scale": (0.0, True, None, "> 0"),
    "optim.lr": (0.0, True, None, "> 0"),
    "optim.wd": (0.0, False, None, ">= 0"),
    "optim.beta1": (0.0, False, 1.0, "in [0, 1)"),
    "optim.beta2": (0.0, False, 1.0, "in [0, 1)"),
    "optim.adam_eps": (0.0, True, None, "> 0"),
    "optim.momentum": (0.0, False, 1.0, "in [0, 1)"),
    "optim.grokfast_alpha": (0.0, False, 1.0, "in [0, 1)"),
    "optim.grokfast_lambda": (0.0, False, None, ">= 0"),
    "data.label_noise": (0.0, False, 1.0, "in [0, 1)"),
    "data.train_subset": (0.0, True, None, "in (0, 1]"),
    "optim.prune": (0.0, False, 1.0, "in [0, 1)"),
    "train.watch_after": (0.0, False, None, ">= 0"),
}
"""The accepted range of every number setting; every one must also be a finite float32."""


class ModelKind(StrEnum):
    transformer = "transformer"
    mlp = "mlp"


class Activation(StrEnum):
    relu = "relu"
    gelu = "gelu"
    quadratic = "quadratic"


class Embed(StrEnum):
    concat = "concat"
    sum = "sum"


class OptimizerName(StrEnum):
    adamw = "adamw"
    adam = "adam"
    sgd = "sgd"


class Grokfast(StrEnum):
    none = "none"
    ema = "ema"
    ma = "ma"


class DecayTarget(StrEnum):
    zero = "zero"
    init = "init"


class Loss(StrEnum):
    softmax = "softmax"
    stablemax = "stablemax"
    mse = "mse"


class LossDtype(StrEnum):
    float32 = "float32"
    float64 = "float64"


@dataclass(frozen=True)
class DataConfig:
    task: str = "mod-add"
    p: int = 97
    train_frac: float = 0.35
    data_seed: int | None = None  # None: use the run's seed
    n_bits: int = 12  # sparse parity only
    k_bits: int = 3
    n_samples: int = 2000
    label_noise: float = 0.0  # Doshi et al. 2024: this fraction of training labels replaced by another class
    train_subset: float | None = None  # with train.init_from: train on this fraction of the source's train split


@dataclass(frozen=True)
class ModelConfig:
    kind: ModelKind = ModelKind.transformer
    layers: int = 1
    d_model: int = 128
    heads: int = 4
    d_mlp: int = 512
    activation: Activation = Activation.relu
    layer_norm: bool = False
    width: int = 512  # MLP model: hidden width
    depth: int = 1  # MLP model: hidden layers
    embed: Embed = Embed.concat  # MLP model: how the operands' one-hot inputs are combined
    bias: bool = True  # MLP model: biases in its linear layers
    init_scale: float = 1.0  # every initial weight multiplied by this (Liu et al. 2023, Omnigrok)
    # Kumar et al. 2024: the network is alpha * (f_theta - f_theta0), trained on its loss / alpha^2 (for gradient
    # descent, their learning rate eta_0 / alpha^2); large alpha trains lazily. None: the plain f_theta.
    output_scale: float | None = None


@dataclass(frozen=True)
class OptimConfig:
    name: OptimizerName = OptimizerName.adamw
    lr: float = 3e-3
    wd: float = 1.0
    beta1: float = 0.9
    beta2: float = 0.98
    adam_eps: float = 1e-8  # added to the root of Adam's second moment (Prieto et al.'s code: 1e-25)
    momentum: float = 0.0  # SGD only
    warmup: int = 10
    batch_size: int | None = None  # None: full batch
    decay_to: DecayTarget = DecayTarget.zero  # init: decay toward the initial weights (Power et al.'s to_init)
    orthograd: bool = False  # Prieto et al. 2025: drop the gradient's component along the weights
    grokfast: Grokfast = Grokfast.none  # Lee et al. 2024: amplify the slow gradient component
    grokfast_alpha: float = 0.98  # EMA decay
    grokfast_lambda: float = 2.0  # amplification
    grokfast_window: int = 100  # MA window
    prune: float = 0.0  # Minegishi et al. 2023: fraction of each weight matrix pruned by --mask-from's magnitudes
    mask_from: str | None = None  # RUN@STEP whose weight magnitudes give the pruning mask (see grokkit.lineage)
    mask_sha256: str | None = None  # that checkpoint's checksum, recorded when the run starts
    mask_random: bool = False  # the control: prune the same count per tensor at random (drawn from the seed)


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 10_000
    eval_every: int = 50
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    early_exit: bool = True
    early_exit_window: int = 500  # stop after validation accuracy has stayed >= 99% this many steps
    watch_after: float = 0.0  # keep training N x the steps it took to generalize before the early exit (0: exit)
    loss: Loss = Loss.softmax
    loss_dtype: LossDtype = LossDtype.float32  # precision of the logits inside the loss (Prieto et al. 2025)
    init_from: str | None = None  # RUN[@STEP]: start from another run's parameters (see grokkit.lineage)
    init_optimizer: bool = False  # with init_from: also its optimizer state and step counter
    init_sha256: str | None = None  # that checkpoint's checksum, recorded when the run starts


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    preset: str | None = None

    @property
    def data_seed(self) -> int:
        return self.seed if self.data.data_seed is None else self.data.data_seed

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, raw: Any, label: str = "config") -> Config:
        """Rebuild a config from `to_dict` output (config.json): the same checked conversion as any other input."""
        return with_overrides(cls(), overrides_from_mapping(raw, label))


_SECTIONS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig, "train": TrainConfig}

_FLAGS = {"model.kind": "model", "optim.name": "optimizer"}
"""Command-line flags that are not the field's own name."""

TRUE_WORDS = ("true", "on", "yes", "1")
FALSE_WORDS = ("false", "off", "no", "0")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value.value if isinstance(value, Enum) else value


def option_name(key: str) -> str:
    """The command-line flag of a config key: "optim.lr" -> "--lr", "model.kind" -> "--model"."""
    return "--" + _FLAGS.get(key, key.rpartition(".")[2]).replace("_", "-")


def config_keys() -> list[str]:
    """Every field a user may set, as "section.field" (or "seed"), in declaration order."""
    keys = [f"{name}.{f.name}" for name, cls in _SECTIONS.items() for f in dataclasses.fields(cls)]
    return [*keys, "seed"]


def _closest(name: str, known: list[str], prefix: str) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f"; did you mean '{prefix}{close[0]}'?" if close else ""


def field_hint(key: str) -> Any:
    """The type annotation of the field a config key names; unknown keys are a UsageError."""
    section, _, name = key.rpartition(".")
    if section and section not in _SECTIONS:
        raise UsageError(f"unknown config section {brief(section)}")
    owner = _SECTIONS[section] if section else Config
    hints = typing.get_type_hints(owner)
    known = [f.name for f in dataclasses.fields(owner) if section or f.name not in _SECTIONS]
    if name not in known:
        hint = _closest(name, known, section + "." if section else "") if len(name) <= MAX_NAME else ""
        raise UsageError(f"unknown config key {brief(key)}{hint}")
    return hints[name]


def field_kind(key: str) -> type:
    """The field's type without its None: int, float, bool, str or an Enum."""
    args = [a for a in typing.get_args(field_hint(key)) if a is not type(None)]
    return args[0] if args else field_hint(key)


def _kind_name(kind: type) -> str:
    return ", ".join(m.value for m in kind) if issubclass(kind, Enum) else kind.__name__


def describe(value: Any) -> str:
    """A value as an error message shows it: short, on one line, whatever its size or depth."""
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return f"an array of {len(value)} values"
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return brief(value)
    return brief(repr(value)).strip("'\"")


def field_problem(key: str, value: Any) -> str | None:
    """What is wrong with a typed value of one setting on its own ("must be >= 1, got 0"), or None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float):
        if not (math.isfinite(value) and abs(value) <= FLOAT32_MAX):
            extra = "" if not math.isfinite(value) else f" (float32: at most {FLOAT32_MAX:.4g} in size)"
            return f"must be a finite number{extra}, got {value}"
        if key in FLOAT_BOUNDS:
            low, low_open, high, rule = FLOAT_BOUNDS[key]
            as_used = float(np.float32(value)) if key in FLOAT32_KEYS else value
            for candidate in (value, as_used):
                if candidate < low or (low_open and candidate == low) or (high is not None and candidate >= high):
                    shown = "" if candidate == value else f" ({candidate:g} in float32, as the optimizer uses it)"
                    return f"must be {rule}, got {value}{shown}"
        return None
    if isinstance(value, int) and key in INT_BOUNDS:
        lowest, highest, why = INT_BOUNDS[key]
        if lowest is not None and value < lowest:
            return f"must be >= {lowest}, got {describe(value)}"
        if value > highest:
            return f"must be <= {highest} ({why}), got {describe(value)}"
        return None
    is_name = isinstance(value, str) and key in ("data.task", "preset")
    if is_name and (len(value) > MAX_NAME or not value.isprintable()):
        return f"must be a name of at most {MAX_NAME} printable characters, got {describe(value)}"
    return None


def _check(key: str, value: Any, label: str | None) -> Any:
    problem = field_problem(key, value)
    if problem is None:
        return value
    if label is None:
        raise UsageError(problem, option=option_name(key))
    raise UsageError(f"{label} {problem}")


def coerce(key: str, value: Any, label: str | None = None) -> Any:
    """The one conversion into a config field's type, for TOML, JSON, presets, sweep axes and parsed flags.

    Values must already have the field's type (a choice may be its name); a batch size of 0
    means full batch, since TOML and the command line have no null. Each value is then
    checked against its own range (`field_problem`): what depends on other settings is
    left to `validate`. Range errors name `label` (TOML and JSON keys), or the option.
    """
    shown = label or key
    optional = type(None) in typing.get_args(field_hint(key))
    kind = field_kind(key)
    if key == "optim.batch_size" and value == 0 and not isinstance(value, bool):
        return None
    if value is None and optional:
        return None
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return _check(key, value, label)
    if issubclass(kind, Enum):
        if isinstance(value, str) and value in {m.value for m in kind}:
            return kind(value)
        raise UsageError(f"{shown} must be one of {_kind_name(kind)}, got {describe(value)}")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        return _check(key, number, label)
    raise UsageError(f"{shown} must be {kind.__name__}, got {describe(value)}")


def parse_text(key: str, text: str, label: str | None = None) -> Any:
    """A command-line value for a config field: numbers, on/off words, choices; then `coerce`.

    Numbers are written in ASCII as Python and TOML write them (`1000`, `1_000`, `3e-3`, `nan` and
    `inf` are numbers that `coerce` then refuses); other digits (`٣`) are refused.
    """
    label = label or option_name(key)
    kind = field_kind(key)
    item = text.strip()
    try:
        if kind is bool:
            if item.lower() not in TRUE_WORDS + FALSE_WORDS:
                raise ValueError
            value: Any = item.lower() in TRUE_WORDS
        elif kind in (int, float) and not item.isascii():
            raise ValueError
        else:
            value = kind(item)
    except ValueError:
        expected = "on or off" if kind is bool else _kind_name(kind)
        expected += "" if item.isascii() else ", written in ASCII digits"
        raise UsageError(f"{brief(item)} is not a valid value (expected {expected})", option=label) from None
    try:
        return coerce(key, value, label=label)
    except UsageError as err:
        raise UsageError(str(err).removeprefix(f"{label}: ").removeprefix(f"{label} "), option=label) from None


def overrides_from_mapping(raw: Any, label: str = "config") -> dict[str, Any]:
    """Flatten a nested config mapping (TOML file, config.json) into checked {"section.field": value} overrides."""
    if not isinstance(raw, dict):
        raise UsageError(f"{label} must be a table of settings, got {type(raw).__name__}")
    overrides: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _SECTIONS:
            if not isinstance(value, dict):
                raise UsageError(f"[{key}] must be a table of settings", option=label)
            for name, item in value.items():
                overrides[f"{key}.{name}"] = coerce(f"{key}.{name}", item, label=f"{key}.{name}")
        else:
            overrides[key] = coerce(key, value, label=key)
    return overrides


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file into checked overrides (see `overrides_from_mapping`).

    Every problem is one UsageError naming the file (and the field, where there is one):
    unreadable, too large, not UTF-8, not TOML (nesting too deep included), wrong types, out of range.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as err:
        raise UsageError(f"cannot read {path}: {err.strerror or err}", option="--config") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise UsageError(f"{path} is over {MAX_CONFIG_BYTES:,} bytes; a config file is a few lines", option="--config")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UsageError(f"{path} is not UTF-8 text (byte {err.start})", option="--config") from None
    if (dots := _STRINGS_AND_COMMENTS.sub("", text).count(".")) > MAX_CONFIG_DOTS:
        raise UsageError(
            f"{path} has {dots:,} dotted keys and decimal points, over the limit of {MAX_CONFIG_DOTS:,} "
            "(keys nested too deeply)",
            option="--config",
        )
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"{path} is not valid TOML: {err}", option="--config") from None
    except (RecursionError, MemoryError):
        raise UsageError(f"{path} is not valid TOML: nested too deeply", option="--config") from None
    except ValueError as err:  # a number Python will not convert (over 4,300 digits)
        raise UsageError(
            f"{path} holds a value that cannot be read: {str(err).split(';')[0]}", option="--config"
        ) from None
    try:
        return overrides_from_mapping(raw, label="")
    except UsageError as err:
        raise UsageError(f"{path}: {err}", option="--config") from None


def with_overrides(config: Config, overrides: dict[str, Any]) -> Config:
    """Apply {"section.field": value} (or {"seed": value}) overrides, each converted by `coerce`."""
    sections: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for key, value in overrides.items():
        section, _, name = key.rpartition(".")
        typed = coerce(key, value)
        if section:
            sections.setdefault(section, {})[name] = typed
        else:
            top[name] = typed
    replaced = {name: dataclasses.replace(getattr(config, name), **vals) for name, vals in sections.items()}
    return dataclasses.replace(config, **replaced, **top)


def resolve(preset: str | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Defaults, then the preset's values, then explicit overrides; validated.

    A "preset" key among the overrides (from a config file) is used when `preset` is None.
    """
    overrides = dict(overrides or {})
    preset = preset if preset is not None else overrides.pop("preset", None)
    overrides.pop("preset", None)
    from grokkit.presets import get_preset

    if preset is not None:
        _check("preset", preset, "--preset:")

    config = Config()
    if preset is not None:
        config = with_overrides(config, {**get_preset(preset).overrides, "preset": preset})
    config = with_overrides(config, overrides)
    validate(config)
    return config


def _require(condition: bool, option: str, message: str) -> None:
    if not condition:
        raise UsageError(message, option=option)


def field_values(config: Config) -> dict[str, Any]:
    """{"section.field" (or "seed"): value} for every setting of a config."""
    values: dict[str, Any] = {}
    for key in config_keys():
        value: Any = config
        for part in key.split("."):
            value = getattr(value, part)
        values[key] = value
    return values


def parameter_count(config: Config) -> int:
    """The number of model parameters a config builds (see grokkit.models), computed without building it."""
    d, m = config.data, config.model
    vocab, seq_len, classes = task_shape(d.task, d.p, d.n_bits)
    if m.kind == ModelKind.transformer:
        dm, norms = m.d_model, 2 * m.d_model if m.layer_norm else 0
        block = 4 * dm * dm + 2 * dm * m.d_mlp + m.d_mlp + dm + 2 * norms
        return (vocab + seq_len + classes) * dm + m.layers * block + norms
    tables, bias = (seq_len - 1 if m.embed == Embed.concat else 1), int(m.bias)
    hidden = (m.depth - 1) * (m.width * m.width + bias * m.width)
    return tables * vocab * m.width + bias * m.width + hidden + m.width * classes + bias * classes


def validate(config: Config) -> None:
    """Raise a UsageError naming the option and the accepted range for any invalid value.

    Each setting's own range first (`field_problem`: bounded, so nothing below loops over a huge
    value), then the task's sizes, then the rules between settings, then the model's size.
    """
    d, m, o, t = config.data, config.model, config.optim, config.train
    for key, value in field_values(config).items():
        problem = field_problem(key, value)
        _require(problem is None, option_name(key), str(problem))
    get_task(d.task)
    validate_task_params(d.task, d.p, d.n_bits, d.k_bits, d.n_samples)
    n_examples = input_space_size(d.task, d.p, d.n_bits, d.n_samples)
    n_train = round(d.train_frac * n_examples)
    _require(
        0 < n_train < n_examples,
        option_name("data.train_frac"),
        f"{d.train_frac} of {n_examples} examples leaves an empty train or validation set",
    )
    _require(
        m.d_model % m.heads == 0,
        option_name("model.heads"),
        f"{m.heads} heads do not divide d_model={m.d_model}; use a divisor of {m.d_model}",
    )
    if o.batch_size is not None:
        _require(
            1 <= o.batch_size <= n_train,
            option_name("optim.batch_size"),
            f"must be in [1, {n_train}] (the train set has {n_train} examples), got {o.batch_size}",
        )
    _require(
        t.checkpoint_every % t.eval_every == 0,
        option_name("train.checkpoint_every"),
        f"must be a positive multiple of --eval-every={t.eval_every}, got {t.checkpoint_every}",
    )
    _require(
        d.train_subset is None or (d.train_subset <= 1.0 and t.init_from is not None),
        option_name("data.train_subset"),
        f"must be in (0, 1], got {d.train_subset}"
        if d.train_subset is not None and d.train_subset > 1.0
        else "needs --init-from RUN[@STEP]: it is a fraction of the source run's training split",
    )
    _require(
        o.prune == 0 or o.mask_from is not None,
        option_name("optim.prune"),
        "needs --mask-from RUN@STEP (the magnitudes to prune by)",
    )
    values = field_values(config)
    for key, needed in [("optim.mask_random", "optim.mask_from"), ("optim.mask_sha256", "optim.mask_from"),
                        ("train.init_sha256", "train.init_from")]:  # fmt: skip
        given = values[key] not in (None, False)
        _require(not given or values[needed] is not None, option_name(key), f"needs {option_name(needed)} RUN@STEP")
    _require(
        not t.init_optimizer or t.init_from is not None,
        option_name("train.init_optimizer"),
        "needs --init-from RUN[@STEP]",
    )
    n_params = parameter_count(config)
    sizes = "--d-model, --d-mlp or --layers" if m.kind == ModelKind.transformer else "--width or --depth"
    _require(
        n_params <= MAX_PARAMETERS,
        option_name("model.d_model" if m.kind == ModelKind.transformer else "model.width"),
        f"the {m.kind.value} would have {n_params:,} parameters, over the limit of {MAX_PARAMETERS:,}; "
        f"use a smaller {sizes}",
    )
    if o.grokfast == Grokfast.ma:
        _require(
            n_params * o.grokfast_window <= MAX_PARAMETERS,
            option_name("optim.grokfast_window"),
            f"Grokfast-MA keeps {o.grokfast_window:,} past gradients of {n_params:,} parameters, over the limit of "
            f"{MAX_PARAMETERS:,} values; use a window <= {max(1, MAX_PARAMETERS // n_params):,}",
        )
