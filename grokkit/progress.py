"""Progress measures in the task's basis (`grokkit.bases`), as pure JAX functions.

Nanda et al. 2023 for modular addition, Chughtai et al. 2023 for any finite group: the embedding's
power per component (frequency or irrep), its Gini, the key components, and the restricted and
excluded losses. Logits are split along the answer: F[s, c] is the mean logit of class c over the
examples whose answer is the group element s; the key part of an example's logits is
(sum over key components rho of P_rho F)[its answer]. Restricted logits = key part + the mean logits
(the trivial component); excluded logits = logits - key part. For modular addition this is exactly
the projection onto cos/sin(w_k (a + b)) over the grid of Nanda et al.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from grokkit.bases import GroupBasis
from grokkit.data import Dataset

KEY_COMPONENT_SHARE = 0.5
"""A component is key when its embedding norm per dimension is at least this share of the largest one..."""
KEY_COMPONENT_EXCESS = 2.0
"""...and its energy per dimension at least this multiple of the embedding's average, so that an unstructured
(random or memorizing) embedding, whose energy is spread evenly, has no key components."""
MAX_KEY_COMPONENTS = 8


class BasisData(NamedTuple):
    """A task's basis on the device, for the compiled evaluation."""

    basis_GG: jax.Array  # orthonormal rows
    component_of_row_G: jax.Array  # int32, 0 = trivial
    value_of_element_G: jax.Array  # int32: operand token of each group element
    dims_R: jax.Array  # float32: each non-trivial component's dimension
    answer_N: jax.Array | None  # int32: each example's answer element, -1 outside the group; None: undefined


def basis_data(basis: GroupBasis, dataset: Dataset) -> BasisData:
    return BasisData(
        jnp.asarray(basis.basis_GG),
        jnp.asarray(basis.component_of_row),
        jnp.asarray(basis.value_of_element),
        jnp.asarray(basis.dims, jnp.float32),
        jnp.asarray(basis.answer_elements(dataset)) if basis.answer_defined else None,
    )


def component_norms(embed_GD: jax.Array, basis_GG: jax.Array, component_of_row_G: jax.Array, n: int) -> jax.Array:
    """Norm of the embedding's projection onto each non-trivial component: [G, D] -> [n]."""
    squared_G = jnp.sum(jnp.square(basis_GG @ embed_GD), axis=-1)
    return jnp.sqrt(jax.ops.segment_sum(squared_G, component_of_row_G, num_segments=n + 1)[1:])


def gini(values: jax.Array) -> jax.Array:
    """Gini coefficient of non-negative values: 0 when all equal, (n-1)/n when one holds everything."""
    x = jnp.sort(jnp.abs(values))
    n = x.shape[0]
    index = jnp.arange(1, n + 1)
    return jnp.sum((2 * index - n - 1) * x) / (n * jnp.sum(x) + 1e-12)


def key_component_mask(norms_R: jax.Array, dims_R: jax.Array) -> jax.Array:
    """The key components: norm per dimension (norm / sqrt(dimension), so a 36-dimensional irrep does not win by
    size alone) >= KEY_COMPONENT_SHARE of the largest, energy per dimension >= KEY_COMPONENT_EXCESS times the
    average, at most MAX_KEY_COMPONENTS."""
    energy_R = jnp.square(norms_R) / dims_R
    average = jnp.sum(jnp.square(norms_R)) / jnp.sum(dims_R)
    rank_R = jnp.argsort(jnp.argsort(-energy_R))
    return (
        (energy_R >= KEY_COMPONENT_SHARE**2 * energy_R.max())
        & (energy_R >= KEY_COMPONENT_EXCESS * average)
        & (rank_R < MAX_KEY_COMPONENTS)
    )


def split_logits(
    logits_NC: jax.Array, answer_N: jax.Array, basis_GG: jax.Array, row_mask_G: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """(restricted, excluded) logits (module docstring); rows whose answer is -1 are meaningless."""
    inside_N = (answer_N >= 0).astype(logits_NC.dtype)
    element_N = jnp.maximum(answer_N, 0)
    order = basis_GG.shape[0]
    sums_GC = jax.ops.segment_sum(logits_NC * inside_N[:, None], element_N, num_segments=order)
    counts_G = jax.ops.segment_sum(inside_N, element_N, num_segments=order)
    mean_GC = sums_GC / jnp.maximum(counts_G, 1)[:, None]
    key_GC = basis_GG.T @ (row_mask_G[:, None] * (basis_GG @ mean_GC))
    key_NC = key_GC[element_N]
    mean_C = jnp.sum(logits_NC * inside_N[:, None], axis=0) / jnp.maximum(inside_N.sum(), 1)
    return key_NC + mean_C, logits_NC - key_NC


def cross_entropy(logits_NC: jax.Array, labels_N: jax.Array, weight_N: jax.Array | None = None) -> jax.Array:
    """Mean softmax cross-entropy, over the examples with weight 1 when `weight_N` is given."""
    loss_N = optax.softmax_cross_entropy_with_integer_labels(logits_NC, labels_N)
    if weight_N is None:
        return loss_N.mean()
    return jnp.sum(loss_N * weight_N) / jnp.maximum(jnp.sum(weight_N), 1)


def progress_measures(
    embed_VD: jax.Array, logits_NC: jax.Array, labels_N: jax.Array, train_idx: jax.Array, data: BasisData
) -> dict[str, jax.Array]:
    """Embedding Gini over the components; with a defined answer also the key components, the restricted
    loss (every example in the group) and the excluded loss (training examples in the group)."""
    n = data.dims_R.shape[0]
    norms_R = component_norms(embed_VD[data.value_of_element_G], data.basis_GG, data.component_of_row_G, n)
    measures = {"embed_gini": gini(norms_R)}
    if data.answer_N is None:
        return measures
    mask_R = key_component_mask(norms_R, data.dims_R)
    row_mask_G = jnp.concatenate([jnp.zeros((1,), bool), mask_R])[data.component_of_row_G].astype(logits_NC.dtype)
    restricted_NC, excluded_NC = split_logits(logits_NC, data.answer_N, data.basis_GG, row_mask_G)
    inside_N = (data.answer_N >= 0).astype(jnp.float32)
    return measures | {
        "key_component_mask": mask_R,
        "restricted_loss": cross_entropy(restricted_NC, labels_N, inside_N),
        "excluded_loss": cross_entropy(excluded_NC[train_idx], labels_N[train_idx], inside_N[train_idx]),
    }


def key_names(basis: GroupBasis, mask_R: np.ndarray) -> list[int] | list[str]:
    """The key components' names: frequencies as integers, irreps by name."""
    chosen = [basis.labels[r] for r in np.flatnonzero(np.asarray(mask_R))]
    return [int(k) for k in chosen] if basis.is_frequency else chosen


def key_field(basis: GroupBasis) -> str:
    """Where a record keeps its key components: "key_frequencies" or "key_irreps"."""
    return "key_frequencies" if basis.is_frequency else "key_irreps"
