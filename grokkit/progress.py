"""Progress measures of Nanda et al. 2023 for modular addition, as pure JAX/NumPy functions.

Frequencies k = 1..p//2, angular frequency w_k = 2*pi*k/p. Grid tensors are over all
pairs (a, b) in x-major order, the order `make_dataset` produces: index = a * p + b.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

KEY_FREQUENCY_SHARE = 0.5
"""A frequency is key when its embedding norm is at least this fraction of the largest one."""
MAX_KEY_FREQUENCIES = 8

SUPPORTED_TASKS = {"mod-add": 1, "mod-sub": -1}
"""Tasks whose answer is a function of a + sign * b, so the trig-identity circuit applies."""


def fourier_basis(p: int) -> np.ndarray:
    """Orthonormal Fourier basis over residues, rows: constant, cos(w_1 x), sin(w_1 x), ... [p, p]."""
    x = np.arange(p)
    rows = [np.ones(p)]
    for k in range(1, p // 2 + 1):
        rows.append(np.cos(2 * np.pi * k * x / p))
        if 2 * k != p:
            rows.append(np.sin(2 * np.pi * k * x / p))
    basis = np.stack(rows)
    return (basis / np.linalg.norm(basis, axis=1, keepdims=True)).astype(np.float32)


def frequency_norms(embed_PD: jax.Array) -> jax.Array:
    """Norm of the embedding's cos/sin components for each frequency k = 1..p//2: [p, d] -> [p//2]."""
    p = embed_PD.shape[0]
    coefficients_FD = jnp.asarray(fourier_basis(p)) @ embed_PD
    squared_F = jnp.sum(jnp.square(coefficients_FD[1:]), axis=-1)
    n = p // 2
    if p % 2 == 0:  # the last frequency has a cosine only
        squared_F = jnp.concatenate([squared_F, jnp.zeros((1,))])
    return jnp.sqrt(squared_F.reshape(n, 2).sum(-1))


def gini(values: jax.Array) -> jax.Array:
    """Gini coefficient of non-negative values: 0 when all equal, (n-1)/n when one holds everything."""
    x = jnp.sort(jnp.abs(values))
    n = x.shape[0]
    index = jnp.arange(1, n + 1)
    return jnp.sum((2 * index - n - 1) * x) / (n * jnp.sum(x) + 1e-12)


def key_frequency_mask(norms_F: jax.Array) -> jax.Array:
    """The key frequencies: norm >= KEY_FREQUENCY_SHARE of the largest, at most MAX_KEY_FREQUENCIES."""
    rank_F = jnp.argsort(jnp.argsort(-norms_F))
    return (norms_F >= KEY_FREQUENCY_SHARE * norms_F.max()) & (rank_F < MAX_KEY_FREQUENCIES)


def sum_directions(p: int, sign: int) -> np.ndarray:
    """Unit vectors cos(w_k(a + sign*b)), sin(w_k(a + sign*b)) over the grid: [p//2, 2, p*p]."""
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    s = (a + sign * b).ravel()
    k = np.arange(1, p // 2 + 1)[:, None]
    directions = np.stack([np.cos(2 * np.pi * k * s / p), np.sin(2 * np.pi * k * s / p)], axis=1)
    norms = np.linalg.norm(directions, axis=-1, keepdims=True)
    return (directions / np.where(norms == 0, 1, norms)).astype(np.float32)


def split_logits(logits_NC: jax.Array, directions_F2N: jax.Array, mask_F: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(restricted, excluded) logits: the grid logits' components along the key directions, plus their
    mean over the grid (restricted); and the logits with those components removed (excluded)."""
    weights_F2 = jnp.broadcast_to(mask_F[:, None], directions_F2N.shape[:2]).astype(logits_NC.dtype)
    coefficients_F2C = jnp.einsum("fgn,nc->fgc", directions_F2N, logits_NC)
    key_part_NC = jnp.einsum("fg,fgn,fgc->nc", weights_F2, directions_F2N, coefficients_F2C)
    restricted_NC = key_part_NC + logits_NC.mean(axis=0, keepdims=True)
    return restricted_NC, logits_NC - key_part_NC


def cross_entropy(logits_NC: jax.Array, labels_N: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits_NC, labels_N).mean()


def progress_measures(
    embed_PD: jax.Array,
    logits_NC: jax.Array,
    labels_N: jax.Array,
    train_idx: jax.Array,
    directions_F2N: jax.Array,
) -> dict[str, jax.Array]:
    """Embedding Gini, key frequencies, restricted loss (all pairs) and excluded loss (train pairs)."""
    norms_F = frequency_norms(embed_PD)
    mask_F = key_frequency_mask(norms_F)
    restricted_NC, excluded_NC = split_logits(logits_NC, directions_F2N, mask_F)
    return {
        "embed_gini": gini(norms_F),
        "key_frequency_mask": mask_F,
        "restricted_loss": cross_entropy(restricted_NC, labels_N),
        "excluded_loss": cross_entropy(excluded_NC[train_idx], labels_N[train_idx]),
    }
