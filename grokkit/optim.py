"""The optimizer as one composed optax chain, built once per run from the config.

Numeric hyperparameters live in the optimizer state (optax.inject_hyperparams), so runs that
differ only in them share one compiled program (and can be stacked by `grokkit sweep`).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from grokkit.config import INJECTED, DecayTarget, Grokfast, OptimConfig, OptimizerName


def hyperparameters(cfg: OptimConfig) -> dict[str, float]:
    """The values kept in the optimizer state rather than compiled into the step."""
    return {name: float(getattr(cfg, name)) for name in INJECTED}


def build_optimizer(cfg: OptimConfig, values: dict[str, object] | None = None) -> optax.GradientTransformation:
    """The chain for `cfg`'s structure, with `values` (default: cfg's own) as its injected hyperparameters."""
    return optax.inject_hyperparams(partial(_chain, cfg))(**(values or hyperparameters(cfg)))


def _chain(cfg: OptimConfig, lr, wd, beta1, beta2, momentum, grokfast_alpha, grokfast_lambda):
    """⊥Grad, Grokfast, then AdamW (decoupled decay, scaled by lr as in PyTorch), Adam with coupled L2, or SGD."""
    parts = []
    if cfg.orthograd:
        parts.append(orthogonal_gradient())
    if cfg.grokfast == Grokfast.ema:
        parts.append(grokfast_ema(grokfast_alpha, grokfast_lambda))
    elif cfg.grokfast == Grokfast.ma:
        parts.append(grokfast_ma(cfg.grokfast_window, grokfast_lambda))
    decay = decay_toward_init(wd) if cfg.decay_to == DecayTarget.init else optax.add_decayed_weights(wd)
    name = cfg.name
    if name == OptimizerName.adamw:
        parts += [optax.scale_by_adam(b1=beta1, b2=beta2, eps=cfg.adam_eps), decay]
    elif name == OptimizerName.adam:
        parts += [decay, optax.scale_by_adam(b1=beta1, b2=beta2, eps=cfg.adam_eps)]
    else:
        parts += [decay, optax.trace(decay=momentum)]
    parts.append(optax.scale_by_learning_rate(learning_rate(cfg, lr)))
    if cfg.prune > 0:  # grokking tickets: the pruned weights' final updates (decay included) are zeroed
        parts.append(keep_pruned())
    return optax.chain(*parts)


def learning_rate(cfg: OptimConfig, peak: float | jax.Array | None = None) -> optax.Schedule:
    """Linear warmup from 0 over `warmup` steps, then constant (Nanda et al.: lr * min(step/10, 1))."""
    peak = cfg.lr if peak is None else peak
    if cfg.warmup == 0:
        return optax.constant_schedule(peak)
    return optax.linear_schedule(0.0, peak, transition_steps=cfg.warmup)


class GrokfastEmaState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count; int32 []
    mu: optax.Updates


def grokfast_ema(alpha: float, lam: float) -> optax.GradientTransformation:
    """Lee et al. 2024: mu <- alpha mu + (1 - alpha) g (mu starts at the first gradient); emit g + lam mu."""

    def init(params):
        return GrokfastEmaState(jnp.zeros((), jnp.int32), jax.tree.map(jnp.zeros_like, params))

    def update(grads, state, params=None):
        first = state.count == 0
        mu = jax.tree.map(lambda m, g: jnp.where(first, g, alpha * m + (1 - alpha) * g), state.mu, grads)
        out = jax.tree.map(lambda g, m: g + lam * m, grads, mu)
        return out, GrokfastEmaState(state.count + 1, mu)

    return optax.GradientTransformation(init, update)


class GrokfastMaState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count; int32 [], gradients seen
    window: optax.Updates  # per leaf [W, ...], a ring buffer of the last W gradients
    total: optax.Updates  # per leaf, the sum of the buffer (kept so a step costs O(params), not O(W params))


def grokfast_ma(window: int, lam: float) -> optax.GradientTransformation:
    """Lee et al. 2024: once W gradients are stored, emit g + lam * mean(last W gradients, g included)."""

    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return GrokfastMaState(
            jnp.zeros((), jnp.int32), jax.tree.map(lambda p: jnp.zeros((window, *p.shape), p.dtype), params), zeros
        )

    def update(grads, state, params=None):
        slot = state.count % window
        total = jax.tree.map(lambda t, b, g: t - b[slot] + g, state.total, state.window, grads)
        buffer = jax.tree.map(lambda b, g: b.at[slot].set(g), state.window, grads)
        full = state.count + 1 >= window
        out = jax.tree.map(lambda g, t: jnp.where(full, g + lam * t / window, g), grads, total)
        return out, GrokfastMaState(state.count + 1, buffer, total)

    return optax.GradientTransformation(init, update)


def orthogonal_gradient(eps: float = 1e-30) -> optax.GradientTransformation:
    """Prieto et al. 2025 (⊥Grad): per tensor, g_perp = g - (w.g / w.w) w, rescaled to |g|."""

    def update(grads, state, params=None):
        if params is None:
            raise ValueError("orthogonal_gradient needs the parameters")

        def project(g, w):
            g_perp = g - (jnp.vdot(w, g) / (jnp.vdot(w, w) + eps)) * w
            return g_perp * (jnp.linalg.norm(g) / (jnp.linalg.norm(g_perp) + eps))

        return jax.tree.map(project, grads, params), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


class DecayToInitState(NamedTuple):
    init_params: optax.Params


def decay_toward_init(wd: float) -> optax.GradientTransformation:
    """Weight decay toward the initial weights instead of zero: adds wd * (w - w_0) (Power et al.'s to_init)."""

    def init(params):
        return DecayToInitState(jax.tree.map(jnp.asarray, params))

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("decay_toward_init needs the parameters")
        out = jax.tree.map(lambda u, w, w0: u + wd * (w - w0), updates, params, state.init_params)
        return out, state

    return optax.GradientTransformation(init, update)


class KeepPrunedState(NamedTuple):
    keep_mask: optax.Params  # per leaf, 1 where the weight trains and 0 where it is pruned (set by grokkit.lineage)


def keep_pruned() -> optax.GradientTransformation:
    """Multiply every update by a fixed 0/1 mask kept in the state (all ones until grokkit.lineage sets it), so a
    pruned weight never moves: as the last link of the chain it zeroes weight decay's pull too."""

    def init(params):
        return KeepPrunedState(jax.tree.map(jnp.ones_like, params))

    def update(updates, state, params=None):
        return jax.tree.map(lambda u, m: u * m, updates, state.keep_mask), state

    return optax.GradientTransformation(init, update)
