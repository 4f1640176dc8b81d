"""The task-agnostic signals (grokkit.signals, issue #14): known answers on hand-built cases, the evaluation
recording them for every model, theta_0 from the seed, sweeps stacking theta_0, resume bit-exact."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import TINY
from flax import nnx

from grokkit import signals as S
from grokkit import train as T
from grokkit.bases import SIGNAL_NAMES
from grokkit.config import resolve
from grokkit.group import Member, _member_data, stack_data, train_group
from grokkit.progress import gini
from grokkit.rundir import metrics_record_problem
from grokkit.runner import StopRequest, resume_run, start_run

SMALL = {"model.d_model": 16, "model.heads": 2, "model.d_mlp": 32, "model.width": 32, "train.steps": 10,
         "train.eval_every": 5, "train.checkpoint_every": 10}  # fmt: skip
MLP = {"model.kind": "mlp"}
PARITY_MLP = {"data.task": "sparse-parity", "data.n_bits": 8, "data.k_bits": 3, "data.n_samples": 200, **MLP}


def experiment(overrides=None):
    return T.make_experiment(resolve(None, {**SMALL, **(overrides or {})}))


def evaluated(exp, params=None):
    """(record, host metrics) of the compiled evaluation at `params` (default: the initial state)."""
    data = exp.device_data()
    params = T.init_state(exp).params if params is None else params
    metrics = jax.device_get(jax.jit(lambda p: T.evaluate(exp, p, data))(params))
    record = T.eval_record(metrics, 0, 0.0, exp.basis)
    json.dumps(record)
    return record, metrics


def with_leaves(params, change):
    """params with `change(path_name, leaf)` applied to every leaf."""
    return jax.tree_util.tree_map_with_path(lambda path, leaf: change(T._leaf_name(path), leaf), params)


# --- effective rank ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("r", [1, 2, 5, 8])
def test_effective_rank_of_r_equal_singular_values_is_r(r):
    rng = np.random.default_rng(r)
    u, _ = np.linalg.qr(rng.normal(size=(20, 20)))
    v, _ = np.linalg.qr(rng.normal(size=(12, 12)))
    matrix = 2.5 * u[:, :r] @ v[:r]  # rank r, every non-zero singular value 2.5
    assert float(S.effective_rank(jnp.asarray(matrix, jnp.float32))) == pytest.approx(r, rel=1e-4)


@pytest.mark.parametrize("shape", [(97, 16), (16, 97), (7, 3), (3, 7), (5, 5), (1, 4), (4, 1), (80, 200), (31, 31)])
def test_singular_values_match_lapack(shape):
    rng = np.random.default_rng(sum(shape))
    matrix = rng.normal(size=shape).astype(np.float32)
    expected = np.linalg.svd(matrix.astype(np.float64), compute_uv=False)
    got = np.asarray(jax.jit(S.singular_values)(jnp.asarray(matrix)))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=2e-6 * expected[0])


def test_singular_values_of_graded_and_rank_deficient_matrices():
    rng = np.random.default_rng(0)
    q1, _ = np.linalg.qr(rng.normal(size=(60, 60)))
    q2, _ = np.linalg.qr(rng.normal(size=(40, 40)))
    sigma = np.logspace(0, -4, 40)  # four decades
    got = np.asarray(S.singular_values(jnp.asarray((q1[:, :40] * sigma) @ q2, jnp.float32)))
    np.testing.assert_allclose(got, sigma, atol=2e-6)
    low = (q1[:, :3] * [5.0, 2.0, 1.0]) @ q2[:3]  # rank 3 of 40 columns: the other 37 are ~0, not sqrt(eps)
    got = np.asarray(S.singular_values(jnp.asarray(low, jnp.float32)))
    np.testing.assert_allclose(got[:3], [5.0, 2.0, 1.0], rtol=2e-6)
    assert np.max(got[3:]) < 1e-5
    assert float(jnp.max(S.singular_values(jnp.zeros((6, 4))))) == 0.0
    batched = jax.vmap(S.singular_values)(jnp.asarray(rng.normal(size=(3, 9, 5)), jnp.float32))  # sweeps vmap
    assert batched.shape == (3, 5)


def test_effective_rank_by_formula_and_of_zero():
    matrix = jnp.asarray([[3.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # singular values (3, 1)
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))  # ~1.7548
    assert float(S.effective_rank(matrix)) == pytest.approx(expected, rel=1e-6)
    assert float(S.effective_rank(jnp.zeros((4, 3)))) == 0.0


def test_embed_eff_rank_reads_the_first_layer():
    exp = experiment()
    transformer = nnx.merge(exp.graphdef, T.init_state(exp).params)
    assert S.first_layer_matrix(transformer, exp.dataset.n_values).shape == (97, 16)  # the operands' embedding
    exp = experiment(PARITY_MLP)
    mlp = nnx.merge(exp.graphdef, T.init_state(exp).params)
    # one row per (operand position, value): [8 * 2, width], not operand_embedding's [2, 8 * width]
    assert S.first_layer_matrix(mlp, exp.dataset.n_values).shape == (8 * 2, 32)
    assert 2 < float(S.embed_eff_rank(mlp, exp.dataset.n_values)) <= 16


# --- neuron Gini ---------------------------------------------------------------------------------------------


def test_neuron_gini_of_known_norms_on_hand_built_transformer():
    exp = experiment({"model.d_mlp": 4})
    a = np.array([3.0, 1.0, 2.0, 0.5])  # incoming norms: column j of w_in is a_j e_0, bias b_j
    bias = np.array([4.0, 0.0, 0.0, 0.0])  # unit 0's incoming norm is |(3, 4)| = 5
    out = np.array([1.0, 2.0, 1.5, 8.0])  # outgoing norms: row j of w_out is out_j e_1

    def set_block(name, leaf):
        if name == "blocks/0/w_in_DF/value":
            return jnp.zeros_like(leaf).at[0].set(a)
        if name == "blocks/0/b_in_F/value":
            return jnp.asarray(bias, leaf.dtype)
        if name == "blocks/0/w_out_FD/value":
            return jnp.zeros_like(leaf).at[:, 1].set(out)
        return leaf

    params = with_leaves(T.init_state(exp).params, set_block)
    model = nnx.merge(exp.graphdef, params)
    norms = np.array([5.0, 2.0, 3.0, 4.0])  # (5 * 1, 1 * 2, 2 * 1.5, 0.5 * 8)
    np.testing.assert_allclose(S.neuron_norms(model, exp.dataset.n_values), norms, rtol=1e-6)
    # Gini of {2, 3, 4, 5}: sum((2i - n - 1) x_(i)) / (n sum x) = (-3*2 - 3 + 4 + 3*5) / (4 * 14) = 10 / 56
    assert float(S.neuron_gini(model, exp.dataset.n_values)) == pytest.approx(10 / 56, rel=1e-6)
    assert float(gini(jnp.asarray(norms))) == pytest.approx(10 / 56, rel=1e-6)
    record, _ = evaluated(exp, params)
    assert record["neuron_gini"] == pytest.approx(10 / 56, rel=1e-6)


def test_neuron_gini_on_hand_built_mlp_uses_operand_rows_and_the_next_layer():
    exp = experiment({**MLP, "model.width": 4, "model.depth": 2})
    n_values = exp.dataset.n_values  # 97: the "=" token's row (index 97) never reaches the network
    embed = np.zeros((2, exp.dataset.vocab_size, 4), np.float32)
    embed[0, 5, 3] = 4.0  # one unit holds everything: norms (0, 0, 0, 4 * 2)
    embed[1, n_values, :] = 100.0  # ignored: not an operand value

    def set_layers(name, leaf):
        if name == "embed_OVF/value":
            return jnp.asarray(embed)
        if name == "b_embed_F/value":
            return jnp.zeros_like(leaf)
        if name == "hidden/0/kernel/value":  # the next layer, not `out`
            return jnp.full_like(leaf, 1.0)  # outgoing norm 2 for every unit
        return leaf

    model = nnx.merge(exp.graphdef, with_leaves(T.init_state(exp).params, set_layers))
    np.testing.assert_allclose(S.neuron_norms(model, n_values), [0, 0, 0, 8], rtol=1e-6)
    assert float(S.neuron_gini(model, n_values)) == pytest.approx(3 / 4, rel=1e-6)  # (n - 1) / n


# --- softmax collapse ----------------------------------------------------------------------------------------


def test_softmax_collapse_fraction_on_chosen_logits():
    logits = jnp.asarray(
        [
            [200.0, 0.0, 0.0],  # right by 200: float32 loss exactly 0
            [0.0, 20.0, 0.0],  # right by 20: 1 + 2 e^-20 rounds to 1, exactly 0 too
            [1.0, 0.0, 0.0],  # right by 1: log(1 + 2/e) > 0
            [0.0, 0.0, 200.0],  # wrong by 200: loss 200
            [0.0, 0.0, 0.0],  # uniform: log 3
        ]
    )
    labels = jnp.asarray([0, 1, 0, 0, 1])
    assert float(S.softmax_collapse(logits, labels)) == pytest.approx(2 / 5)
    assert float(S.softmax_collapse(logits[2:], labels[2:])) == 0.0
    # float64 logits are cast to float32 first: a 20 margin still collapses
    with jax.enable_x64(True):
        assert float(S.softmax_collapse(jnp.asarray(logits[:2], jnp.float64), labels[:2])) == 1.0


def test_softmax_collapse_in_the_evaluation_uses_the_training_examples():
    exp = experiment({"data.p": 11, "data.train_frac": 0.5})
    params = T.init_state(exp).params
    # an unembedding that makes the logits huge: every example is either collapsed or badly wrong
    params = with_leaves(params, lambda name, leaf: leaf * 1e4 if name == "unembed_DC/value" else leaf)
    record, _ = evaluated(exp, params)
    data = exp.device_data()
    logits = nnx.merge(exp.graphdef, params)(data.train.tokens_BT)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, data.train.labels_B)
    expected = float(np.mean(np.asarray(loss) == 0))
    assert record["softmax_collapse"] == pytest.approx(expected, abs=1e-7)
    assert 0 < record["softmax_collapse"] == pytest.approx(record["train_acc"], abs=1e-7)


# --- distance from initialization ----------------------------------------------------------------------------


@pytest.mark.parametrize("overrides", [{}, MLP], ids=["transformer", "mlp"])
def test_distance_from_init_after_a_known_update(overrides):
    exp = experiment(overrides)
    init = T.init_state(exp).params
    first = "unembed_DC/value" if not overrides else "out/kernel/value"

    def update(name, leaf):
        if name == first:
            return leaf.at[(0,) * leaf.ndim].add(3.0)
        if name == "pos_TD/value" or name == "out/bias/value":
            return leaf.at[(1,) * leaf.ndim].add(-4.0)
        return leaf

    moved = with_leaves(init, update)
    assert float(S.distance_from_init(moved, init)) == pytest.approx(5.0, rel=1e-6)
    assert float(S.distance_from_init(init, init)) == 0.0
    record, _ = evaluated(exp, moved)  # the evaluation's theta_0 is the seed's initialization
    assert record["dist_from_init"] == pytest.approx(5.0, rel=1e-6)
    assert evaluated(exp)[0]["dist_from_init"] == 0.0


def test_theta_0_is_the_seed_initialization_bit_for_bit():
    for overrides in ({}, {"seed": 3, "model.init_scale": 0.5}, {**MLP, "seed": 1}):
        exp = experiment(overrides)
        expected = T.make_init_fn(exp)(exp.config).params
        got = exp.device_data().init_params
        assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True))
    # one compiled initializer per structure: seeds, init scales and learning rates share it
    before = len(T._INIT_FNS)
    for seed in (5, 6):
        T.initial_params(experiment({"seed": seed, "optim.lr": 1e-2 * seed, "model.init_scale": seed / 4}))
    assert len(T._INIT_FNS) == before


# --- gradient / parameter cosine -----------------------------------------------------------------------------


def test_tree_cosine_known_values():
    theta = {"a": jnp.asarray([1.0, 2.0]), "b": jnp.asarray([[3.0], [-1.0]])}
    scale = lambda tree, c: jax.tree.map(lambda x: c * x, tree)  # noqa: E731
    assert float(S.grad_cosine(scale(theta, -2.0), theta)) == pytest.approx(-1.0, abs=1e-6)  # anti-parallel
    assert float(S.grad_cosine(scale(theta, 1e-30), theta)) == pytest.approx(1.0, abs=1e-6)  # no underflow
    assert float(S.grad_cosine(scale(theta, -1e-35), theta)) == pytest.approx(-1.0, abs=1e-6)
    orthogonal = {"a": jnp.asarray([2.0, -1.0]), "b": jnp.asarray([[0.0], [0.0]])}
    assert float(S.grad_cosine(orthogonal, theta)) == pytest.approx(0.0, abs=1e-7)
    assert float(S.grad_cosine(scale(theta, 0.0), theta)) == 0.0  # a zero gradient (total collapse): 0
    # (1, 1) against (1, 0): 1/sqrt(2), across leaves
    assert float(S.tree_cosine({"a": jnp.ones(1), "b": jnp.ones(1)}, {"a": jnp.ones(1), "b": jnp.zeros(1)})) == (
        pytest.approx(1 / math.sqrt(2), rel=1e-6)
    )


@pytest.mark.parametrize("n, chunk", [(10, 10), (10, 3), (10, 5), (10, 16), (7, 7), (1000, 64)])
def test_full_batch_gradient_in_chunks_is_the_gradient_of_the_mean(n, chunk):
    rng = np.random.default_rng(n + chunk)
    params = {"w": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32), "b": jnp.asarray(rng.normal(size=3), jnp.float32)}
    tokens = jnp.asarray(rng.normal(size=(n, 4)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 3, size=n))

    def batch_loss(p, x, y):
        return T.loss_and_accuracy(x @ p["w"] + p["b"], y)[0]

    direct = jax.grad(batch_loss)(params, tokens, labels)
    chunked = jax.jit(lambda p: S.full_batch_gradient(batch_loss, p, tokens, labels, chunk))(params)
    for name in params:
        np.testing.assert_allclose(chunked[name], direct[name], rtol=1e-5, atol=1e-7)


def test_gradient_chunk_rule():
    assert S.gradient_chunk(None, 3293) == 3293  # full batch: the whole training set at once
    assert S.gradient_chunk(32, 1000) == S.GRADIENT_CHUNK == 64
    assert S.gradient_chunk(512, 1000) == 512 and S.gradient_chunk(32, 50) == 50


def test_grad_cosine_is_minus_one_when_the_gradient_is_anti_parallel():
    """A correct linear model that can only scale its logits: example i is one-hot input i, its logits
    W e_i = d_i e_i with W = diag(d), the parameters d = (c, ..., c). Every example's loss is
    -log(e^c / (e^c + C - 1)), so dL/dd_i = -(1 - q) / C for all i (q the right class's probability): the
    gradient is exactly -(1 - q) / (C c) * theta, anti-parallel (descent only scales the weights up)."""
    c, classes = 2.0, 5
    diag = jnp.full((classes,), c)

    def loss(d):
        logits = jnp.diag(d)  # example i has one-hot input i: logits = W e_i, W = diag(d)
        return T.loss_and_accuracy(logits, jnp.arange(classes))[0]

    grads = jax.grad(loss)(diag)
    assert float(S.grad_cosine(grads, diag)) == pytest.approx(-1.0, abs=1e-6)


@pytest.mark.parametrize(
    "overrides",
    [{"data.p": 11, "data.train_frac": 0.5}, {**MLP, "optim.batch_size": 16}, {"train.loss": "stablemax"}, PARITY_MLP],
    ids=["transformer", "mlp-minibatch", "stablemax", "parity-mlp"],
)
def test_grad_cosine_equals_a_direct_computation(overrides):
    exp = experiment(overrides)
    state, data = T.init_state(exp), exp.device_data()
    state, _ = T.make_chunk_fn(exp)(state, data, 5)  # away from the initialization
    record, _ = evaluated(exp, state.params)

    def full_batch_loss(params):
        return exp.loss(nnx.merge(exp.graphdef, params)(data.train.tokens_BT), data.train.labels_B)[0]

    grads = jax.jit(jax.grad(full_batch_loss))(state.params)
    g = np.concatenate([np.ravel(x) for x in jax.tree.leaves(grads)]).astype(np.float64)
    theta = np.concatenate([np.ravel(x) for x in jax.tree.leaves(state.params)]).astype(np.float64)
    direct = g @ theta / (np.linalg.norm(g) * np.linalg.norm(theta))
    assert record["grad_cosine"] == pytest.approx(direct, abs=1e-5)
    assert abs(direct) > 1e-4  # a real test: the cosine is not 0 by accident


# --- the evaluation records them for every task and model ----------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [{}, MLP, {**MLP, "model.embed": "sum", "model.bias": False}, PARITY_MLP, {"data.task": "rand"},
     {"data.task": "sparse-parity", "data.n_bits": 8, "data.k_bits": 3, "data.n_samples": 200},
     {"model.layers": 2, "model.layer_norm": True}],
    ids=["transformer", "mlp", "mlp-sum-nobias", "parity-mlp", "rand", "parity-transformer", "two-layers-ln"],
)  # fmt: skip
def test_evaluation_records_every_signal(overrides):
    exp = experiment(overrides)
    record, _ = evaluated(exp)
    assert set(SIGNAL_NAMES) <= record.keys()
    assert all(isinstance(record[name], float) and math.isfinite(record[name]) for name in SIGNAL_NAMES)
    assert not metrics_record_problem(record)
    assert record["dist_from_init"] == 0.0 and record["softmax_collapse"] == 0.0  # at initialization
    model = nnx.merge(exp.graphdef, T.init_state(exp).params)
    last = np.sqrt(sum(np.sum(np.square(np.asarray(w, np.float64))) for w in S.output_layer(model)))
    assert record["last_layer_norm"] == pytest.approx(last, rel=1e-5)
    assert 0 < record["neuron_gini"] < 1
    assert 1 < record["embed_eff_rank"] <= min(S.first_layer_matrix(model, exp.dataset.n_values).shape)
    assert -1 <= record["grad_cosine"] <= 1


def test_a_record_with_a_signal_that_is_not_a_number_is_refused():
    record = {"step": 1, "train_loss": 1.0, "train_acc": 0.5, "val_loss": 1.0, "val_acc": 0.5, "param_norm": 1.0}
    assert metrics_record_problem({**record, "grad_cosine": -0.5}) == ""
    assert metrics_record_problem({**record, "grad_cosine": "x"}) == "grad_cosine must be a number, got 'x'"
    assert metrics_record_problem({**record}) == ""  # runs recorded before the signals stay readable


# --- sweeps: each member's own theta_0 -----------------------------------------------------------------------


def members(configs):
    out = []
    for overrides in configs:
        exp = T.make_experiment(resolve(None, {**TINY, **overrides}))
        out.append(Member(exp, T.init_state(exp), T.Lane(T.RunSink(), [], 0)))
    return out


def test_stack_data_stacks_theta_0_per_seed_and_shares_it_when_equal():
    group = members([{"seed": 0}, {"seed": 1}])
    stacked, axes = stack_data(group)
    assert axes.init_params == 0
    for i, member in enumerate(group):
        own = member.exp.device_data().init_params
        mine = jax.tree.map(lambda leaf, i=i: leaf[i], stacked.init_params)
        assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(mine), jax.tree.leaves(own), strict=True))
    same_seed = members([{"optim.lr": 1e-2}, {"optim.lr": 3e-3}])
    shared, axes = stack_data(same_seed)
    assert axes.init_params is None
    assert jax.tree.leaves(shared.init_params)[0].shape == jax.tree.leaves(same_seed[0].state.params)[0].shape
    # one by one: the same device buffers only when equal
    device = jax.devices()[0]

    def same_buffers(a, b):
        pairs = zip(jax.tree.leaves(a.init_params), jax.tree.leaves(b.init_params), strict=True)
        return all(x.unsafe_buffer_pointer() == y.unsafe_buffer_pointer() for x, y in pairs)

    first = _member_data(group[0].exp, device, None)
    assert not same_buffers(_member_data(group[1].exp, device, first), first)
    lr_first = _member_data(same_seed[0].exp, device, None)
    assert same_buffers(_member_data(same_seed[1].exp, device, lr_first), lr_first)


@pytest.mark.parametrize("vectorize", [False, True], ids=["one-by-one", "vectorized"])
def test_sweep_members_record_their_own_distance(vectorize):
    configs = [{"seed": 0}, {"seed": 1}, {"seed": 1, "optim.lr": 3e-3}]
    group = members(configs)
    train_group(group, vectorize=vectorize)
    for member, fresh in zip(group, members(configs), strict=True):
        alone, swept = T.fit(fresh.exp, fresh.state).history, member.lane.history
        assert [r["step"] for r in swept] == [r["step"] for r in alone]
        for a, b in zip(swept, alone, strict=True):
            for name in SIGNAL_NAMES:
                if vectorize:  # vmap reorders float32 sums
                    assert a[name] == pytest.approx(b[name], rel=1e-4, abs=1e-5), name
                else:
                    assert a[name] == b[name], name


# --- resume ----------------------------------------------------------------------------------------------------


def test_resumed_run_records_the_same_signals_bit_for_bit(tmp_path):
    config = resolve(None, {**TINY, **MLP, "model.width": 32, "optim.batch_size": 16, "train.early_exit": False})
    straight = start_run(config, tmp_path / "straight")
    stop = StopRequest()

    def on_eval(record):
        if record["step"] >= 30:
            stop.signal = 2

    assert start_run(config, tmp_path / "cut", stop=stop, on_eval=on_eval).reason == "interrupted"
    resume_run(tmp_path / "cut")
    from grokkit.rundir import RunDir

    def signal_records(path):
        return [{k: r[k] for k in ("step", *SIGNAL_NAMES)} for r in RunDir.open(path).read_metrics().records]

    assert straight.reason == "budget"
    assert signal_records(tmp_path / "cut") == signal_records(tmp_path / "straight")
    assert len(signal_records(tmp_path / "straight")) == 4
    assert signal_records(tmp_path / "straight")[-1]["dist_from_init"] > 0
