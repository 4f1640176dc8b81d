"""One frozen, typed configuration for a run, its defaults, the paper presets, and validation."""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
import typing
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any

from grokkit.data import get_task, input_space_size, validate_task_params
from grokkit.errors import UsageError


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


@dataclass(frozen=True)
class OptimConfig:
    name: OptimizerName = OptimizerName.adamw
    lr: float = 3e-3
    wd: float = 1.0
    beta1: float = 0.9
    beta2: float = 0.98
    momentum: float = 0.0  # SGD only
    warmup: int = 10
    batch_size: int | None = None  # None: full batch
    decay_to: DecayTarget = DecayTarget.zero  # init: decay toward the initial weights (Power et al.'s to_init)
    orthograd: bool = False  # Prieto et al. 2025: drop the gradient's component along the weights
    grokfast: Grokfast = Grokfast.none  # Lee et al. 2024: amplify the slow gradient component
    grokfast_alpha: float = 0.98  # EMA decay
    grokfast_lambda: float = 2.0  # amplification
    grokfast_window: int = 100  # MA window


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 10_000
    eval_every: int = 50
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    early_exit: bool = True
    early_exit_window: int = 500  # stop after validation accuracy has stayed >= 99% this many steps
    loss: Loss = Loss.softmax
    loss_dtype: LossDtype = LossDtype.float32  # precision of the logits inside the loss (Prieto et al. 2025)


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
        raise UsageError(f"unknown config section '{section}'")
    owner = _SECTIONS[section] if section else Config
    hints = typing.get_type_hints(owner)
    known = [f.name for f in dataclasses.fields(owner) if section or f.name not in _SECTIONS]
    if name not in known:
        raise UsageError(f"unknown config key '{key}'{_closest(name, known, section + '.' if section else '')}")
    return hints[name]


def field_kind(key: str) -> type:
    """The field's type without its None: int, float, bool, str or an Enum."""
    args = [a for a in typing.get_args(field_hint(key)) if a is not type(None)]
    return args[0] if args else field_hint(key)


def _kind_name(kind: type) -> str:
    return ", ".join(m.value for m in kind) if issubclass(kind, Enum) else kind.__name__


def coerce(key: str, value: Any, label: str | None = None) -> Any:
    """The one conversion into a config field's type, for TOML, JSON, presets, sweep axes and parsed flags.

    Values must already have the field's type (a choice may be its name); a batch size of 0
    means full batch, since TOML and the command line have no null.
    """
    label = label or key
    optional = type(None) in typing.get_args(field_hint(key))
    kind = field_kind(key)
    if key == "optim.batch_size" and value == 0 and not isinstance(value, bool):
        return None
    if value is None and optional:
        return None
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        if kind is float and isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"{label} must be a finite number, got {value}")
        return value
    if issubclass(kind, Enum):
        if isinstance(value, str) and value in {m.value for m in kind}:
            return kind(value)
        raise UsageError(f"{label} must be one of {_kind_name(kind)}, got {value!r}")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    raise UsageError(f"{label} must be {kind.__name__}, got {value!r}")


def parse_text(key: str, text: str, label: str | None = None) -> Any:
    """A command-line value for a config field: numbers, on/off words, choices; then `coerce`."""
    label = label or option_name(key)
    kind = field_kind(key)
    item = text.strip()
    try:
        if kind is bool:
            if item.lower() not in TRUE_WORDS + FALSE_WORDS:
                raise ValueError
            value: Any = item.lower() in TRUE_WORDS
        else:
            value = kind(item)
    except ValueError:
        expected = "/".join(TRUE_WORDS[:2]) if kind is bool else _kind_name(kind)
        raise UsageError(f"'{item}' is not a valid value (expected {expected})", option=label) from None
    try:
        return coerce(key, value, label=label)
    except UsageError as err:
        raise UsageError(str(err).removeprefix(f"{label} "), option=label) from None


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
    """Read a TOML config file into checked overrides (see `overrides_from_mapping`)."""
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except OSError as err:
        raise UsageError(f"cannot read {path}: {err.strerror}", option="--config") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise UsageError(f"{path} is not valid TOML: {err}", option="--config") from None
    try:
        return overrides_from_mapping(raw)
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

    config = Config()
    if preset is not None:
        config = with_overrides(config, {**get_preset(preset).overrides, "preset": preset})
    config = with_overrides(config, overrides)
    validate(config)
    return config


def _require(condition: bool, option: str, message: str) -> None:
    if not condition:
        raise UsageError(message, option=option)


def validate(config: Config) -> None:
    """Raise a UsageError naming the option and the accepted range for any invalid value."""
    d, m, o, t = config.data, config.model, config.optim, config.train
    for option, value in [("--train-frac", d.train_frac), ("--lr", o.lr), ("--wd", o.wd), ("--beta1", o.beta1),
                          ("--beta2", o.beta2), ("--momentum", o.momentum), ("--init-scale", m.init_scale),
                          ("--grokfast-alpha", o.grokfast_alpha),
                          ("--grokfast-lambda", o.grokfast_lambda)]:  # fmt: skip
        _require(math.isfinite(value), option, f"must be a finite number, got {value}")
    get_task(d.task)
    validate_task_params(d.task, d.p, d.n_bits, d.k_bits, d.n_samples)
    _require(0.0 < d.train_frac < 1.0, "--train-frac", f"must be strictly between 0 and 1, got {d.train_frac}")
    n_examples = input_space_size(d.task, d.p, d.n_bits, d.n_samples)
    n_train = round(d.train_frac * n_examples)
    _require(
        0 < n_train < n_examples,
        "--train-frac",
        f"{d.train_frac} of {n_examples} examples leaves an empty train or validation set",
    )
    _require(config.seed >= 0, "--seed", f"must be >= 0, got {config.seed}")
    _require(d.data_seed is None or d.data_seed >= 0, "--data-seed", f"must be >= 0, got {d.data_seed}")
    for option, value in [("--layers", m.layers), ("--d-model", m.d_model), ("--heads", m.heads),
                          ("--d-mlp", m.d_mlp), ("--width", m.width), ("--depth", m.depth)]:  # fmt: skip
        _require(value >= 1, option, f"must be >= 1, got {value}")
    _require(
        m.d_model % m.heads == 0,
        "--heads",
        f"{m.heads} heads do not divide d_model={m.d_model}; use a divisor of {m.d_model}",
    )
    _require(o.lr > 0, "--lr", f"must be > 0, got {o.lr}")
    _require(o.wd >= 0, "--wd", f"must be >= 0, got {o.wd}")
    _require(0 <= o.beta1 < 1, "--beta1", f"must be in [0, 1), got {o.beta1}")
    _require(0 <= o.beta2 < 1, "--beta2", f"must be in [0, 1), got {o.beta2}")
    _require(0 <= o.momentum < 1, "--momentum", f"must be in [0, 1), got {o.momentum}")
    _require(m.init_scale > 0, "--init-scale", f"must be > 0, got {m.init_scale}")
    _require(0 <= o.grokfast_alpha < 1, "--grokfast-alpha", f"must be in [0, 1), got {o.grokfast_alpha}")
    _require(o.grokfast_lambda >= 0, "--grokfast-lambda", f"must be >= 0, got {o.grokfast_lambda}")
    _require(o.grokfast_window >= 1, "--grokfast-window", f"must be >= 1, got {o.grokfast_window}")
    _require(o.warmup >= 0, "--warmup", f"must be >= 0, got {o.warmup}")
    if o.batch_size is not None:
        _require(
            1 <= o.batch_size <= n_train,
            "--batch-size",
            f"must be in [1, {n_train}] (the train set has {n_train} examples), got {o.batch_size}",
        )
    _require(t.steps >= 1, "--steps", f"must be >= 1, got {t.steps}")
    _require(t.eval_every >= 1, "--eval-every", f"must be >= 1, got {t.eval_every}")
    _require(
        t.checkpoint_every >= 1 and t.checkpoint_every % t.eval_every == 0,
        "--checkpoint-every",
        f"must be a positive multiple of --eval-every={t.eval_every}, got {t.checkpoint_every}",
    )
    _require(t.keep_checkpoints >= 1, "--keep-checkpoints", f"must be >= 1, got {t.keep_checkpoints}")
    _require(t.early_exit_window >= 0, "--early-exit-window", f"must be >= 0, got {t.early_exit_window}")
