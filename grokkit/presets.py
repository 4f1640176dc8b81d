"""Paper setups as data: each preset is a set of config overrides and the source it follows."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from grokkit.config import Activation, Embed, Grokfast, Loss, LossDtype, ModelKind, OptimizerName
from grokkit.errors import UsageError


class Measure(StrEnum):
    val_acc = "val_acc"  # the first evaluation from which validation accuracy stays >= the threshold
    val_loss = "val_loss"  # ... from which validation loss stays < the threshold


@dataclass(frozen=True)
class Claim:
    """A figure the paper reports for its setup: the step at which `measure` crossed `threshold`."""

    measure: Measure
    threshold: float
    steps: tuple[int, int] | None  # the paper's step(s), low and high (equal for one run); None: never, in its budget
    budget: int  # the paper's step budget
    where: str  # where the figure is (table, figure or file), how many runs, whether read off a plot

    @property
    def short(self) -> str:
        if self.measure is Measure.val_acc:
            return f"val acc {self.threshold:.0%}"
        return f"val loss < {self.threshold:g}"

    @property
    def label(self) -> str:
        if self.measure is Measure.val_acc:
            return f"steps to {self.threshold:.0%} validation accuracy"
        return f"steps to validation loss < {self.threshold:g}"


@dataclass(frozen=True)
class Preset:
    name: str
    source: str  # author, year, title
    overrides: dict[str, Any]
    claims: tuple[Claim, ...] = ()  # what `grokkit reproduce` checks; empty: the paper gives no figure for this setup
    seeds: int = 3  # `grokkit reproduce`: seeds by default
    reproduce: dict[str, Any] = field(default_factory=dict)  # `grokkit reproduce`: settings on top of the preset


_GROKFAST_BASE: dict[str, Any] = {
    "data.task": "mod-mul", "data.p": 97, "data.train_frac": 0.5, "model.kind": ModelKind.transformer,
    "model.layers": 2, "model.d_model": 128, "model.heads": 4, "model.d_mlp": 512, "model.activation": Activation.gelu,
    "model.layer_norm": True, "optim.name": OptimizerName.adam, "optim.lr": 1e-3, "optim.wd": 0.0,
    "optim.beta1": 0.9, "optim.beta2": 0.98, "optim.warmup": 10, "optim.batch_size": 512,
    "train.steps": 100_000, "train.eval_every": 50, "train.checkpoint_every": 1000,
}  # fmt: skip

# Nanda et al. 2023's 1-layer transformer and AdamW, which Chughtai et al. 2023's transformer runs reuse
_NANDA_MODEL_AND_OPTIMIZER: dict[str, Any] = {
    "model.kind": ModelKind.transformer, "model.layers": 1, "model.d_model": 128, "model.heads": 4,
    "model.d_mlp": 512, "model.activation": Activation.relu, "model.layer_norm": False,
    "optim.name": OptimizerName.adamw, "optim.lr": 1e-3, "optim.wd": 1.0, "optim.beta1": 0.9, "optim.beta2": 0.98,
}  # fmt: skip

# init scale 1/sqrt(3): PyTorch's default Linear init (their code) has variance 1/(3 fan_in), ours 1/fan_in
_PRIETO_BASE: dict[str, Any] = {
    "data.task": "mod-add", "data.p": 113, "data.train_frac": 0.4, "model.kind": ModelKind.mlp,
    "model.width": 200, "model.depth": 2, "model.activation": Activation.relu, "model.embed": Embed.concat,
    "model.bias": False, "model.init_scale": 0.577, "optim.name": OptimizerName.adamw, "optim.lr": 0.01,
    "optim.adam_eps": 1e-25,
    "optim.wd": 0.0, "optim.beta1": 0.9, "optim.beta2": 0.999, "optim.warmup": 0, "optim.batch_size": None,
    "train.steps": 5000, "train.eval_every": 25, "train.checkpoint_every": 500,
}  # fmt: skip

# The small setup of README's "Runs that start from other runs" measurements (the tests' GROKS config): groks in
# ~1,300 steps on a laptop CPU. Not the papers' models or budgets; each preset says what it is for.
_SMALL: dict[str, Any] = {
    "data.task": "mod-add", "data.p": 41, "data.train_frac": 0.5, "model.kind": ModelKind.transformer,
    "model.layers": 1, "model.d_model": 64, "model.heads": 2, "model.d_mlp": 128, "model.activation": Activation.relu,
    "model.layer_norm": False, "optim.name": OptimizerName.adamw, "optim.lr": 3e-3, "optim.wd": 1.0,
    "optim.batch_size": None, "train.eval_every": 25,
}  # fmt: skip

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            "nanda2023",
            "Nanda et al. 2023, Progress measures for grokking via mechanistic interpretability (ICLR 2023)",
            {
                "data.task": "mod-add",
                "data.p": 113,
                "data.train_frac": 0.3,
                **_NANDA_MODEL_AND_OPTIMIZER,
                "optim.warmup": 10,
                "optim.batch_size": None,
                "train.steps": 40_000,
                "train.eval_every": 100,
                "train.checkpoint_every": 1000,
            },
            claims=(
                Claim(
                    Measure.val_loss,
                    0.01,
                    (8258, 8258),
                    50_000,
                    "their committed logs, saved_runs/"
                    "mod_addition_frac_train_sweep.pth in the progress-measures-paper repository; one run",
                ),
            ),
            reproduce={"train.early_exit_window": 2000},  # their figure is test loss < 0.01, after 99% accuracy
        ),
        Preset(
            "power2022",
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
            "Lee et al. 2024, Grokfast: Accelerated Grokking by Amplifying Slow Gradients "
            "(Table 3 baseline: 39,890 steps to 95% val)",
            _GROKFAST_BASE,
            claims=(Claim(Measure.val_acc, 0.95, (39_890, 39_890), 300_000, "Table 3; one run"),),
            seeds=1,  # ~25 min a seed here to 50k steps
            reproduce={"train.steps": 50_000, "train.eval_every": 250},
        ),
        Preset(
            "grokfast2024",
            "Lee et al. 2024, Grokfast (Table 3, EMA: 910 steps to 95% val)",
            {
                **_GROKFAST_BASE,
                "optim.grokfast": Grokfast.ema,
                "optim.grokfast_alpha": 0.98,
                "optim.grokfast_lambda": 2.0,
                "optim.wd": 0.005,
            },
            claims=(Claim(Measure.val_acc, 0.95, (910, 910), 300_000, "Table 3; one run"),),
        ),
        Preset(
            "grokfast2024-ma",
            "Lee et al. 2024, Grokfast (Table 3, MA: 790 steps to 95% val)",
            {
                **_GROKFAST_BASE,
                "optim.grokfast": Grokfast.ma,
                "optim.grokfast_window": 100,
                "optim.grokfast_lambda": 5.0,
                "optim.wd": 0.01,
            },
            claims=(Claim(Measure.val_acc, 0.95, (790, 790), 300_000, "Table 3; one run"),),
        ),
        Preset(
            "prieto2025-stablemax",
            "Prieto et al. 2025, Grokking at the Edge of Numerical Stability (StableMax)",
            {
                **_PRIETO_BASE,
                "train.loss": Loss.stablemax,
                "train.loss_dtype": LossDtype.float64,  # their stablemax_cross_entropy casts the logits to float64
                "train.steps": 80_000,
                "train.eval_every": 100,
            },
            claims=(
                Claim(
                    Measure.val_acc,
                    0.95,
                    (50_000, 55_000),
                    80_000,
                    "Fig. 1, read off the plot of their "
                    "paper_plots.ipynb (test accuracy logged every 5,000 epochs; it plateaus near 98%); one run",
                ),
            ),
            seeds=1,
        ),
        Preset(
            "prieto2025-float64",
            "Prieto et al. 2025, Grokking at the Edge of Numerical Stability (softmax cross-entropy computed in "
            "float64, no weight decay)",
            {**_PRIETO_BASE, "train.loss_dtype": LossDtype.float64, "train.steps": 80_000, "train.eval_every": 100},
            claims=(
                Claim(
                    Measure.val_acc,
                    0.5,
                    None,
                    80_000,
                    "Fig. 1 and their paper_plots.ipynb: test accuracy stays near 0% for all 80,000 epochs; one run",
                ),
            ),
            seeds=1,
        ),
        Preset(
            "prieto2025-orthograd",
            "Prieto et al. 2025, Grokking at the Edge of Numerical Stability (⊥AdamW)",
            {**_PRIETO_BASE, "optim.orthograd": True, "optim.beta2": 0.99, "train.steps": 300, "train.eval_every": 10},
            claims=(
                Claim(
                    Measure.val_acc,
                    0.99,
                    (110, 120),
                    300,
                    "Fig. 1, read off the plot of their paper_plots.ipynb (97% at epoch 110, 100% by 120); one run",
                ),
            ),
        ),
        Preset(
            "gromov2023",
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
            "varma2023-ungrok",
            "Varma et al. 2023, Explaining grokking through circuit efficiency (ungrokking, small scale: train a "
            "source with this preset, then add --init-from SOURCE --train-subset F)",
            {**_SMALL, "train.steps": 3000, "train.checkpoint_every": 500, "train.early_exit": False},
        ),
        Preset(
            "doshi2024-noise",
            "Doshi et al. 2024, To grok or not to grok: Disentangling generalization and memorization on "
            "corrupted algorithmic datasets (10% label noise; a small transformer, not their MLP)",
            {
                **_SMALL,
                "data.label_noise": 0.1,
                "train.steps": 4000,
                "train.checkpoint_every": 1000,
                "train.early_exit": False,
            },
        ),
        Preset(
            "minegishi2023-ticket",
            "Minegishi et al. 2023, Grokking Tickets: Lottery Tickets Accelerate Grokking (small scale: add "
            "--mask-from SOURCE@STEP --prune 0.4, SOURCE trained with varma2023-ungrok)",
            {**_SMALL, "train.steps": 4000, "train.checkpoint_every": 1000, "train.early_exit_window": 100},
        ),
        Preset(
            "chughtai2023-s5",
            "Chughtai et al. 2023, A Toy Model of Universality (their Transformer_S5 config: composition in S5, "
            "60% train, AdamW lr 1e-3, wd 1; their main MLP did not grok here within 286k steps)",
            {
                "data.task": "s5-compose",
                "data.train_frac": 0.6,
                **_NANDA_MODEL_AND_OPTIMIZER,
                "optim.batch_size": None,
                "train.steps": 50_000,
                "train.eval_every": 100,
                "train.checkpoint_every": 1000,
            },
            claims=(
                Claim(
                    Measure.val_acc,
                    0.99,
                    (14_864, 37_728),
                    50_000,
                    "their committed runs rep_theory/batch_experiments/S5_T_seed1..4 (cfg.json, metrics.csv); 4 seeds",
                ),
            ),
            seeds=1,  # ~15 min a seed here
        ),
        Preset(
            "merrill2023-parity",
            "Merrill et al. 2023, A Tale of Two Circuits: Grokking as Competition of Sparse and Dense "
            "Subnetworks; Barak et al. 2022 ((n, k) = (40, 3), 1,000 training strings, one hidden layer of 1,000 "
            "ReLU units, minibatch SGD; weight decay 1e-3: their code's 0.01, with its hinge loss replaced by our "
            "cross-entropy, shows no delay)",
            {
                "data.task": "sparse-parity",
                "data.n_bits": 40,
                "data.k_bits": 3,
                "data.n_samples": 2000,
                "data.train_frac": 0.5,
                "model.kind": ModelKind.mlp,
                "model.width": 1000,
                "model.depth": 1,
                "model.activation": Activation.relu,
                "model.embed": Embed.concat,
                "model.bias": True,
                "optim.name": OptimizerName.sgd,
                "optim.lr": 0.1,
                "optim.wd": 1e-3,
                "optim.momentum": 0.0,
                "optim.batch_size": 32,
                "train.steps": 50_000,
                "train.eval_every": 250,
                "train.checkpoint_every": 2500,
            },
        ),
        # Omnigrok's MNIST setup on scikit-learn's 8x8 digits (MNIST cannot be downloaded here): 1,000 training
        # images, 3 x 200 ReLU MLP, MSE, AdamW (PyTorch's betas) lr 1e-3, batch 200, initialization x 8 in
        # PyTorch's units (its default init has variance 1/(3 fan_in), ours 1/fan_in: 8 / sqrt(3) = 4.62). Weight
        # decay 0.1, not their 0.01: time to generalize goes as 1/weight decay, and this keeps the delay within
        # 15,000 steps.
        # Compare with --init-scale 1 (README, Image tasks).
        Preset(
            "omnigrok-digits",
            "Liu et al. 2023, Omnigrok: Grokking Beyond Algorithmic Data (MNIST, init scale 8), on 8x8 digits",
            {
                "data.task": "digits",
                "data.train_frac": 0.5565,
                "model.kind": ModelKind.mlp,
                "model.width": 200,
                "model.depth": 3,
                "model.activation": Activation.relu,
                "model.bias": True,
                "model.init_scale": 4.62,
                "optim.name": OptimizerName.adamw,
                "optim.lr": 1e-3,
                "optim.wd": 0.1,
                "optim.beta2": 0.999,
                "optim.warmup": 0,
                "optim.batch_size": 200,
                "train.loss": Loss.mse,
                "train.steps": 15_000,
                "train.eval_every": 200,
                "train.checkpoint_every": 5000,
            },
        ),
        # Kumar et al.'s modular-arithmetic network: p = 23, 90% of pairs, 2-layer MLP of 100 quadratic units
        # without biases, MSE, plain gradient descent without weight decay, output alpha (f - f_0) trained at
        # learning rate eta_0 / alpha^2 (--output-scale). Our MLP has the standard 1/sqrt(fan_in) init, not their
        # N(0, 1) weights with a 1/(D N) readout, so our alpha and eta_0 = 0.5 are on a different scale from their
        # alpha and eta_0 = 100. Alpha = 2 groks late; 0.5 not at all late; 8 stays lazy (README, Lazy to rich).
        Preset(
            "kumar2024-lazy-rich",
            "Kumar et al. 2024, Grokking as the transition from lazy to rich training dynamics (ICLR 2024; "
            "modular arithmetic, output scale 2)",
            {
                "data.task": "mod-add",
                "data.p": 23,
                "data.train_frac": 0.9,
                "model.kind": ModelKind.mlp,
                "model.width": 100,
                "model.depth": 1,
                "model.activation": Activation.quadratic,
                "model.embed": Embed.concat,
                "model.bias": False,
                "model.output_scale": 2.0,
                "optim.name": OptimizerName.sgd,
                "optim.lr": 0.5,
                "optim.wd": 0.0,
                "optim.momentum": 0.0,
                "optim.warmup": 0,
                "optim.batch_size": None,
                "train.loss": Loss.mse,
                "train.steps": 20_000,
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
