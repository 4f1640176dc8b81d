"""--output-scale (Kumar et al. 2024): alpha * (f_theta - f_theta0), trained on the loss / alpha^2, and the relative
weight change recorded at every evaluation."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx
from typer.testing import CliRunner

import grokkit.train as T
from grokkit.cli import app

SGD = {"model__kind": "mlp", "model__width": 16, "optim__name": "sgd", "optim__wd": 0.0, "optim__warmup": 0,
       "train__loss": "mse", "train__steps": 20}  # fmt: skip


def test_at_alpha_one_the_outputs_are_the_plain_model_minus_its_initial_outputs(tiny_config):
    plain = T.make_experiment(tiny_config(**SGD))
    scaled = T.make_experiment(tiny_config(**SGD, model__output_scale=1.0))
    data = plain.device_data()
    state = T.fit(plain, T.init_state(plain)).state  # trained weights, so f_theta != f_theta0
    tokens = data.every.tokens_BT
    f_theta = nnx.merge(plain.graphdef, state.params)(tokens)
    f_theta0 = nnx.merge(plain.graphdef, data.init_params)(tokens)
    np.testing.assert_allclose(scaled.outputs(state.params, data.init_params, tokens), f_theta - f_theta0, atol=1e-6)
    np.testing.assert_array_equal(plain.outputs(state.params, None, tokens), f_theta)
    assert not np.allclose(f_theta0, 0.0, atol=1e-3)
    assert np.all(scaled.outputs(data.init_params, data.init_params, tokens) == 0.0)  # centred: 0 at init
    four = T.make_experiment(tiny_config(**SGD, model__output_scale=4.0))
    np.testing.assert_allclose(
        four.outputs(state.params, data.init_params, tokens), 4 * (f_theta - f_theta0), rtol=1e-5
    )


@pytest.mark.parametrize("alpha", [4.0, 0.25])
def test_the_first_sgd_step_moves_the_weights_one_over_alpha_as_far(tiny_config, alpha):
    """At theta_0 the centred output is 0, so grad of L(alpha (f - f0)) / alpha^2 is (1/alpha) L'(0) J: the
    learning rate eta / alpha^2 of Kumar et al. makes the weights move 1 / alpha as far, the function alike."""

    def first_update(scale):
        exp = T.make_experiment(tiny_config(**SGD, model__output_scale=scale))
        data, state = exp.device_data(), T.init_state(exp)
        moved, _ = T.train_step(exp, state, data.train, data.init_params)
        return jax.tree.map(lambda a, b: np.asarray(a - b), moved.params, state.params)

    one, scaled = first_update(1.0), first_update(alpha)
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(scaled), strict=True):
        np.testing.assert_allclose(b, a / alpha, rtol=1e-3, atol=1e-7)  # float32 rounding of w - w0


def test_relative_weight_change_is_recorded_and_smaller_when_lazier(tiny_config):
    changes = {}
    for alpha in (1.0, 16.0):
        exp = T.make_experiment(tiny_config(**SGD, optim__lr=0.5, model__output_scale=alpha))
        history = T.fit(exp, T.init_state(exp)).history
        assert all("relative_weight_change" in record for record in history)
        last = history[-1]
        assert last["relative_weight_change"] == pytest.approx(last["dist_from_init"] / T.parameter_norm(
            exp.device_data().init_params).item(), rel=1e-5)  # fmt: skip
        changes[alpha] = last["relative_weight_change"]
    assert 0 < changes[16.0] < changes[1.0] / 4


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_a_bad_output_scale_is_one_line(tmp_path, value):
    result = CliRunner().invoke(app, ["train", "--output-scale", value, "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert "--output-scale" in result.stderr and result.stderr.strip().count("\n") == 0


def test_llc_refuses_an_output_scaled_run_in_one_line(tmp_path, tiny_config):
    from grokkit.runner import start_run

    start_run(tiny_config(**{"model__output_scale": 2.0, "train__steps": 20}), tmp_path / "run")
    result = CliRunner().invoke(app, ["llc", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert "--output-scale" in result.stderr and result.stderr.strip().count("\n") == 0
