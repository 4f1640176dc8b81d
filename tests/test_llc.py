"""grokkit.llc: the SGLD estimator of the local learning coefficient on losses with known answers, and `grokkit llc`.

Known answers (Lau et al. 2023): a regular minimum in d dimensions has λ = d/2; L = w⁴ in 1-D has λ = 1/4
(exactly E[w⁴] = 1/(4 nβ) under exp(−nβ w⁴), so nβ E[L] = 1/4 at any nβ when γ = 0); adding independent
coordinates adds their λ's (½ + ½ + ¼ for w1² + w2² + w3⁴). The localization γ = 1 here is small next to
nβ·curvature (≈ 1000), so it shifts the target by under 0.1%; ε = 1e-4 keeps the step-size bias (a factor
1/(1 − εk/4) on the variance, k the curvature) under 5%. Seeded, hence deterministic.
"""

from __future__ import annotations

import json
import math
import shutil

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY_FLAGS

from grokkit.errors import UsageError
from grokkit.llc import estimate_llc, recommend
from grokkit.llc_store import default_nbeta, load_llc

TOLERANCE = 0.15
SAMPLER = {"epsilon": 1e-4, "nbeta": 1000.0, "gamma": 1.0, "chains": 8, "draws": 2000, "burn_in": 500, "seed": 0}


@pytest.mark.parametrize("d", [4, 10])
def test_regular_quadratic_has_half_the_dimension(d):
    a = jnp.linspace(1.0, 2.0, d)
    w_star = jnp.linspace(-1.0, 1.0, d)
    estimate = estimate_llc(lambda w, _: 0.5 * jnp.sum(a * (w - w_star) ** 2), w_star, **SAMPLER)
    assert abs(estimate.llc_mean - d / 2) <= TOLERANCE * d / 2, estimate
    assert estimate.diverged == 0 and estimate.stationary and estimate.init_loss == 0.0
    assert len(estimate.llc_chains) == 8 and estimate.losses.shape == (8, 2000)


def test_degenerate_minima_are_below_half_the_dimension():
    quartic = estimate_llc(lambda w, _: jnp.sum(w**4), jnp.zeros(1), **{**SAMPLER, "draws": 4000})
    assert 0.15 < quartic.llc_mean < 0.375, quartic  # λ = 1/4, d/2 = 1/2
    mixed = estimate_llc(lambda w, _: 0.5 * (w[0] ** 2 + w[1] ** 2) + w[2] ** 4, jnp.zeros(3), **SAMPLER)
    assert 1.0 < mixed.llc_mean < 1.45, mixed  # λ = 1/2 + 1/2 + 1/4, d/2 = 3/2


def test_minibatch_regression_and_default_nbeta():
    """Least squares in 6 dimensions at its minimum (λ = 3), on data: full batch with nβ = n / log n, and
    minibatches of 64 drawn each step."""
    rng = np.random.default_rng(0)
    n, d = 512, 6
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (x @ rng.normal(size=d) + 0.5 * rng.normal(size=n)).astype(np.float32)
    w_star = jnp.asarray(np.linalg.lstsq(x, y, rcond=None)[0].astype(np.float32))

    def loss(w, batch):
        return 0.5 * jnp.mean((batch[1] - batch[0] @ w) ** 2)

    data = (jnp.asarray(x), jnp.asarray(y))
    settings = {"gamma": 1.0, "chains": 8, "draws": 600, "burn_in": 200, "seed": 0}
    full = estimate_llc(loss, w_star, data, epsilon=1e-3, **settings)
    assert full.nbeta == pytest.approx(n / math.log(n)) == default_nbeta(n)
    assert abs(full.llc_mean - 3) <= TOLERANCE * 3, full
    mini = estimate_llc(loss, w_star, data, epsilon=3e-4, nbeta=200.0, batch_size=64, **settings)
    assert abs(mini.llc_mean - 3) <= TOLERANCE * 3, mini
    assert mini.stationary and not mini.diverged


def test_same_seed_same_numbers():
    def loss(w, _):
        return 0.5 * jnp.sum(w**2)

    settings = {**SAMPLER, "draws": 200, "burn_in": 50, "chains": 3}
    first = estimate_llc(loss, jnp.ones(5), **settings)
    again = estimate_llc(loss, jnp.ones(5), **settings)
    other = estimate_llc(loss, jnp.ones(5), **{**settings, "seed": 1})
    assert first.llc_chains == again.llc_chains and np.array_equal(first.losses, again.losses)
    assert first.llc_chains != other.llc_chains


def test_divergence_is_reported_not_averaged():
    estimate = estimate_llc(lambda w, _: jnp.sum(w**4), jnp.ones(2), epsilon=1.0, nbeta=1000.0, gamma=0.0,
                            chains=2, draws=20, burn_in=0)  # fmt: skip
    assert estimate.diverged == 2 and not estimate.stationary
    assert math.isnan(estimate.llc_mean) and estimate.as_json()["llc_mean"] is None


def test_recommendation_rule():
    def row(eps, nbeta, llc, stationary=True):
        return {"epsilon": eps, "nbeta": nbeta, "llc_mean": llc, "stationary": stationary}

    grid = [row(1e-5, 10, 40.0, False), row(1e-4, 10, 50.0), row(1e-3, 10, 55.0), row(1e-2, 10, 90.0),
            row(1e-3, 100, 60.0)]  # fmt: skip
    # At the default nβ 10: 1e-3 agrees with 1e-4 within 25%, 1e-2 does not with 1e-3.
    assert recommend(grid, default=12.0) == {"epsilon": 1e-3, "nbeta": 10, "llc_mean": 55.0}
    assert recommend(grid, default=80.0)["nbeta"] == 100
    assert recommend([row(1e-3, 10, 1.0, False)], default=10.0) is None


# --- `grokkit llc` on a tiny trained run ---------------------------------------------------------------

FAST = ["--chains", "2", "--draws", "20", "--burn-in", "5"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from typer.testing import CliRunner

    from grokkit.cli import app

    flags = list(TINY_FLAGS)
    flags[flags.index("--steps") + 1] = "60"
    path = tmp_path_factory.mktemp("llc") / "run"
    result = CliRunner().invoke(app, ["train", *flags, "--keep-checkpoints", "3", "--run-dir", str(path)])
    assert result.exit_code == 0, result.output
    return path


def _invoke(*args):
    from typer.testing import CliRunner

    from grokkit.cli import app

    return CliRunner().invoke(app, ["llc", *map(str, args)], env={"COLUMNS": "100"})


def test_llc_command_trajectory_json_and_file(tiny_run):
    assert load_llc(tiny_run) is None
    result = _invoke(tiny_run, *FAST)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Local learning coefficient" in out and "cost:" in out and "per checkpoint" in out
    for step in ("20", "40", "60"):
        assert any(line.split()[:1] == [step] for line in out.splitlines()), out
    rows = load_llc(tiny_run)
    assert rows is not None and [r["step"] for r in rows] == [20, 40, 60]
    assert all(isinstance(r["llc_mean"], float) and r["train_acc"] is not None for r in rows)
    stored = json.loads((tiny_run / "llc.json").read_text())
    assert stored["settings"]["chains"] == 2 and stored["settings"]["batch_size"] == 60
    assert stored["cost"]["seconds_per_checkpoint"] > 0

    as_json = _invoke(tiny_run, *FAST, "--json")
    assert as_json.exit_code == 0, as_json.output
    document = json.loads(as_json.stdout)
    assert [r["llc_chains"] for r in document["trajectory"]] == [r["llc_chains"] for r in rows]  # same seed
    other = json.loads(_invoke(tiny_run, *FAST, "--json", "--seed", "1").stdout)
    assert [r["llc_chains"] for r in other["trajectory"]] != [r["llc_chains"] for r in rows]


def test_llc_calibrate_prints_the_grid(tiny_run):
    result = _invoke(tiny_run, *FAST, "--calibrate", "--step", "40")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "LLC calibration at step 40" in out and "rule:" in out
    assert "recommended" in out or "no stationary setting" in out
    grid_rows = [line for line in out.splitlines() if "→" in line and line.split()[0][0].isdigit()]
    assert len(grid_rows) == 12, out
    document = json.loads((tiny_run / "llc_calibration.json").read_text())
    assert document["step"] == 40 and len(document["grid"]) == 12
    epsilons = sorted({row["epsilon"] for row in document["grid"]})
    assert epsilons == pytest.approx([3e-5, 9e-5, 3e-4, 9e-4])
    as_json = json.loads(_invoke(tiny_run, *FAST, "--calibrate", "--json").stdout)
    assert as_json["step"] == 60 and {"recommendation", "rule", "cost"} <= as_json.keys()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--chains", "0"], "--chains: must be a positive number"),
        (["--draws", "-3"], "--draws: must be a positive number"),
        (["--epsilon", "0"], "--epsilon: must be a positive number"),
        (["--epsilon", "abc"], "--epsilon"),
        (["--chains", "99999999999999999999"], "--chains: must be at most 1024"),
        (["--draws", "100000000000"], "--draws: chains x (burn-in + draws) is 400000000400 SGLD steps"),
        (["--seed", "-1"], "--seed: must be in [0, 2147483647]"),
        (["--batch-size", "1000"], "--batch-size: 1000 is more than the run's 60 training examples"),
        (["--calibrate", "--step", "7"], "--step: no checkpoint at step 7"),
        (["--step", "20"], "--step: chooses the checkpoint for --calibrate"),
    ],
)
def test_llc_bad_input_is_one_line(tiny_run, args, message):
    result = _invoke(tiny_run, *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_llc_without_checkpoints(tiny_run, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(tiny_run, bare)
    shutil.rmtree(bare / "checkpoints")
    result = _invoke(bare)
    assert result.exit_code == 2 and "has no checkpoints" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    (bare / "llc.json").write_text("{not json")
    with pytest.raises(UsageError, match=r"llc\.json: cannot be read"):
        load_llc(bare)
