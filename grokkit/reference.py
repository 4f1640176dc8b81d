"""The plain transformer forward pass (every position, every block, causal mask).

The fast `Transformer.__call__` computes only what reaches the loss and tabulates the
first block; this is the straightforward statement it must equal (tests) and beat (profile).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from grokkit.models import Transformer, activation_fn


def plain_transformer_logits(model: Transformer, tokens_BT: jax.Array) -> jax.Array:
    """Logits at the final position, computed the straightforward way: [B, T] -> [B, C]."""
    return plain_transformer_internals(model, tokens_BT)["logits_BC"]


def plain_transformer_internals(model: Transformer, tokens_BT: jax.Array) -> dict[str, jax.Array]:
    """Logits, and the last block's attention weights and MLP activations at the final position."""
    x_BTD = model.embed_VD[...][tokens_BT] + model.pos_TD[...]
    seq = x_BTD.shape[1]
    causal_TT = jnp.tril(jnp.ones((seq, seq), bool))
    for block in model.blocks:
        a_BTD = x_BTD if block.ln_attn is None else block.ln_attn(x_BTD)
        q_BTHK = jnp.einsum("btd,dhk->bthk", a_BTD, block.w_q_DHK[...])
        k_BTHK = jnp.einsum("btd,dhk->bthk", a_BTD, block.w_k_DHK[...])
        v_BTHK = jnp.einsum("btd,dhk->bthk", a_BTD, block.w_v_DHK[...])
        scores_BHTT = jnp.einsum("bqhk,bshk->bhqs", q_BTHK, k_BTHK) / np.sqrt(q_BTHK.shape[-1])
        scores_BHTT = jnp.where(causal_TT, scores_BHTT, -jnp.inf)
        attention_BHTT = jax.nn.softmax(scores_BHTT, -1)
        z_BTHK = jnp.einsum("bhqs,bshk->bqhk", attention_BHTT, v_BTHK)
        x_BTD = x_BTD + jnp.einsum("bthk,hkd->btd", z_BTHK, block.w_o_HKD[...])
        m_BTD = x_BTD if block.ln_mlp is None else block.ln_mlp(x_BTD)
        hidden_BTF = activation_fn(block.act)(m_BTD @ block.w_in_DF[...] + block.b_in_F[...])
        x_BTD = x_BTD + hidden_BTF @ block.w_out_FD[...] + block.b_out_D[...]
    out_BD = x_BTD[:, -1]
    if model.ln_final is not None:
        out_BD = model.ln_final(out_BD)
    return {
        "logits_BC": out_BD @ model.unembed_DC[...],
        "attention_BHT": attention_BHTT[:, :, -1],
        "mlp_hidden_BF": hidden_BTF[:, -1],
    }
