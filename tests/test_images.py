"""Image tasks (digits, mnist1d): read from the installed packages offline, split deterministically, trained and
reported by the same commands as the algorithmic tasks."""

from __future__ import annotations

import json
import random
import socket
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from typer.testing import CliRunner

import grokkit.train as T
from grokkit import images
from grokkit.bases import MEASURE_NAMES, SIGNAL_NAMES
from grokkit.cli import app
from grokkit.config import ModelConfig, ModelKind, parameter_count, resolve
from grokkit.data import make_dataset, split_dataset, task_shape
from grokkit.errors import UsageError
from grokkit.models import build_model

pytest.importorskip("sklearn")
mnist1d_data = pytest.importorskip("mnist1d.data")

runner = CliRunner()
TINY_IMAGES = ["--model", "mlp", "--width", "16", "--depth", "1", "--loss", "mse", "--steps", "20", "--eval-every",
               "10", "--checkpoint-every", "20"]  # fmt: skip


@pytest.fixture
def offline(monkeypatch):
    """No socket can connect, and the mnist1d package's download path fails loudly if anything calls it."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(mnist1d_data, "get_dataset", refuse)
    monkeypatch.setattr(mnist1d_data.requests, "get", refuse)
    yield
    assert calls == []


def test_digits_are_sklearns_bundled_images_scaled_to_one(offline):
    dataset = make_dataset("digits")
    assert dataset.tokens.shape == (1797, 64) and dataset.tokens.dtype == np.float32
    assert dataset.tokens.min() == 0.0 and dataset.tokens.max() == 1.0
    assert dataset.labels.dtype == np.int32 and sorted(set(dataset.labels.tolist())) == list(range(10))
    assert (dataset.n_values, dataset.n_classes, len(dataset)) == (64, 10, 1797)
    from sklearn.datasets import load_digits

    pixels, labels = load_digits(return_X_y=True)
    np.testing.assert_array_equal(dataset.tokens * 16, pixels)
    np.testing.assert_array_equal(dataset.labels, labels)


def test_mnist1d_is_generated_by_its_package_and_leaves_global_generators_alone(offline):
    random.seed(7)
    np.random.seed(7)
    before = (random.random(), np.random.random())
    random.seed(7)
    np.random.seed(7)
    dataset = make_dataset("mnist1d")
    assert (random.random(), np.random.random()) == before
    assert dataset.tokens.shape == (5000, 40) and dataset.tokens.dtype == np.float32
    assert np.bincount(dataset.labels).tolist() == [500] * 10
    again = make_dataset("mnist1d")
    np.testing.assert_array_equal(dataset.tokens, again.tokens)
    np.testing.assert_array_equal(dataset.labels, again.labels)
    generated = mnist1d_data.make_dataset(mnist1d_data.get_dataset_args())
    np.testing.assert_array_equal(dataset.tokens[:4000], generated["x"].astype(np.float32))
    np.testing.assert_array_equal(dataset.labels[4000:], generated["y_test"])


@pytest.mark.parametrize(("task", "train_frac"), [("digits", 0.5565), ("mnist1d", 0.2)])
def test_the_documented_fractions_give_1000_training_images_deterministically(task, train_frac):
    n = images.IMAGE_SHAPES[task][0]
    split = split_dataset(n, train_frac, seed=3)
    assert len(split.train_idx) == 1000 and len(split.val_idx) == n - 1000
    assert np.array_equal(np.sort(np.concatenate([split.train_idx, split.val_idx])), np.arange(n))
    np.testing.assert_array_equal(split.train_idx, split_dataset(n, train_frac, seed=3).train_idx)
    assert not np.array_equal(split.train_idx, split_dataset(n, train_frac, seed=4).train_idx)


@pytest.mark.parametrize(("task", "module"), [("digits", "sklearn.datasets"), ("mnist1d", "mnist1d.data")])
def test_a_missing_package_is_one_line_naming_the_extra(monkeypatch, tmp_path, task, module):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(UsageError, match=r"pip install 'grokkit\[images\]'"):
        make_dataset(task)
    result = runner.invoke(app, ["train", "--task", task, *TINY_IMAGES, "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().count("\n") == 0 and "grokkit[images]" in result.stderr


def test_image_tasks_need_the_mlp(tmp_path):
    result = runner.invoke(app, ["train", "--task", "digits", "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2 and "use --model mlp" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("task", ["digits", "mnist1d"])
def test_the_mlp_reads_real_valued_inputs_with_its_one_first_layer_table(task):
    vocab, seq_len, classes = task_shape(task, 97)
    cfg = ModelConfig(kind=ModelKind.mlp, width=8, depth=2)
    model = build_model(cfg, vocab, seq_len, classes, seed=0)
    x = jax.random.normal(jax.random.PRNGKey(1), (5, vocab))
    hidden = jax.nn.relu(x @ model.embed_OVF[...][0] + model.b_embed_F[...])
    np.testing.assert_allclose(model.first_hidden(x), hidden, rtol=1e-6)
    assert model(x).shape == (5, classes)
    real = sum(leaf.size for leaf in jax.tree.leaves(nnx.state(model)))
    config = resolve(None, {"data.task": task, "model.kind": "mlp", "model.width": 8, "model.depth": 2})
    assert parameter_count(config) == real


def test_one_hot_features_give_the_token_path_exactly():
    """The float path is the token path's special case: a token is its one-hot vector."""
    cfg = ModelConfig(kind=ModelKind.mlp, width=8, depth=1)
    model = build_model(cfg, 6, 2, 6, seed=0)
    values = jnp.arange(5)
    tokens = jnp.stack([values, jnp.full(5, 5)], axis=1).astype(jnp.int32)
    np.testing.assert_allclose(model(jax.nn.one_hot(values, 6)), model(tokens), rtol=1e-6)


def test_train_report_sweep_and_compare_on_digits(tmp_path):
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "--task", "digits", *TINY_IMAGES, "--run-dir", str(run)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [10, 20]
    for record in records:
        assert all(np.isfinite(record[name]) for name in SIGNAL_NAMES)
        assert not set(MEASURE_NAMES) & set(record) and "key_frequencies" not in record
        assert "relative_weight_change" not in record  # only with --output-scale
    assert runner.invoke(app, ["report", str(run)]).exit_code == 0
    sweeps = []
    for name, scale in [("one", "1"), ("four", "4")]:
        sweeps.append(tmp_path / name)
        flags = ["--task", "digits", *TINY_IMAGES, "--seed", "0:2", "--init-scale", scale]
        result = runner.invoke(app, ["sweep", *flags, "--run-dir", str(sweeps[-1])])
        assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["compare", *map(str, sweeps), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)


def test_image_data_reach_the_device_as_float_features(tiny_config):
    config = tiny_config(data__task="digits", model__kind="mlp", model__width=8, model__depth=1)
    exp = T.make_experiment(config)
    data = exp.device_data()
    assert data.every.tokens_BT.dtype == jnp.float32 and data.every.tokens_BT.shape == (1797, 64)
    assert data.train.tokens_BT.shape == (round(0.5 * 1797), 64) and exp.basis is None


def test_data_writes_every_feature_of_an_image_to_csv(tmp_path):
    out = tmp_path / "d.csv"
    result = runner.invoke(app, ["data", "--task", "digits", "--train-frac", "0.5565", "--out", str(out),
                                 "--format", "csv"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "64 real-valued features" in result.output
    header, first = out.read_text().splitlines()[:2]
    assert header.split(",") == [*(f"f{i}" for i in range(64)), "label", "split"]
    assert len(first.split(",")) == 66
