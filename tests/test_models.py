import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from grokkit.config import Activation, Embed, ModelConfig, ModelKind
from grokkit.models import SHORT_SEQUENCE, activation_fn, attention_scores, build_model, mix_values
from grokkit.reference import plain_transformer_logits

VOCAB, SEQ, CLASSES, BATCH = 14, 3, 13, 7


def tokens(batch=BATCH, seq=SEQ, vocab=VOCAB):
    rng = np.random.default_rng(0)
    t = rng.integers(0, vocab - 1, (batch, seq)).astype(np.int32)
    t[:, -1] = vocab - 1
    return jnp.asarray(t)


@pytest.mark.parametrize(
    "cfg",
    [
        ModelConfig(d_model=16, heads=2, d_mlp=32),
        ModelConfig(layers=2, d_model=16, heads=4, d_mlp=32, layer_norm=True, activation=Activation.gelu),
        ModelConfig(layers=3, d_model=8, heads=1, d_mlp=16),
        ModelConfig(kind=ModelKind.mlp, width=24, depth=2, activation=Activation.quadratic, bias=False),
        ModelConfig(kind=ModelKind.mlp, width=24, embed=Embed.sum),
    ],
    ids=["transformer-1", "transformer-2-ln", "transformer-3", "mlp-quadratic", "mlp-sum"],
)
def test_shapes_and_finiteness(cfg):
    model = build_model(cfg, VOCAB, SEQ, CLASSES, seed=0)
    logits = model(tokens())
    assert logits.shape == (BATCH, CLASSES)
    assert jnp.isfinite(logits).all()


def test_sum_embedding_is_symmetric_in_the_operands():
    model = build_model(ModelConfig(kind=ModelKind.mlp, width=24, embed=Embed.sum), VOCAB, SEQ, CLASSES, seed=0)
    t = tokens()
    swapped = t.at[:, 0].set(t[:, 1]).at[:, 1].set(t[:, 0])
    np.testing.assert_allclose(model(t), model(swapped), rtol=1e-6)


def test_quadratic_activation():
    assert activation_fn(Activation.quadratic)(jnp.array([-3.0, 2.0])).tolist() == [9.0, 4.0]


@pytest.mark.parametrize(
    ("layers", "layer_norm", "batch"),
    [(1, False, 32), (1, True, 32), (1, False, 256), (1, True, 256), (2, False, 32), (2, True, 32), (3, False, 32)],
)
def test_fast_transformer_equals_plain_implementation(layers, layer_norm, batch):
    """Batch 256 takes the attention-score-table path (vocab^2 <= batch * head_dim), 32 the per-example one."""
    cfg = ModelConfig(layers=layers, d_model=16, heads=4, d_mlp=32, layer_norm=layer_norm)
    model = build_model(cfg, VOCAB, SEQ, CLASSES, seed=1)
    t = tokens(batch=batch)
    np.testing.assert_allclose(model(t), plain_transformer_logits(model, t), rtol=1e-5, atol=1e-5)

    graphdef, params = nnx.split(model)
    grads_fast = jax.grad(lambda p: nnx.merge(graphdef, p)(t).sum())(params)
    grads_plain = jax.grad(lambda p: plain_transformer_logits(nnx.merge(graphdef, p), t).sum())(params)
    for fast, plain in zip(jax.tree.leaves(grads_fast), jax.tree.leaves(grads_plain), strict=True):
        np.testing.assert_allclose(fast, plain, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("layers", [1, 2])
def test_fast_transformer_equals_plain_over_a_long_sequence(layers):
    """Over more than SHORT_SEQUENCE positions attention keeps the batched dot."""
    seq = SHORT_SEQUENCE + 4
    model = build_model(ModelConfig(layers=layers, d_model=16, heads=4, d_mlp=32), VOCAB, seq, CLASSES, seed=2)
    t = tokens(batch=32, seq=seq)
    np.testing.assert_allclose(model(t), plain_transformer_logits(model, t), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seq", [3, SHORT_SEQUENCE + 1])
def test_per_position_attention_equals_the_einsum(seq):
    rng = np.random.default_rng(3)
    k_BTHK, v_BTHK = (jnp.asarray(rng.normal(size=(5, seq, 2, 4)), jnp.float32) for _ in range(2))
    q_BHK, q_BTHK = jnp.asarray(rng.normal(size=(5, 2, 4)), jnp.float32), jnp.asarray(rng.normal(size=(5, seq, 2, 4)))
    np.testing.assert_allclose(
        attention_scores(q_BHK, k_BTHK), jnp.einsum("bhk,bthk->bht", q_BHK, k_BTHK) / 2, rtol=1e-6
    )
    scores_BTHS = jnp.einsum("bqhk,bshk->bqhs", q_BTHK, k_BTHK) / 2
    np.testing.assert_allclose(attention_scores(q_BTHK, k_BTHK), scores_BTHS, rtol=1e-5, atol=1e-6)
    p_BTHS = jax.nn.softmax(scores_BTHS, -1)
    np.testing.assert_allclose(
        mix_values(p_BTHS, v_BTHK), jnp.einsum("bqhs,bshk->bqhk", p_BTHS, v_BTHK), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        mix_values(p_BTHS[:, -1], v_BTHK), jnp.einsum("bhs,bshk->bhk", p_BTHS[:, -1], v_BTHK), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize(("preset", "layers", "layer_norm"), [("nanda2023", 1, False), ("power2022", 2, True)])
def test_nanda_and_power_architectures_are_expressible(preset, layers, layer_norm):
    from grokkit.config import resolve

    cfg = resolve(preset).model
    model = nnx.eval_shape(lambda: build_model(cfg, 114, 3, 113, seed=0))
    assert len(model.blocks) == layers
    assert (model.ln_final is not None) == layer_norm
    assert model.blocks[0].w_q_DHK.shape == (128, 4, 32)
    assert model.blocks[0].w_in_DF.shape == (128, 512)
