"""Progress measures (Nanda et al. 2023) and the phase rule."""

import jax.numpy as jnp
import numpy as np
import pytest

from grokkit import bases, progress
from grokkit.analysis import CIRCUIT_LOSS, phases, run_report
from grokkit.data import make_dataset


@pytest.mark.parametrize("p", [7, 8, 13, 97])
def test_fourier_basis_is_orthonormal(p):
    basis = bases.fourier_basis(p)
    assert basis.shape == (p, p)
    np.testing.assert_allclose(basis @ basis.T, np.eye(p), atol=1e-5)


def test_gini_on_known_vectors():
    assert float(progress.gini(jnp.ones(10))) == pytest.approx(0.0, abs=1e-6)
    assert float(progress.gini(jnp.array([0.0, 0, 0, 1]))) == pytest.approx(0.75, abs=1e-6)
    assert float(progress.gini(jnp.array([1.0, 3.0]))) == pytest.approx(0.25, abs=1e-6)


def synthetic_embedding(p, frequencies, d=16, noise=0.01, seed=0):
    rng = np.random.default_rng(seed)
    x = np.arange(p)[:, None]
    columns = []
    for k in frequencies:
        columns += [np.cos(2 * np.pi * k * x / p), np.sin(2 * np.pi * k * x / p)]
    embed = np.concatenate(columns, axis=1) @ rng.normal(size=(2 * len(frequencies), d))
    return jnp.asarray(embed + noise * rng.normal(size=(p, d)), jnp.float32)


def frequency_norms(embed):
    p = embed.shape[0]
    basis = progress.basis_data(bases.task_basis("mod-add", p), make_dataset("mod-add", p))
    return progress.component_norms(embed, basis.basis_GG, basis.component_of_row_G, p // 2), basis


def test_key_frequencies_of_a_synthetic_embedding():
    p = 97
    embed = synthetic_embedding(p, [4, 17, 33])
    norms, basis = frequency_norms(embed)
    assert norms.shape == (48,)
    mask = progress.key_component_mask(norms, basis.dims_R)
    assert progress.key_names(bases.task_basis("mod-add", p), mask) == [4, 17, 33]
    assert float(progress.gini(norms)) > 0.9
    flat = jnp.asarray(np.random.default_rng(1).normal(size=(p, 16)), jnp.float32)
    assert float(progress.gini(frequency_norms(flat)[0])) < 0.4


def test_restricted_and_excluded_loss_on_a_known_answer():
    """Logits cos(w_k(a + b - c)) for a few k answer a + b exactly; those components are the key ones."""
    p, keys = 23, [3, 7]
    a, b = (g.ravel() for g in np.meshgrid(np.arange(p), np.arange(p), indexing="ij"))
    c = np.arange(p)
    logits = sum(np.cos(2 * np.pi * k * (a[:, None] + b[:, None] - c[None, :]) / p) for k in keys) * 20.0
    labels = jnp.asarray((a + b) % p)
    noise = np.random.default_rng(0).normal(size=logits.shape) * 2.0  # memorization-like, not a + b
    logits = jnp.asarray(logits + noise, jnp.float32)
    row_mask = jnp.asarray(np.isin(bases.frequency_of_row(p), keys), jnp.float32)
    basis = jnp.asarray(bases.fourier_basis(p))
    restricted, excluded = progress.split_logits(logits, labels, basis, row_mask)
    full_loss = float(progress.cross_entropy(logits, labels))
    restricted_loss = float(progress.cross_entropy(restricted, labels))
    excluded_loss = float(progress.cross_entropy(excluded, labels))
    assert restricted_loss < full_loss  # the noise is gone, the algorithm stays
    assert float((restricted.argmax(-1) == labels).mean()) == 1.0
    assert excluded_loss > 2.0  # without the key frequencies, about chance (log 23 = 3.1)
    np.testing.assert_allclose(restricted + excluded - logits.mean(0), logits, atol=1e-3)


def curve(n, memorized, circuit, generalized, every=100):
    records = []
    for i in range(1, n + 1):
        step = every * i
        records.append(
            {
                "step": step,
                "train_acc": 1.0 if step >= memorized else 0.5,
                "val_acc": 1.0 if step >= generalized else 0.05,
                "train_loss": 0.01,
                "val_loss": 0.01 if step >= generalized else 5.0,
                "param_norm": 50.0 - step / 1000,
                "restricted_loss": CIRCUIT_LOSS / 2 if step >= circuit else 2.0,
                "excluded_loss": 0.3 + step / 100,
                "embed_gini": 0.1 + step / 10_000,
                "key_frequencies": [3, 14],
            }
        )
    return records


def test_phase_rule_on_a_synthetic_grok():
    history = curve(40, memorized=300, circuit=1500, generalized=2500)
    found = phases(history)
    assert found == {
        "memorization": {"start": 0, "end": 300},
        "circuit_formation": {"start": 300, "end": 1500},
        "cleanup": {"start": 1500, "end": 2500},
    }
    report = run_report(history, budget=4000)
    assert report["warning_steps"] == 1000 and report["key_frequencies"] == [3, 14]
    assert "excluded loss rose from 3.3 to 15.3" in report["phase_story"]["circuit_formation"]
    assert "embedding Gini rose from 0.25 to 0.35" in report["phase_story"]["cleanup"]


def test_phase_rule_on_unfinished_and_unmeasured_runs():
    ongoing = phases(curve(10, memorized=300, circuit=5000, generalized=9000))
    assert ongoing["circuit_formation"] == {"start": 300, "end": None}
    assert ongoing["cleanup"] == {"start": None, "end": None}
    assert phases([{"step": 1, "train_acc": 1.0, "val_acc": 0.1}]) is None
    # a restricted loss that is low before memorization does not end circuit formation early
    early = curve(20, memorized=800, circuit=100, generalized=1500)
    assert phases(early)["circuit_formation"] == {"start": 800, "end": 800}


def test_neuron_frequencies_find_the_planted_frequency():
    from grokkit.inspection import neuron_frequencies

    p = 31
    a, b = (g.ravel() for g in np.meshgrid(np.arange(p), np.arange(p), indexing="ij"))
    columns = [np.cos(2 * np.pi * 5 * (a + b) / p), np.sin(2 * np.pi * 11 * a / p) + 0.1, np.cos(2 * np.pi * 3 * b / p)]
    dominant, share = neuron_frequencies(np.stack(columns, axis=1), p)
    assert dominant.tolist() == [5, 11, 3]
    np.testing.assert_allclose(share, 1.0, atol=1e-4)


@pytest.fixture(scope="module")
def grokked(tmp_path_factory):
    from conftest import GROKS

    from grokkit.config import resolve
    from grokkit.runner import start_run

    run_dir = tmp_path_factory.mktemp("inspect") / "run"
    start_run(resolve(None, {**GROKS, "train.checkpoint_every": 500, "train.keep_checkpoints": 20}), run_dir)
    return run_dir


def test_grokked_run_records_measures_and_phases(grokked):
    import json

    from grokkit.rundir import RunDir

    records = RunDir.open(grokked).read_metrics().records
    assert {"restricted_loss", "excluded_loss", "embed_gini", "key_frequencies", "param_norms"} <= records[-1].keys()
    report = run_report(records, budget=4000)
    found = report["phases"]
    assert found["memorization"]["end"] < found["circuit_formation"]["end"] <= found["cleanup"]["end"]
    assert report["warning_steps"] is not None and report["warning_steps"] >= 0
    assert records[-1]["embed_gini"] > records[0]["embed_gini"]
    json.dumps(report)  # the --json output stays serializable


def test_inspect_command(grokked, tmp_path):
    from typer.testing import CliRunner

    from grokkit.cli import app

    result = CliRunner().invoke(app, ["inspect", str(grokked), "--png", str(tmp_path / "figs")], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "key frequency k" in result.stdout and "Restricted to its key frequencies" in result.stdout
    assert "100.0% on all" in result.stdout
    for name in ("spectrum_over_training.png", "neuron_clusters.png", "attention_patterns.png"):
        assert (tmp_path / "figs" / name).read_bytes()[:4] == b"\x89PNG"
    early = CliRunner().invoke(app, ["inspect", str(grokked), "--step", "500"], env={"COLUMNS": "80"})
    assert early.exit_code == 0 and "@ step 500" in early.stdout


def test_inspect_bad_input(grokked, tmp_path):
    from typer.testing import CliRunner

    from grokkit.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["inspect", str(grokked), "--step", "7"])
    assert result.exit_code == 2 and "no checkpoint at step 7" in result.stderr
    # tasks without a basis (rand): tests/test_inspect.py
    result = runner.invoke(app, ["inspect", str(tmp_path)])
    assert result.exit_code == 2 and "not a grokkit run directory" in result.stderr


def test_live_display_announces_the_circuit_before_generalization(tmp_path):
    from typer.testing import CliRunner

    from grokkit.cli import app

    flags = ["--p", "41", "--train-frac", "0.5", "--d-model", "64", "--heads", "2", "--d-mlp", "128", "--lr", "3e-3",
             "--steps", "4000", "--eval-every", "25", "--early-exit-window", "100"]  # fmt: skip
    result = CliRunner().invoke(app, ["train", *flags, "--run-dir", str(tmp_path / "run")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "circuit formed" in out and "generalized: validation accuracy" in out
    assert out.index("circuit formed") < out.index("generalized: validation accuracy")
