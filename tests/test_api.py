"""`grokkit.load_run`: a run on disk as metrics, config, summary, checkpoints and a working model."""

import math
import shutil
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY

import grokkit
from grokkit.config import Config, resolve
from grokkit.errors import UsageError
from grokkit.reporting import flat_columns, flatten_record
from grokkit.rundir import RunDir
from grokkit.runner import start_run

SMALL = {**TINY, "data.p": 17, "model.d_model": 32, "train.steps": 300, "train.eval_every": 25,
         "train.checkpoint_every": 100, "train.keep_checkpoints": 5}  # fmt: skip


@pytest.fixture(scope="module")
def run_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("runs") / "small"
    start_run(resolve(None, SMALL), path)
    return path


@pytest.fixture(scope="module")
def run(run_path):
    return grokkit.load_run(run_path)


def records_on_disk(path):
    return RunDir.open(path).read_metrics().records


def column(metrics, name):
    """One metrics column as a NumPy array, from a DataFrame or a dict of arrays."""
    return np.asarray(metrics[name])


def test_metrics_columns_and_lengths_match_metrics_jsonl(run, run_path):
    records = records_on_disk(run_path)
    assert list(run.metrics) == flat_columns(records)
    assert "param_norms.blocks/0" in run.metrics
    assert len(column(run.metrics, "step")) == len(records) == 300 // 25
    for name in ("step", "val_acc", "param_norms.blocks/0", "elapsed_s"):
        assert column(run.metrics, name).tolist() == [flatten_record(r)[name] for r in records]
    assert run.records == records


def test_metrics_without_pandas_are_numpy_arrays_keyed_by_flat_columns(run_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    metrics = grokkit.load_run(run_path).metrics
    assert isinstance(metrics, dict)
    assert metrics["step"].dtype == np.int64 and metrics["val_acc"].dtype == np.float64
    assert metrics["param_norms.blocks/0"].shape == metrics["step"].shape


def test_missing_list_items_are_nan_without_pandas():
    from grokkit.api import metrics_table

    records = [{"step": 1, "k": [3]}, {"step": 2, "k": [3, 5]}]
    try:
        import pandas  # noqa: F401
    except ImportError:
        table = metrics_table(records)
        assert table["k.0"].tolist() == [3, 3] and table["k.0"].dtype == np.int64
        assert math.isnan(table["k.1"][0]) and table["k.1"][1] == 5
    else:
        table = metrics_table(records)
        assert math.isnan(table["k.1"][0]) and table["k.1"][1] == 5


def test_config_and_summary_are_the_runs(run):
    assert isinstance(run.config, Config) and run.config == resolve(None, SMALL)
    assert run.summary["status"] in ("finished", "generalized") and run.summary["step"] == 300


def test_checkpoints_match_the_files_on_disk(run, run_path):
    on_disk = sorted(int(p.stem.removeprefix("step_")) for p in (run_path / "checkpoints").glob("step_*.npz"))
    assert run.checkpoints == on_disk == [100, 200, 300]


def test_model_at_each_checkpoint_reproduces_the_recorded_accuracies(run):
    tokens, labels = run.dataset.tokens, run.dataset.labels
    recorded = {r["step"]: r for r in run.records}
    for step in run.checkpoints:
        logits = np.asarray(run.model(step)(jnp.asarray(tokens)))
        assert logits.shape == (len(labels), run.dataset.n_classes)
        correct = logits.argmax(-1) == labels
        assert correct[run.split.val_idx].mean() == pytest.approx(recorded[step]["val_acc"], abs=1e-6)
        assert correct[run.split.train_idx].mean() == pytest.approx(recorded[step]["train_acc"], abs=1e-6)


LINEAGE = {**TINY, "train.steps": 60, "train.eval_every": 20, "train.checkpoint_every": 20, "train.early_exit": False}


@pytest.fixture(scope="module")
def lineage_runs(tmp_path_factory):
    """A --label-noise run and a --train-subset run (initialized from a plain source run), tiny."""
    root = tmp_path_factory.mktemp("lineage")
    start_run(resolve(None, {**LINEAGE, "data.label_noise": 0.3}), root / "noisy")
    start_run(resolve(None, LINEAGE), root / "source")
    subset = {**LINEAGE, "train.init_from": f"{root / 'source'}@60", "data.train_subset": 0.5}
    start_run(resolve(None, subset), root / "subset")
    return {"noisy": root / "noisy", "subset": root / "subset"}


@pytest.mark.parametrize("name", ["noisy", "subset"])
def test_train_idx_and_labels_are_those_trained_on_and_reproduce_recorded_train_acc(lineage_runs, name):
    from grokkit.train import make_experiment

    run = grokkit.load_run(lineage_runs[name])
    exp = make_experiment(run.config, split=run.split)
    np.testing.assert_array_equal(run.train_idx, exp.train_idx)
    np.testing.assert_array_equal(run.train_labels, exp.train_labels[0])
    if name == "subset":
        assert len(run.train_idx) == round(0.5 * len(run.split.train_idx)) < len(run.split.train_idx)
    else:
        np.testing.assert_array_equal(run.train_idx, run.split.train_idx)
        assert (run.train_labels != run.dataset.labels[run.train_idx]).sum() == round(0.3 * len(run.train_idx))
    recorded, mismatches = {r["step"]: r for r in run.records}, []
    for step in run.checkpoints:
        predicted = np.asarray(run.model(step)(jnp.asarray(run.dataset.tokens))).argmax(-1)
        train_acc = (predicted[run.train_idx] == run.train_labels).mean()
        assert train_acc == pytest.approx(recorded[step]["train_acc"], abs=1e-6)
        stored_split = (predicted[run.split.train_idx] == run.dataset.labels[run.split.train_idx]).mean()
        mismatches.append(stored_split != pytest.approx(recorded[step]["train_acc"], abs=1e-6))
        assert (predicted[run.split.val_idx] == run.dataset.labels[run.split.val_idx]).mean() == pytest.approx(
            recorded[step]["val_acc"], abs=1e-6
        )
    assert any(mismatches)  # the stored split and true labels would not give the recorded train_acc


def test_plain_run_trains_on_its_whole_split(run):
    np.testing.assert_array_equal(run.train_idx, run.split.train_idx)
    np.testing.assert_array_equal(run.train_labels, run.dataset.labels[run.split.train_idx])


def test_params_default_to_the_newest_checkpoint(run):
    newest, latest, first = run.params(run.checkpoints[-1]), run.params(), run.params(run.checkpoints[0])
    assert np.array_equal(newest["embed_VD"], latest["embed_VD"])
    assert np.array_equal(newest["blocks"][0]["w_in_DF"], latest["blocks"][0]["w_in_DF"])
    assert not np.array_equal(first["embed_VD"], latest["embed_VD"])
    assert newest["embed_VD"].shape == (run.dataset.vocab_size, 32)


def test_unknown_step_names_the_available_steps(run):
    with pytest.raises(UsageError, match=r"no checkpoint at step 150; available steps: 100, 200, 300"):
        run.model(150)


def test_a_damaged_checkpoint_is_refused_by_step_and_skipped_by_default(run_path, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run_path, copy)
    newest = copy / "checkpoints" / "step_000000300.npz"
    newest.write_bytes(newest.read_bytes()[:100])
    damaged = grokkit.load_run(copy)
    with pytest.raises(UsageError, match=r"checksum mismatch.*available steps: 100, 200, 300"):
        damaged.params(300)
    expected = grokkit.load_run(run_path).params(200)
    assert np.array_equal(damaged.params()["embed_VD"], expected["embed_VD"])


def test_a_bad_path_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        grokkit.load_run(tmp_path / "nowhere")
    with pytest.raises(UsageError, match="not a grokkit run directory"):
        grokkit.load_run(tmp_path)


def test_a_run_without_checkpoints_says_so(run_path, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run_path, copy)
    shutil.rmtree(copy / "checkpoints")
    with pytest.raises(UsageError, match="no checkpoint yet"):
        grokkit.load_run(copy).params()
    assert grokkit.load_run(copy).checkpoints == []


def test_import_grokkit_stays_light_and_load_run_is_exported_lazily():
    code = (
        "import sys, grokkit\n"
        "assert 'jax' not in sys.modules and 'grokkit.api' not in sys.modules, sorted(sys.modules)\n"
        "from grokkit import Run, load_run\n"
        "assert load_run.__module__ == 'grokkit.api' and Run.__name__ == 'Run'\n"
        "assert 'jax' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    with pytest.raises(AttributeError):
        grokkit.no_such_thing  # noqa: B018
