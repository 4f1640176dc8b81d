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
    def from_dict(cls, raw: dict[str, Any]) -> Config:
        """Rebuild a config from `to_dict` output; unknown keys are an error."""
        sections = {}
        for name, section_cls in _SECTIONS.items():
            values = dict(raw.get(name, {}))
            _check_keys(values, section_cls, prefix=f"{name}.")
            for f in dataclasses.fields(section_cls):
                if f.name in values and isinstance(f.default, Enum):
                    values[f.name] = type(f.default)(values[f.name])
            sections[name] = section_cls(**values)
        top = {k: v for k, v in raw.items() if k not in _SECTIONS}
        _check_keys(top, cls, prefix="", skip=set(_SECTIONS))
        return cls(**sections, **top)


_SECTIONS = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig, "train": TrainConfig}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value.value if isinstance(value, Enum) else value


def _check_keys(values: dict, cls: type, prefix: str, skip: set[str] = frozenset()) -> None:
    known = {f.name for f in dataclasses.fields(cls)} - skip
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else ""
            raise UsageError(f"unknown config key '{prefix}{key}'{hint}")


def _expected(hint: Any) -> tuple[type, ...]:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return tuple(args) if args else (hint,)


def _typed(key: str, value: Any, hint: Any) -> Any:
    """Check a config-file value against its field's type; numbers must be finite."""
    optional = type(None) in typing.get_args(hint)
    if value is None and optional:
        return None
    for kind in _expected(hint):
        if isinstance(kind, type) and issubclass(kind, Enum):
            if isinstance(value, str) and value in kind.__members__:
                return kind(value)
            choices = ", ".join(kind.__members__)
            raise UsageError(f"{key} must be one of {choices}, got {value!r}", option="--config")
        if kind is bool and isinstance(value, bool):
            return value
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise UsageError(f"{key} must be a finite number, got {value}", option="--config")
            return float(value)
        if kind is str and isinstance(value, str):
            return value
    names = " or ".join(getattr(k, "__name__", str(k)) for k in _expected(hint))
    raise UsageError(f"{key} must be {names}, got {value!r}", option="--config")


def overrides_from_mapping(raw: dict[str, Any]) -> dict[str, Any]:
    """Flatten a nested config mapping (as in a TOML file) into checked {"section.field": value} overrides."""
    overrides: dict[str, Any] = {}
    top_hints = typing.get_type_hints(Config)
    for key, value in raw.items():
        if key in _SECTIONS:
            if not isinstance(value, dict):
                raise UsageError(f"[{key}] must be a table of settings", option="--config")
            hints = typing.get_type_hints(_SECTIONS[key])
            _check_keys(value, _SECTIONS[key], prefix=f"{key}.")
            for name, item in value.items():
                overrides[f"{key}.{name}"] = _typed(f"{key}.{name}", item, hints[name])
        else:
            _check_keys({key: value}, Config, prefix="", skip=set(_SECTIONS))
            overrides[key] = _typed(key, value, top_hints[key])
    return overrides


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file into checked overrides (see `overrides_from_mapping`)."""
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except OSError as err:
        raise UsageError(f"cannot read {path}: {err.strerror}", option="--config") from None
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"{path} is not valid TOML: {err}", option="--config") from None
    try:
        return overrides_from_mapping(raw)
    except UsageError as err:
        raise UsageError(f"{path}: {str(err).removeprefix('--config: ')}", option="--config") from None


def with_overrides(config: Config, overrides: dict[str, Any]) -> Config:
    """Apply {"section.field": value} (or {"seed": value}) overrides."""
    sections: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for key, value in overrides.items():
        section, _, name = key.rpartition(".")
        if section:
            if section not in _SECTIONS:
                raise UsageError(f"unknown config section '{section}'")
            _check_keys({name: value}, _SECTIONS[section], prefix=f"{section}.")
            sections.setdefault(section, {})[name] = value
        else:
            _check_keys({name: value}, Config, prefix="", skip=set(_SECTIONS))
            top[name] = value
    replaced = {name: dataclasses.replace(getattr(config, name), **vals) for name, vals in sections.items()}
    return dataclasses.replace(config, **replaced, **top)


@dataclass(frozen=True)
class Preset:
    name: str
    summary: str
    source: str
    overrides: dict[str, Any]


_GROKFAST_BASE: dict[str, Any] = {
    "data.task": "mod-mul", "data.p": 97, "data.train_frac": 0.5, "model.kind": ModelKind.transformer,
    "model.layers": 2, "model.d_model": 128, "model.heads": 4, "model.d_mlp": 512, "model.activation": Activation.gelu,
    "model.layer_norm": True, "optim.name": OptimizerName.adam, "optim.lr": 1e-3, "optim.wd": 0.0,
    "optim.beta1": 0.9, "optim.beta2": 0.98, "optim.warmup": 10, "optim.batch_size": 512,
    "train.steps": 100_000, "train.eval_every": 50, "train.checkpoint_every": 1000,
}  # fmt: skip

# init scale 1/sqrt(3): PyTorch's default Linear init (their code) has variance 1/(3 fan_in), ours 1/fan_in
_PRIETO_BASE: dict[str, Any] = {
    "data.task": "mod-add", "data.p": 113, "data.train_frac": 0.4, "model.kind": ModelKind.mlp,
    "model.width": 200, "model.depth": 2, "model.activation": Activation.relu, "model.embed": Embed.concat,
    "model.bias": False, "model.init_scale": 0.577, "optim.name": OptimizerName.adamw, "optim.lr": 0.01,
    "optim.wd": 0.0, "optim.beta1": 0.9, "optim.beta2": 0.999, "optim.warmup": 0, "optim.batch_size": None,
    "train.steps": 5000, "train.eval_every": 25, "train.checkpoint_every": 500,
}  # fmt: skip

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            "nanda2023",
            "a+b mod 113, 30% train, 1-layer transformer (d 128, 4 heads, d_mlp 512, ReLU, no LayerNorm), "
            "full-batch AdamW lr 1e-3, wd 1, betas (0.9, 0.98), 10-step warmup",
            "Nanda et al. 2023, Progress measures for grokking via mechanistic interpretability (ICLR 2023)",
            {
                "data.task": "mod-add",
                "data.p": 113,
                "data.train_frac": 0.3,
                "model.kind": ModelKind.transformer,
                "model.layers": 1,
                "model.d_model": 128,
                "model.heads": 4,
                "model.d_mlp": 512,
                "model.activation": Activation.relu,
                "model.layer_norm": False,
                "optim.name": OptimizerName.adamw,
                "optim.lr": 1e-3,
                "optim.wd": 1.0,
                "optim.beta1": 0.9,
                "optim.beta2": 0.98,
                "optim.warmup": 10,
                "optim.batch_size": None,
                "train.steps": 40_000,
                "train.eval_every": 100,
                "train.checkpoint_every": 1000,
            },
        ),
        Preset(
            "power2022",
            "x/y mod 97, 50% train, 2-layer transformer (width 128, 4 heads, d_mlp 512, LayerNorm), "
            "AdamW lr 1e-3, wd 1, betas (0.9, 0.98), 10-step warmup, batch 512, 1e5 steps",
            "Power et al. 2022, Grokking: Generalization beyond overfitting on small algorithmic datasets",
            {
                "data.task": "mod-div",
                "data.p": 97,
                "data.train_frac": 0.5,
                "model.kind": ModelKind.transformer,
                "model.layers": 2,
                "model.d_model": 128,
                "model.heads": 4,
                "model.d_mlp": 512,
                "model.activation": Activation.gelu,
                "model.layer_norm": True,
                "optim.name": OptimizerName.adamw,
                "optim.lr": 1e-3,
                "optim.wd": 1.0,
                "optim.beta1": 0.9,
                "optim.beta2": 0.98,
                "optim.warmup": 10,
                "optim.batch_size": 512,
                "train.steps": 100_000,
                "train.eval_every": 100,
                "train.checkpoint_every": 1000,
            },
        ),
        Preset(
            "grokfast2024-baseline",
            "x*y mod 97, 50% train, 2-layer pre-LN GELU transformer (128, 4 heads, d_mlp 512), Adam lr 1e-3, "
            "betas (0.9, 0.98), no weight decay, batch 512, 10-step warmup (the paper: 39,890 steps to 95% val)",
            "Lee et al. 2024, Grokfast: Accelerated Grokking by Amplifying Slow Gradients (baseline of Table 1)",
            _GROKFAST_BASE,
        ),
        Preset(
            "grokfast2024",
            "grokfast2024-baseline plus the Grokfast EMA filter (alpha 0.98, lambda 2) and coupled L2 weight decay "
            "0.005 (the paper: 910 steps to 95% val)",
            "Lee et al. 2024, Grokfast (Table 1, EMA)",
            {
                **_GROKFAST_BASE,
                "optim.grokfast": Grokfast.ema,
                "optim.grokfast_alpha": 0.98,
                "optim.grokfast_lambda": 2.0,
                "optim.wd": 0.005,
            },
        ),
        Preset(
            "grokfast2024-ma",
            "grokfast2024-baseline plus the Grokfast MA filter (window 100, lambda 5) and coupled L2 weight decay "
            "0.01 (the paper: 790 steps to 95% val)",
            "Lee et al. 2024, Grokfast (Table 1, MA)",
            {
                **_GROKFAST_BASE,
                "optim.grokfast": Grokfast.ma,
                "optim.grokfast_window": 100,
                "optim.grokfast_lambda": 5.0,
                "optim.wd": 0.01,
            },
        ),
        Preset(
            "prieto2025-stablemax",
            "a+b mod 113, 40% train, MLP 2 x 200 ReLU without biases on concatenated one-hot inputs, full batch, "
            "Adam lr 0.01, beta2 0.999, no weight decay, StableMax cross-entropy, 80k steps (their Figure 1)",
            "Prieto et al. 2025, Grokking at the Edge of Numerical Stability (StableMax)",
            {**_PRIETO_BASE, "train.loss": Loss.stablemax, "train.steps": 80_000, "train.eval_every": 100},
        ),
        Preset(
            "prieto2025-orthograd",
            "the prieto2025-stablemax setup with softmax cross-entropy and ⊥Grad before AdamW (beta2 0.99, "
            "no weight decay), 300 steps (their Figure 1)",
            "Prieto et al. 2025, Grokking at the Edge of Numerical Stability (⊥AdamW)",
            {**_PRIETO_BASE, "optim.orthograd": True, "optim.beta2": 0.99, "train.steps": 300, "train.eval_every": 10},
        ),
        Preset(
            "gromov2023",
            "a+b mod 97, 30% train, MLP with one hidden layer of 500 quadratic units, no biases, one-hot inputs, "
            "MSE to one-hot targets, full batch, AdamW lr 1e-2, no weight decay",
            "Gromov 2023, Grokking modular arithmetic",
            {
                "data.task": "mod-add",
                "data.p": 97,
                "data.train_frac": 0.3,
                "model.kind": ModelKind.mlp,
                "model.width": 500,
                "model.depth": 1,
                "model.activation": Activation.quadratic,
                "model.embed": Embed.concat,
                "model.bias": False,
                "optim.name": OptimizerName.adamw,
                "optim.lr": 1e-2,
                "optim.wd": 0.0,
                "optim.warmup": 0,
                "optim.batch_size": None,
                "train.loss": Loss.mse,
                "train.steps": 3000,
                "train.eval_every": 10,
                "train.checkpoint_every": 500,
            },
        ),
        Preset(
            "omnigrok-initscale",
            "Omnigrok's MNIST recipe moved to a+b mod 97 (40% train): MLP 3 x 200 ReLU, MSE loss, AdamW lr 1e-3, "
            "wd 0.01, every initial weight x8; lower --init-scale to remove the delay",
            "Liu et al. 2023, Omnigrok: Grokking Beyond Algorithmic Data (Fig. 1, init scale 8)",
            {
                "data.task": "mod-add",
                "data.p": 97,
                "data.train_frac": 0.4,
                "model.kind": ModelKind.mlp,
                "model.width": 200,
                "model.depth": 3,
                "model.activation": Activation.relu,
                "model.embed": Embed.concat,
                "model.bias": True,
                "model.init_scale": 8.0,
                "optim.name": OptimizerName.adamw,
                "optim.lr": 1e-3,
                "optim.wd": 0.01,
                "optim.warmup": 0,
                "optim.batch_size": None,
                "train.loss": Loss.mse,
                "train.steps": 50_000,
                "train.eval_every": 100,
                "train.checkpoint_every": 1000,
            },
        ),
    ]
}


def get_preset(name: str) -> Preset:
    """Look up a preset; unknown names raise a UsageError listing the known ones."""
    if name not in PRESETS:
        close = difflib.get_close_matches(name, PRESETS, n=1, cutoff=0.4)
        hint = f"did you mean {close[0]}?" if close else f"choose one of {', '.join(PRESETS)}"
        raise UsageError(f"unknown preset '{name}': {hint}", option="--preset")
    return PRESETS[name]


def resolve(preset: str | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Defaults, then the preset's values, then explicit overrides; validated.

    A "preset" key among the overrides (from a config file) is used when `preset` is None.
    """
    overrides = dict(overrides or {})
    preset = preset if preset is not None else overrides.pop("preset", None)
    overrides.pop("preset", None)
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
