"""The optimizer as one composed optax chain, built once per run from the config."""

from __future__ import annotations

import optax

from grokkit.config import OptimConfig, OptimizerName


def learning_rate(cfg: OptimConfig) -> optax.Schedule:
    """Linear warmup from 0 over `warmup` steps, then constant (Nanda et al.: lr * min(step/10, 1))."""
    if cfg.warmup == 0:
        return optax.constant_schedule(cfg.lr)
    return optax.linear_schedule(0.0, cfg.lr, transition_steps=cfg.warmup)


def build_optimizer(cfg: OptimConfig) -> optax.GradientTransformation:
    """AdamW (decoupled decay, scaled by lr as in PyTorch), Adam with coupled L2, or SGD."""
    schedule = learning_rate(cfg)
    name = OptimizerName(cfg.name)
    if name == OptimizerName.adamw:
        parts = [
            optax.scale_by_adam(b1=cfg.beta1, b2=cfg.beta2, eps=1e-8),
            optax.add_decayed_weights(cfg.wd),
        ]
    elif name == OptimizerName.adam:
        parts = [
            optax.add_decayed_weights(cfg.wd),
            optax.scale_by_adam(b1=cfg.beta1, b2=cfg.beta2, eps=1e-8),
        ]
    else:
        parts = [optax.add_decayed_weights(cfg.wd), optax.trace(decay=cfg.momentum)]
    return optax.chain(*parts, optax.scale_by_learning_rate(schedule))
