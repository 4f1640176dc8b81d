"""Flax NNX models: a decoder transformer and an MLP on the operands.

Shape suffixes name tensor axes: B batch, T sequence, D d_model, H heads, K head dim,
F d_mlp (or MLP width), V vocabulary, C classes, O operands.
"""

from __future__ import annotations

import functools
import operator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from grokkit.config import Activation, Embed, ModelConfig, ModelKind


def activation_fn(name: Activation):
    """The elementwise nonlinearity; quadratic is Gromov 2023's phi(x) = x^2."""
    return {
        Activation.relu: jax.nn.relu,
        Activation.gelu: jax.nn.gelu,
        Activation.quadratic: jnp.square,
    }[name]


def _normal(rngs: nnx.Rngs, shape: tuple[int, ...], std: float) -> nnx.Param:
    return nnx.Param(jax.random.normal(rngs.params(), shape, jnp.float32) * std)


class LayerNorm(nnx.Module):
    def __init__(self, d_model: int):
        self.scale = nnx.Param(jnp.ones((d_model,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((d_model,), jnp.float32))

    def __call__(self, x_xD: jax.Array) -> jax.Array:
        mean = x_xD.mean(-1, keepdims=True)
        var = jnp.square(x_xD - mean).mean(-1, keepdims=True)
        return (x_xD - mean) * jax.lax.rsqrt(var + 1e-5) * self.scale[...] + self.bias[...]


class Block(nnx.Module):
    """Pre-LN (or no-LN) attention + MLP block; init N(0, 1/d_model) as in Nanda et al. 2023."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        d, h, k = cfg.d_model, cfg.heads, cfg.d_model // cfg.heads
        std = 1 / np.sqrt(d)
        self.heads = h
        self.act = cfg.activation
        self.w_q_DHK = _normal(rngs, (d, h, k), std)
        self.w_k_DHK = _normal(rngs, (d, h, k), std)
        self.w_v_DHK = _normal(rngs, (d, h, k), std)
        self.w_o_HKD = _normal(rngs, (h, k, d), std)
        self.w_in_DF = _normal(rngs, (d, cfg.d_mlp), std)
        self.b_in_F = nnx.Param(jnp.zeros((cfg.d_mlp,), jnp.float32))
        self.w_out_FD = _normal(rngs, (cfg.d_mlp, d), std)
        self.b_out_D = nnx.Param(jnp.zeros((d,), jnp.float32))
        self.ln_attn = LayerNorm(d) if cfg.layer_norm else None
        self.ln_mlp = LayerNorm(d) if cfg.layer_norm else None

    def mlp_hidden(self, x_xD: jax.Array) -> jax.Array:
        """The MLP's neuron activations: [..., D] -> [..., F]."""
        if self.ln_mlp is not None:
            x_xD = self.ln_mlp(x_xD)
        return activation_fn(self.act)(x_xD @ self.w_in_DF[...] + self.b_in_F[...])

    def _mlp(self, x_xD: jax.Array) -> jax.Array:
        return self.mlp_hidden(x_xD) @ self.w_out_FD[...] + self.b_out_D[...]

    def _normed(self, x_xD: jax.Array) -> jax.Array:
        return x_xD if self.ln_attn is None else self.ln_attn(x_xD)

    def queries(self, x_xD: jax.Array) -> jax.Array:
        """Queries of residual vectors with any leading axes: [..., D] -> [..., H, K]."""
        return jnp.einsum("...d,dhk->...hk", self._normed(x_xD), self.w_q_DHK[...])

    def keys_values(self, x_xD: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Keys and values: [..., D] -> ([..., H, K], [..., H, K])."""
        a_xD = self._normed(x_xD)
        return (
            jnp.einsum("...d,dhk->...hk", a_xD, self.w_k_DHK[...]),
            jnp.einsum("...d,dhk->...hk", a_xD, self.w_v_DHK[...]),
        )

    def all_positions(self, x_BTD, q_BTHK, k_BTHK, v_BTHK) -> jax.Array:
        """Causal attention and MLP at every position: [B, T, D] -> [B, T, D]."""
        scores_BTHS = attention_scores(q_BTHK, k_BTHK)
        seq = x_BTD.shape[1]
        causal_T1S = jnp.tril(jnp.ones((seq, seq), bool))[:, None, :]
        scores_BTHS = jnp.where(causal_T1S, scores_BTHS, -jnp.inf)
        z_BTHK = mix_values(jax.nn.softmax(scores_BTHS, axis=-1), v_BTHK)
        x_BTD = x_BTD + jnp.einsum("bthk,hkd->btd", z_BTHK, self.w_o_HKD[...])
        return x_BTD + self._mlp(x_BTD)

    def last_position(self, x_BD, q_BHK, k_BTHK, v_BTHK) -> jax.Array:
        """The final position only (its query sees every key, so no mask): -> [B, D]."""
        return self.last_position_from_scores(x_BD, attention_scores(q_BHK, k_BTHK), v_BTHK)

    def last_position_from_scores(self, x_BD, scores_BHT, v_BTHK) -> jax.Array:
        """The final position, given its attention scores: -> [B, D]."""
        z_BHK = mix_values(jax.nn.softmax(scores_BHT, axis=-1), v_BTHK)
        x_BD = x_BD + jnp.einsum("bhk,hkd->bd", z_BHK, self.w_o_HKD[...])
        return x_BD + self._mlp(x_BD)


SHORT_SEQUENCE = 8
"""Attention over at most this many positions is written as one product and sum per position, not a batched dot.

On XLA:CPU a batched dot over the algorithmic tasks' 3-5 positions is thousands of 3 x 32 by 32 x 3 products that
ran at 1-3 GFLOP/s: 1.3 of nanda2023's 14.7 ms per step and 3.0 of power2022's 17.5 (`make profile`). Written per
position, the step took 14.2 instead of 15.6 ms (nanda2023) and 12.8 instead of 16.4 (power2022), timed in turns
in one process. One broadcast product summed over a position axis was slower than the dot (its reduction and the
broadcast in its gradient): each position's term is its own fusion here."""


def _position(x_BTHK: jax.Array, t: int, like_BxHK: jax.Array) -> jax.Array:
    """Position t of keys or values, [B, H, K], with unit axes for `like_BxHK`'s query positions."""
    return jnp.expand_dims(x_BTHK[:, t], tuple(range(1, like_BxHK.ndim - 2)))


def attention_scores(q_BxHK: jax.Array, k_BTHK: jax.Array) -> jax.Array:
    """q . k / sqrt(head dim) for every key position: queries [B, ..., H, K] (any query positions) -> [B, ..., H, T]."""
    scale = np.sqrt(q_BxHK.shape[-1])
    if k_BTHK.shape[1] > SHORT_SEQUENCE:
        return jnp.einsum("b...hk,bthk->b...ht", q_BxHK, k_BTHK) / scale
    return jnp.stack([(q_BxHK * _position(k_BTHK, t, q_BxHK)).sum(-1) for t in range(k_BTHK.shape[1])], -1) / scale


def mix_values(p_BxHT: jax.Array, v_BTHK: jax.Array) -> jax.Array:
    """The attention-weighted sum of the values: weights [B, ..., H, T] -> [B, ..., H, K]."""
    if v_BTHK.shape[1] > SHORT_SEQUENCE:
        return jnp.einsum("b...ht,bthk->b...hk", p_BxHT, v_BTHK)
    terms = [p_BxHT[..., t, None] * _position(v_BTHK, t, p_BxHT) for t in range(v_BTHK.shape[1])]
    return functools.reduce(operator.add, terms)


class Transformer(nnx.Module):
    """Decoder transformer over [x, y, =]; logits for the answer at the final position only.

    The first block's input at position t depends only on the token there, so its
    residual, queries, keys and values are computed once per (position, token) as
    [T, V, ...] tables and gathered per example: the same mathematics at a fraction of
    the FLOPs (the embedding is linear in the one-hot token). With one block, the final
    query depends only on the final token, so every attention score is a function of two
    tokens and comes from a [T, V, V, H] table when that is smaller than the per-example
    work. Later positions' queries and MLPs run only where they can reach the loss.
    """

    def __init__(self, cfg: ModelConfig, vocab_size: int, seq_len: int, n_classes: int, *, rngs: nnx.Rngs):
        std = 1 / np.sqrt(cfg.d_model)
        self.embed_VD = _normal(rngs, (vocab_size, cfg.d_model), std)
        self.pos_TD = _normal(rngs, (seq_len, cfg.d_model), std)
        self.blocks = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.layers)])
        self.ln_final = LayerNorm(cfg.d_model) if cfg.layer_norm else None
        self.unembed_DC = _normal(rngs, (cfg.d_model, n_classes), 1 / np.sqrt(n_classes))

    def operand_embedding(self, n_values: int) -> jax.Array:
        """The operand tokens' embedding vectors: [n_values, D]."""
        return self.embed_VD[...][:n_values]

    def __call__(self, tokens_BT: jax.Array) -> jax.Array:
        first, last = self.blocks[0], self.blocks[-1]
        x_TVD = self.embed_VD[...][None] + self.pos_TD[...][:, None]
        k_TVHK, v_TVHK = first.keys_values(x_TVD)
        position_T = jnp.arange(tokens_BT.shape[1])
        k_BTHK, v_BTHK = k_TVHK[position_T, tokens_BT], v_TVHK[position_T, tokens_BT]
        if len(self.blocks) == 1:
            last_token_B = tokens_BT[:, -1]
            q_VHK = first.queries(x_TVD[-1])
            x_BD = x_TVD[-1][last_token_B]
            batch, (_, vocab, _, head_dim) = tokens_BT.shape[0], k_TVHK.shape
            if vocab * vocab <= batch * head_dim:
                scores_TVVH = jnp.einsum("whk,tvhk->twvh", q_VHK, k_TVHK) / np.sqrt(head_dim)
                scores_BTH = scores_TVVH[position_T, last_token_B[:, None], tokens_BT]
                x_BD = first.last_position_from_scores(x_BD, scores_BTH.transpose(0, 2, 1), v_BTHK)
            else:
                x_BD = first.last_position(x_BD, q_VHK[last_token_B], k_BTHK, v_BTHK)
        else:
            q_BTHK = first.queries(x_TVD)[position_T, tokens_BT]
            x_BTD = first.all_positions(x_TVD[position_T, tokens_BT], q_BTHK, k_BTHK, v_BTHK)
            for block in self.blocks[1:-1]:
                x_BTD = block.all_positions(x_BTD, block.queries(x_BTD), *block.keys_values(x_BTD))
            x_BD = last.last_position(x_BTD[:, -1], last.queries(x_BTD[:, -1]), *last.keys_values(x_BTD))
        if self.ln_final is not None:
            x_BD = self.ln_final(x_BD)
        return x_BD @ self.unembed_DC[...]


class MLP(nnx.Module):
    """MLP on the operands' one-hot inputs, concatenated (one table per operand) or summed (shared).

    Image tasks give it float features [B, V] instead of tokens: one operand whose one-hot vector is replaced
    by real values, so the first layer is the same table (embed_OVF[0], [V, F]) as a matrix product."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, n_operands: int, n_classes: int, *, rngs: nnx.Rngs):
        tables = n_operands if cfg.embed == Embed.concat else 1
        self.act = cfg.activation
        # lecun-normal on the one-hot input's true fan-in, as a Linear layer on the concatenated one-hots would be
        self.embed_OVF = _normal(rngs, (tables, vocab_size, cfg.width), 1 / np.sqrt(tables * vocab_size))
        self.b_embed_F = nnx.Param(jnp.zeros((cfg.width,), jnp.float32)) if cfg.bias else None
        self.hidden = nnx.List(
            [nnx.Linear(cfg.width, cfg.width, use_bias=cfg.bias, rngs=rngs) for _ in range(cfg.depth - 1)]
        )
        self.out = nnx.Linear(cfg.width, n_classes, use_bias=cfg.bias, rngs=rngs)

    def operand_embedding(self, n_values: int) -> jax.Array:
        """Each operand value's first-layer vectors, all tables side by side: [n_values, tables * F]."""
        tables_OVF = self.embed_OVF[...][:, :n_values]
        return tables_OVF.transpose(1, 0, 2).reshape(n_values, -1)

    def first_hidden(self, tokens_BT: jax.Array) -> jax.Array:
        """The first hidden layer's activations: tokens [B, T] (or image features [B, V]) -> [B, F]."""
        if jnp.issubdtype(tokens_BT.dtype, jnp.floating):
            h_BF = tokens_BT @ self.embed_OVF[...][0]
        else:
            operands_BO = tokens_BT[:, :-1]
            table_O = jnp.arange(operands_BO.shape[1]) % self.embed_OVF.shape[0]
            h_BF = self.embed_OVF[...][table_O, operands_BO].sum(axis=1)
        if self.b_embed_F is not None:
            h_BF = h_BF + self.b_embed_F[...]
        return activation_fn(self.act)(h_BF)

    def __call__(self, tokens_BT: jax.Array) -> jax.Array:
        act = activation_fn(self.act)
        h_BF = self.first_hidden(tokens_BT)
        for layer in self.hidden:
            h_BF = act(layer(h_BF))
        return self.out(h_BF)


def build_model(cfg: ModelConfig, vocab_size: int, seq_len: int, n_classes: int, seed: int) -> nnx.Module:
    """The model a config describes, initialised from `seed`."""
    rngs = nnx.Rngs(params=jax.random.PRNGKey(seed))
    if cfg.kind == ModelKind.transformer:
        return Transformer(cfg, vocab_size, seq_len, n_classes, rngs=rngs)
    return MLP(cfg, vocab_size, seq_len - 1, n_classes, rngs=rngs)
