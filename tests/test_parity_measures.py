"""grokkit.parity: the first layer's weight on sparse parity's relevant bits, on hand-built models."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from grokkit.config import Embed, ModelConfig, ModelKind
from grokkit.models import build_model
from grokkit.parity import bit_weights, parity_measures
from grokkit.reference import plain_transformer_internals

N_BITS, K_BITS, WIDTH = 6, 2, 8
SEQ = N_BITS + 1


def parity_tokens(n_examples=16, n_bits=N_BITS, seed=0):
    """Sparse-parity tokens as grokkit.data lays them out: bit i in column i, "=" (2) last."""
    bits = np.random.default_rng(seed).integers(0, 2, (n_examples, n_bits))
    return jnp.asarray(np.concatenate([bits, np.full((n_examples, 1), 2)], axis=1).astype(np.int32))


def mlp(embed=Embed.concat):
    cfg = ModelConfig(kind=ModelKind.mlp, width=WIDTH, embed=embed)
    return build_model(cfg, vocab_size=3, seq_len=SEQ, n_classes=2, seed=0)


def mlp_with_bit_weights(weights):
    """An MLP whose table i has ||E[i, 1] - E[i, 0]|| = weights[i] (shared mean rows, a random direction each)."""
    model = mlp()
    rng = np.random.default_rng(1)
    embed = np.repeat(rng.normal(size=(1, 3, WIDTH)), N_BITS, axis=0)  # every bit's rows equal: no weight
    for i, w in enumerate(weights):
        direction = rng.normal(size=WIDTH)
        embed[i, 1] = embed[i, 0] + w * direction / np.linalg.norm(direction)
    model.embed_OVF[...] = jnp.asarray(embed, jnp.float32)
    return model


def transformer(layer_norm=False, layers=1):
    cfg = ModelConfig(d_model=8, heads=2, d_mlp=16, layers=layers, layer_norm=layer_norm)
    return build_model(cfg, vocab_size=3, seq_len=SEQ, n_classes=2, seed=0)


def test_mlp_weight_on_the_relevant_bits_only():
    model = mlp_with_bit_weights([1.5, 1.5, 0, 0, 0, 0])
    np.testing.assert_allclose(bit_weights(model, parity_tokens()), [1.5, 1.5, 0, 0, 0, 0], atol=1e-6)
    out = parity_measures(model, parity_tokens(), K_BITS)
    assert set(out) == {"relevant_weight_share", "bit_weight_gini"}
    np.testing.assert_allclose(out["relevant_weight_share"], 1.0, atol=1e-6)
    # sorted [0, 0, 0, 0, a, a]: sum_i (2i - n - 1) x_i / (n sum x) = (3a + 5a) / (6 * 2a) = 2/3 = (n - k)/n
    np.testing.assert_allclose(out["bit_weight_gini"], 2 / 3, atol=1e-6)


def test_mlp_equal_weights_give_share_k_over_n_and_gini_zero():
    out = parity_measures(mlp_with_bit_weights([0.7] * N_BITS), parity_tokens(), K_BITS)
    np.testing.assert_allclose(out["relevant_weight_share"], K_BITS / N_BITS, atol=1e-6)
    np.testing.assert_allclose(out["bit_weight_gini"], 0.0, atol=1e-6)


def test_mlp_share_is_of_squared_weights():
    # w = [2, 1, 1, 0, 0, 0], k = 2: (4 + 1) / (4 + 1 + 1) = 5/6; gini of sorted [0, 0, 0, 1, 1, 2]:
    # (1*1 + 3*1 + 5*2) / (6 * 4) = 14/24
    out = parity_measures(mlp_with_bit_weights([2, 1, 1, 0, 0, 0]), parity_tokens(), K_BITS)
    np.testing.assert_allclose(out["relevant_weight_share"], 5 / 6, atol=1e-6)
    np.testing.assert_allclose(out["bit_weight_gini"], 14 / 24, atol=1e-6)


def test_mlp_without_any_bit_weight_has_share_zero():
    out = parity_measures(mlp_with_bit_weights([0] * N_BITS), parity_tokens(), K_BITS)
    assert float(out["relevant_weight_share"]) == 0.0
    assert np.isfinite(out["bit_weight_gini"])


def test_mlp_at_init_is_near_k_over_n():
    out = parity_measures(mlp(), parity_tokens(), K_BITS)
    assert 0.05 < float(out["relevant_weight_share"]) < 0.9
    assert 0.0 <= float(out["bit_weight_gini"]) < 0.5


def test_mlp_sum_embedding_has_no_measure():
    model = mlp(Embed.sum)
    assert bit_weights(model, parity_tokens()) is None
    assert parity_measures(model, parity_tokens(), K_BITS) == {}


def set_transformer_attention_on_relevant_bits(model, scale=10.0):
    """Zero token embedding; pos_TD puts e_0 at positions < k and e_1 at the final position; w_q reads e_1 and
    w_k reads e_0, so the final position's score is huge at the relevant positions and 0 (or less) elsewhere."""
    block = model.blocks[0]
    d_model, heads, head_dim = block.w_q_DHK.shape
    model.embed_VD[...] = jnp.zeros_like(model.embed_VD[...])
    pos = np.zeros((SEQ, d_model), np.float32)
    pos[:K_BITS, 0] = 1.0
    pos[-1, 1] = 1.0
    model.pos_TD[...] = jnp.asarray(pos)
    w_q = np.zeros((d_model, heads, head_dim), np.float32)
    w_q[1] = scale
    w_k = np.zeros((d_model, heads, head_dim), np.float32)
    w_k[0] = scale
    block.w_q_DHK[...] = jnp.asarray(w_q)
    block.w_k_DHK[...] = jnp.asarray(w_k)


@pytest.mark.parametrize("layer_norm", [False, True], ids=["no-ln", "ln"])
def test_transformer_attending_to_the_relevant_bits(layer_norm):
    model = transformer(layer_norm)
    set_transformer_attention_on_relevant_bits(model)
    weights = bit_weights(model, parity_tokens())
    assert weights is not None and weights.shape == (N_BITS,)
    np.testing.assert_allclose(weights, [0.5, 0.5, 0, 0, 0, 0], atol=1e-5)
    out = parity_measures(model, parity_tokens(), K_BITS)
    np.testing.assert_allclose(out["relevant_weight_share"], 1.0, atol=1e-5)
    np.testing.assert_allclose(out["bit_weight_gini"], (N_BITS - K_BITS) / N_BITS, atol=1e-5)


def test_transformer_uniform_attention():
    model = transformer()
    block = model.blocks[0]
    block.w_q_DHK[...] = jnp.zeros_like(block.w_q_DHK[...])  # every score 0: attention 1/T everywhere
    np.testing.assert_allclose(bit_weights(model, parity_tokens()), np.full(N_BITS, 1 / SEQ), atol=1e-6)
    out = parity_measures(model, parity_tokens(), K_BITS)
    np.testing.assert_allclose(out["relevant_weight_share"], K_BITS / N_BITS, atol=1e-6)
    np.testing.assert_allclose(out["bit_weight_gini"], 0.0, atol=1e-6)


@pytest.mark.parametrize("layer_norm", [False, True], ids=["no-ln", "ln"])
def test_transformer_weights_equal_the_plain_forward_pass_attention(layer_norm):
    model = transformer(layer_norm)
    tokens = parity_tokens(n_examples=32)
    plain = plain_transformer_internals(model, tokens)["attention_BHT"]  # one block: the first block's
    np.testing.assert_allclose(bit_weights(model, tokens), plain.mean(axis=(0, 1))[:N_BITS], rtol=1e-5, atol=1e-7)


def test_transformer_with_several_blocks_uses_the_first():
    model = transformer(layers=2)
    set_transformer_attention_on_relevant_bits(model)
    np.testing.assert_allclose(bit_weights(model, parity_tokens()), [0.5, 0.5, 0, 0, 0, 0], atol=1e-5)


@pytest.mark.parametrize("kind", ["mlp", "transformer"])
def test_parity_measures_under_jit(kind):
    model = mlp_with_bit_weights([1, 1, 0, 0, 0, 0]) if kind == "mlp" else transformer()
    tokens = parity_tokens()
    eager = parity_measures(model, tokens, K_BITS)
    jitted = jax.jit(parity_measures, static_argnums=2)(model, tokens, K_BITS)
    assert set(jitted) == set(eager)
    for key in eager:
        np.testing.assert_allclose(jitted[key], eager[key], rtol=1e-6, atol=1e-7)
    assert jax.jit(parity_measures, static_argnums=2)(mlp(Embed.sum), tokens, K_BITS) == {}


def test_bad_k_bits():
    with pytest.raises(ValueError, match="k_bits"):
        parity_measures(mlp(), parity_tokens(), N_BITS + 1)
