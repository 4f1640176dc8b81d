"""Grokking interventions: Grokfast EMA/MA, ⊥Grad, decay toward init, StableMax and MSE, loss precision, init scale."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from grokkit import optim
from grokkit import train as T
from grokkit.config import Loss, LossDtype, resolve

FINITE = st.floats(-10, 10, allow_nan=False, width=32)


def run_transform(tx, grads: list[np.ndarray], params: np.ndarray | None = None) -> list[np.ndarray]:
    params = jnp.zeros_like(grads[0]) if params is None else params
    state = tx.init(params)
    outputs = []
    for g in grads:
        out, state = tx.update(jnp.asarray(g), state, params)
        outputs.append(np.asarray(out))
    return outputs


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 12), alpha=st.floats(0.0, 0.99), lam=st.floats(0.0, 5.0), seed=st.integers(0, 99))
def test_grokfast_ema_matches_the_closed_form(n, alpha, lam, seed):
    grads = list(np.random.default_rng(seed).normal(size=(n, 5)).astype(np.float32))
    out = run_transform(optim.grokfast_ema(alpha, lam), grads)
    # mu_n = alpha^(n-1) g_1 + sum_{k=2..n} (1 - alpha) alpha^(n-k) g_k  (mu starts at the first gradient)
    mu = alpha ** (n - 1) * grads[0].astype(np.float64)
    for k in range(2, n + 1):
        mu += (1 - alpha) * alpha ** (n - k) * grads[k - 1]
    np.testing.assert_allclose(out[-1], grads[-1] + lam * mu, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("window", [1, 3, 5])
def test_grokfast_ma_adds_the_window_mean_once_full(window):
    grads = list(np.random.default_rng(window).normal(size=(9, 4)).astype(np.float32))
    out = run_transform(optim.grokfast_ma(window, 5.0), grads)
    for n in range(1, 10):
        expected = grads[n - 1] if n < window else grads[n - 1] + 5.0 * np.mean(grads[n - window : n], axis=0)
        np.testing.assert_allclose(out[n - 1], expected, rtol=1e-5, atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(w=arrays(np.float32, (3, 4), elements=FINITE), g=arrays(np.float32, (3, 4), elements=FINITE))
def test_orthograd_is_orthogonal_to_the_weights_and_keeps_the_norm(w, g):
    w_norm, g_norm = np.linalg.norm(w), np.linalg.norm(g)
    cos = abs(float(np.vdot(w, g))) / (w_norm * g_norm + 1e-12)
    if w_norm < 1e-3 or g_norm < 1e-3 or cos > 0.999:
        return  # the projection is ill-conditioned; the paper's formula is undefined there too
    (out,) = run_transform(optim.orthogonal_gradient(), [g], params=jnp.asarray(w))
    assert abs(float(np.vdot(out, w))) <= 1e-4 * np.linalg.norm(out) * w_norm + 1e-6
    assert np.linalg.norm(out) == pytest.approx(g_norm, rel=1e-4)


def test_decay_toward_init_pulls_back_to_the_initial_weights():
    tx = optim.decay_toward_init(0.5)
    w0 = jnp.array([1.0, -2.0])
    state = tx.init(w0)
    zero = jnp.zeros(2)
    out, state = tx.update(zero, state, w0)
    np.testing.assert_allclose(out, [0.0, 0.0])
    out, _ = tx.update(zero, state, w0 + jnp.array([2.0, 2.0]))
    np.testing.assert_allclose(out, [1.0, 1.0])


@settings(max_examples=40, deadline=None)
@given(x=arrays(np.float32, (7,), elements=st.floats(-1e4, 1e4, allow_nan=False, width=32)))
def test_stablemax_is_a_monotone_distribution(x):
    probs = np.exp(np.asarray(T.log_stablemax(jnp.asarray(x)[None]))[0].astype(np.float64))
    assert probs.sum() == pytest.approx(1.0, rel=1e-4)
    assert np.all(probs > 0)
    order = np.argsort(x, kind="stable")
    assert np.all(np.diff(probs[order]) >= -1e-7)


def test_losses_agree_with_their_formulas():
    logits = jnp.array([[2.0, -1.0, 0.0], [0.0, 0.0, 5.0]])
    labels = jnp.array([0, 1])
    s = np.array([[3.0, 0.5, 1.0], [1.0, 1.0, 6.0]])  # s(x) = x + 1 (x >= 0), 1 / (1 - x) (x < 0)
    expected = -np.mean(np.log([s[0, 0] / s[0].sum(), s[1, 1] / s[1].sum()]))
    loss, acc = T.loss_and_accuracy(logits, labels, Loss.stablemax)
    assert float(loss) == pytest.approx(expected, rel=1e-6) and float(acc) == 0.5
    mse, _ = T.loss_and_accuracy(jax.nn.one_hot(labels, 3), labels, Loss.mse)
    assert float(mse) == 0.0
    assert float(T.loss_and_accuracy(logits, labels, Loss.mse)[0]) == pytest.approx((1 + 1 + 1 + 25) / 2)
    f32, _ = T.loss_and_accuracy(logits, labels)
    with jax.enable_x64(True):
        f64, _ = T.loss_and_accuracy(logits, labels, Loss.softmax, LossDtype.float64)
    assert float(f64) == pytest.approx(float(f32), rel=1e-6)


def test_float64_loss_keeps_the_state_in_float32(tiny_config):
    config = tiny_config(train__loss_dtype="float64", train__steps=20)
    exp = T.make_experiment(config)
    state = T.fit(exp, T.init_state(exp)).state
    assert {leaf.dtype for leaf in jax.tree.leaves(state.params)} == {jnp.dtype("float32")}
    with jax.enable_x64(True):
        jaxpr = str(jax.make_jaxpr(lambda s: T.train_step(exp, s, exp.device_data().train))(state))
    assert "f64[" in jaxpr
    reference = T.fit(exp := T.make_experiment(tiny_config(train__steps=20)), T.init_state(exp)).history[-1]
    history = T.fit(T.make_experiment(config), T.init_state(T.make_experiment(config))).history
    assert history[-1]["train_loss"] == pytest.approx(reference["train_loss"], rel=1e-3)


def test_init_scale_multiplies_every_initial_weight(tiny_config):
    one = T.init_state(T.make_experiment(tiny_config()))
    eight = T.init_state(T.make_experiment(tiny_config(model__init_scale=8.0)))
    for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(eight.params), strict=True):
        np.testing.assert_allclose(np.asarray(b), 8.0 * np.asarray(a), rtol=1e-6)


@pytest.mark.parametrize(
    "overrides",
    [
        {"optim.grokfast": "ema"},
        {"optim.grokfast": "ma", "optim.grokfast_window": 3},
        {"optim.orthograd": True},
        {"optim.decay_to": "init"},
        {"train.loss": "stablemax"},
        {"train.loss": "mse", "optim.name": "sgd", "optim.momentum": 0.9},
    ],
)
def test_each_intervention_trains_and_is_recorded(tiny_config, overrides):
    config = tiny_config(**{k.replace(".", "__"): v for k, v in overrides.items()})
    for key, value in overrides.items():
        section, name = key.split(".")
        assert config.to_dict()[section][name] == value
    exp = T.make_experiment(config)
    history = T.fit(exp, T.init_state(exp)).history
    assert history[-1]["train_acc"] > history[0]["train_acc"] or history[-1]["train_acc"] == 1.0


def test_presets_resolve_and_cite_their_source():
    from grokkit.presets import PRESETS

    for name, preset in PRESETS.items():
        assert re.search(r"\b(19|20)\d\d\b", preset.source), f"{name}: its source names no year"
        resolve(name)
    assert resolve("grokfast2024").optim.grokfast == "ema" and resolve("prieto2025-orthograd").optim.orthograd


def test_resume_is_bit_exact_with_filter_state_in_the_checkpoint(tmp_path):
    from conftest import TINY

    from grokkit.checkpoint import list_checkpoints, load_checkpoint
    from grokkit.runner import resume_run, start_run

    overrides = {**TINY, "optim.grokfast": "ma", "optim.grokfast_window": 4, "optim.orthograd": True,
                 "optim.decay_to": "init", "train.early_exit": False}  # fmt: skip
    start_run(resolve(None, {**overrides, "train.steps": 40}), tmp_path / "straight")
    start_run(resolve(None, {**overrides, "train.steps": 20}), tmp_path / "split")
    resume_run(tmp_path / "split", steps=40)
    straight, split = (
        load_checkpoint(list_checkpoints(tmp_path / n / "checkpoints")[-1])[0] for n in ("straight", "split")
    )
    assert any("window" in key for key in straight) and any("init_params" in key for key in straight)
    assert straight.keys() == split.keys() and all(np.array_equal(straight[k], split[k]) for k in straight)


@pytest.mark.parametrize(("adam_eps", "expected"), [(1e-8, 1e-12 / (1e-12 + 1e-8)), (1e-25, 1.0)])
def test_adam_epsilon_sets_the_size_of_an_update_from_tiny_gradients(adam_eps, expected):
    # Prieto et al.'s code uses eps 1e-25: with gradients near 1e-12 (a memorized net), eps 1e-8 shrinks every
    # step ~10,000x; the first bias-corrected Adam step is g / (|g| + eps) per element
    cfg = resolve(None, {"optim.adam_eps": adam_eps, "optim.wd": 0.0, "optim.warmup": 0, "optim.lr": 1.0}).optim
    tx = optim.build_optimizer(cfg)
    params = {"w": jnp.ones(3)}
    updates, _ = tx.update({"w": jnp.full(3, 1e-12)}, tx.init(params), params)
    np.testing.assert_allclose(-np.asarray(updates["w"]), expected, rtol=1e-3)


@pytest.mark.parametrize(
    ("value", "fragment"), [("0", "> 0"), ("1e-50", "0 in float32"), ("1e400", "finite"), ("abc", "expected float")]
)
def test_a_bad_adam_eps_is_one_line_exit_2(tmp_path, value, fragment):
    from typer.testing import CliRunner

    from grokkit.cli import app

    result = CliRunner().invoke(app, ["train", "--adam-eps", value, "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert "--adam-eps" in result.stderr and fragment in result.stderr
    assert result.stderr.strip().count("\n") == 0 and not (tmp_path / "run").exists()
