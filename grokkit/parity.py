"""Sparse parity's hidden progress: the first layer's weight concentrating on the relevant bits.

Barak et al. 2022 ("Hidden progress in deep learning: SGD learns parities near the computational limit")
and Merrill et al. 2023 ("A tale of two circuits: grokking as competition of sparse and dense subnetworks")
show that on (n, k) sparse parity the loss stays flat for a long time while the first layer's weight
steadily concentrates on the k relevant bits; the drop in loss comes after. These functions measure that
concentration from a model and a batch of sparse-parity tokens (grokkit.data: column i < n is bit i,
the last column is "=", the label is the XOR of bits 0..k-1).

Each input bit i gets a first-layer weight w_i >= 0 (`bit_weights`):

- MLP with concatenated embeddings (one table per bit, i.e. a linear layer on the one-hot bits):
  w_i = ||E[i, 1] - E[i, 0]||_2, the part of the first layer that varies with bit i (the mean of the two
  rows acts as a bias). With summed embeddings every position shares one table, so the bits cannot be told
  apart by weight and there is no measure (None).
- Transformer: w_t = the first block's attention weight from the final position to position t, averaged
  over the examples and the heads (see `transformer_bit_weights` for why).

From these (`parity_measures`):

    relevant_weight_share = sum_{i<k} w_i^2 / sum_i w_i^2
    bit_weight_gini       = gini(w_0, ..., w_{n-1})

At a random init the weights are roughly equal, so the share is about k/n and the Gini near 0; a model that
has found the k bits has share -> 1 and Gini -> (n - k)/n (k equal weights, the rest zero).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from grokkit.models import MLP, Transformer
from grokkit.progress import gini


def mlp_bit_weights(model: MLP, tokens_NT: jax.Array) -> jax.Array | None:
    """||E[i, 1] - E[i, 0]||_2 per bit [n_bits]; None with one shared table (embed=sum) over several bits."""
    n_bits = tokens_NT.shape[1] - 1
    embed_OVF = model.embed_OVF[...]
    tables = embed_OVF.shape[0]
    if tables != n_bits:
        if tables == 1:
            return None  # embed=sum: one table for every position, so the bits are indistinguishable
        raise ValueError(f"the MLP has {tables} embedding tables but the tokens have {n_bits} bits")
    return jnp.linalg.norm(embed_OVF[:, 1] - embed_OVF[:, 0], axis=-1)


def transformer_bit_weights(model: Transformer, tokens_NT: jax.Array) -> jax.Array:
    """The first block's attention from the final position to each bit position, mean over examples and heads.

    This is the transformer's analogue of the MLP's per-bit first-layer weight. The token embedding `embed_VD`
    is shared by every position, so no embedding row belongs to a bit; what decides which bits reach the
    answer is where the final ("=") position attends. In the first block, bit t (its token at position t)
    enters the final position's residual only through position t's term a_t * v_t of the attention output
    (and through the softmax normaliser, whose derivative in position t's score, -a_j * a_t, also carries a
    factor a_t), so as a_t -> 0 bit t has no effect there. With one block the answer is read at the final
    position only, so this is the whole route; with deeper models bits can also reach the answer through
    other positions in later blocks, and this measures the first block's direct read only.

    The computation is `Transformer.__call__`'s: keys from the [T, V] table of first-block inputs
    `embed_VD[v] + pos_TD[t]` (through `Block.keys_values`, so `ln_attn` applies when layer norm is on),
    the final position's query from its token (`Block.queries`), scores q.k / sqrt(K), softmax over all T
    positions (the final position sees every key, so there is no mask), gathered per example. Returns
    [n_bits] (positions 0..n_bits-1; the final position's attention to itself is left out).
    """
    n_bits = tokens_NT.shape[1] - 1
    first = model.blocks[0]
    x_TVD = model.embed_VD[...][None] + model.pos_TD[...][: tokens_NT.shape[1], None]
    k_TVHK, _ = first.keys_values(x_TVD)
    q_VHK = first.queries(x_TVD[-1])
    # every score is a function of (final token, position, token): a [V, T, V, H] table, then a gather
    # (per-example keys cost more than the training step's forward pass: 22% of a chunk, measured)
    scores_WTVH = jnp.einsum("whk,tvhk->wtvh", q_VHK, k_TVHK) / np.sqrt(q_VHK.shape[-1])
    position_T = jnp.arange(tokens_NT.shape[1])
    scores_NTH = scores_WTVH[tokens_NT[:, -1:], position_T, tokens_NT]
    attention_NTH = jax.nn.softmax(scores_NTH, axis=1)
    return attention_NTH.mean(axis=(0, 2))[:n_bits]


def bit_weights(model, tokens_NT: jax.Array) -> jax.Array | None:
    """Each input bit's first-layer weight [n_bits] (MLP concat: ||E[i,1] - E[i,0]||; transformer: mean
    final-position attention); None where positions are indistinguishable (MLP embed=sum).

    n_bits = tokens_NT.shape[1] - 1. The MLP's weight does not depend on the tokens (only their shape); the
    transformer's is averaged over the given examples. Traceable under jax.jit (tokens traced).
    """
    if isinstance(model, Transformer):
        return transformer_bit_weights(model, tokens_NT)
    if isinstance(model, MLP):
        return mlp_bit_weights(model, tokens_NT)
    raise TypeError(f"no bit weights for a {type(model).__name__}")


def parity_measures(model, tokens_NT: jax.Array, k_bits: int) -> dict[str, jax.Array]:
    """{"relevant_weight_share": sum_{i<k} w_i^2 / sum_i w_i^2, "bit_weight_gini": gini(w)}
    ({} when bit_weights is None).

    The relevant bits are 0..k_bits-1 (grokkit.data's sparse parity); k_bits must be a Python int (static under
    jax.jit). The share is 0 when every weight is 0 (no bit has any weight, so none is relevant).
    """
    weights = bit_weights(model, tokens_NT)
    if weights is None:
        return {}
    n_bits = weights.shape[0]
    if not 0 < k_bits <= n_bits:
        raise ValueError(f"k_bits must be in 1..{n_bits} (the number of bits), got {k_bits}")
    squared = jnp.square(weights)
    total = squared.sum()
    relevant = squared[:k_bits].sum()
    share = jnp.where(total > 0, relevant / jnp.where(total > 0, total, 1.0), 0.0)
    return {"relevant_weight_share": share, "bit_weight_gini": gini(weights)}
