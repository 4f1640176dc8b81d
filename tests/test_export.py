"""Exports that other tools load as numbers: flat CSV, lossless JSON lines, TensorBoard tags named as the metrics."""

import csv
import dataclasses
import json
import math
import struct

import pytest
from conftest import TINY

from grokkit.config import resolve
from grokkit.errors import UsageError
from grokkit.reporting import (
    export_csv,
    export_jsonl,
    export_tensorboard,
    flat_columns,
    flatten_record,
    load_run,
)
from grokkit.runner import start_run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("runs") / "tiny"
    start_run(resolve(None, TINY), path)
    return load_run(path)


def read_csv_numbers(path):
    """Every column of a CSV as floats (None for an empty cell), through pandas when it is installed."""
    try:
        import pandas
    except ImportError:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        return {column: [float(row[column]) if row[column] else None for row in rows] for column in rows[0]}
    frame = pandas.read_csv(path)
    assert all(pandas.api.types.is_numeric_dtype(frame[c]) for c in frame.columns), frame.dtypes
    return {c: [None if math.isnan(v) else float(v) for v in frame[c]] for c in frame.columns}


def read_tensorboard_scalars(folder):
    """(tag, step, value) of every scalar in the event files of `folder`, read with tensorboardX's protobufs."""
    event_pb2 = pytest.importorskip("tensorboardX.proto.event_pb2")
    scalars = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):  # TFRecord framing: u64 length, u32 crc, payload, u32 crc
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            event = event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length])
            offset += 12 + length + 4
            scalars += [(v.tag, event.step, v.simple_value) for v in event.summary.value]
    return scalars


def test_flatten_joins_dict_keys_with_dots_and_numbers_list_items():
    record = {"step": 5, "param_norms": {"blocks/0": 1.5, "embed_VD": 2.0}, "key_frequencies": [3, 7], "x": None}
    assert flatten_record(record) == {
        "step": 5,
        "param_norms.blocks/0": 1.5,
        "param_norms.embed_VD": 2.0,
        "key_frequencies.0": 3,
        "key_frequencies.1": 7,
        "x": None,
    }


def test_flat_columns_keep_list_items_beside_each_other_when_a_later_list_is_longer():
    records = [{"step": 1, "k": [1], "loss": 0.5}, {"step": 2, "k": [1, 2, 3], "loss": 0.4}]
    assert flat_columns(records) == ["step", "k.0", "k.1", "k.2", "loss"]


def test_csv_columns_are_flat_and_every_cell_a_number(tmp_path, tiny_run):
    out = tmp_path / "m.csv"
    assert export_csv(tiny_run, out) == len(tiny_run.history)
    header = out.read_text().splitlines()[0].split(",")
    assert header[:6] == ["step", "train_loss", "train_acc", "val_loss", "val_acc", "param_norm"]
    assert "param_norms.blocks/0" in header and "param_norms.embed_VD" in header
    assert "restricted_loss" in header and "dist_from_init" in header and "param_norms" not in header
    columns = read_csv_numbers(out)
    assert list(columns) == header
    for i, record in enumerate(tiny_run.history):
        assert columns["step"][i] == record["step"]
        assert columns["param_norms.blocks/0"][i] == pytest.approx(record["param_norms"]["blocks/0"], rel=1e-12)
        assert columns["dist_from_init"][i] == pytest.approx(record["dist_from_init"], rel=1e-12)


def test_csv_leaves_cells_of_shorter_lists_empty(tmp_path, tiny_run):
    history = [dict(r) for r in tiny_run.history[:2]]
    history[0]["key_frequencies"], history[1]["key_frequencies"] = [2], [2, 5, 9]
    out = tmp_path / "m.csv"
    export_csv(dataclasses.replace(tiny_run, history=history), out)
    columns = read_csv_numbers(out)
    assert columns["key_frequencies.2"] == [None, 9.0]
    assert [c for c in columns if c.startswith("key_frequencies")] == [f"key_frequencies.{i}" for i in range(3)]


def test_jsonl_round_trips_to_the_records(tmp_path, tiny_run):
    out = tmp_path / "m.jsonl"
    assert export_jsonl(tiny_run, out) == len(tiny_run.history)
    assert [json.loads(line) for line in out.read_text().splitlines()] == tiny_run.history


def test_jsonl_into_a_folder_is_a_usage_error(tmp_path, tiny_run):
    with pytest.raises(UsageError, match=r"--jsonl: .* is a folder"):
        export_jsonl(tiny_run, tmp_path)


def test_tensorboard_tags_are_the_metric_names_and_every_scalar_is_there(tmp_path, tiny_run):
    pytest.importorskip("tensorboardX")
    count = export_tensorboard(tiny_run, tmp_path / "tb")
    scalars = read_tensorboard_scalars(tmp_path / "tb")
    assert count == len(scalars)
    expected = [
        (tag, record["step"], value)
        for record in tiny_run.history
        for tag, value in flatten_record(record).items()
        if tag != "step"
    ]
    assert sorted(tag for tag, _, _ in scalars) == sorted(tag for tag, _, _ in expected)
    assert {"elapsed_s", "param_norm", "val_acc", "param_norms.blocks/0", "restricted_loss", "dist_from_init"} <= {
        tag for tag, _, _ in scalars
    }
    got = {(tag, step): value for tag, step, value in scalars}
    for tag, step, value in expected:
        assert got[(tag, step)] == pytest.approx(value, rel=1e-6)  # TensorBoard stores float32


def test_tensorboard_folder_holds_only_event_files(tmp_path, tiny_run):
    pytest.importorskip("tensorboardX")
    export_tensorboard(tiny_run, tmp_path / "tb")
    names = [p.name for p in (tmp_path / "tb").iterdir()]
    assert names and all(name.startswith("events.out.tfevents.") for name in names)


def test_exporting_twice_into_one_folder_replaces_the_events_instead_of_doubling_them(tmp_path, tiny_run):
    pytest.importorskip("tensorboardX")
    count = export_tensorboard(tiny_run, tmp_path / "tb")
    export_tensorboard(tiny_run, tmp_path / "tb")
    assert len(read_tensorboard_scalars(tmp_path / "tb")) == count


def test_a_run_without_evaluations_has_nothing_to_export(tmp_path, tiny_run):
    empty = dataclasses.replace(tiny_run, history=[])
    for export, out in [(export_csv, tmp_path / "m.csv"), (export_jsonl, tmp_path / "m.jsonl")]:
        with pytest.raises(UsageError, match="no evaluations yet"):
            export(empty, out)
        assert not out.exists()


def test_tensorboard_onto_a_file_is_a_usage_error(tmp_path, tiny_run):
    pytest.importorskip("tensorboardX")
    (tmp_path / "tb").write_text("")
    with pytest.raises(UsageError, match=r"--tensorboard: .* is a file"):
        export_tensorboard(tiny_run, tmp_path / "tb")


def test_train_with_wandb_then_every_export_through_the_command_line(tmp_path, monkeypatch):
    from conftest import TINY_FLAGS
    from typer.testing import CliRunner

    from grokkit.cli import app

    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    runner = CliRunner()
    run = tmp_path / "run"
    trained = runner.invoke(app, ["train", *TINY_FLAGS, "--run-dir", str(run), "--wandb", "grokkit-test"])
    assert trained.exit_code == 0, trained.output
    assert any((run / "wandb").glob("offline-run-*")), "wandb's offline run folder is missing"
    out = tmp_path / "out"
    args = ["--csv", out / "m.csv", "--jsonl", out / "m.jsonl", "--transformerlens", out / "tl", "--step", "20"]
    exported = runner.invoke(app, ["export", str(run), *map(str, args)])
    assert exported.exit_code == 0, exported.output
    records = [json.loads(line) for line in (out / "m.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [r["step"] for r in load_run(run).history]
    assert "param_norms.blocks/0" in (out / "m.csv").read_text().splitlines()[0]
    assert sorted(p.name for p in (out / "tl").glob("step_*.npz")) == ["step_000000020.npz"]
    assert "load_in_transformerlens.py" in exported.stdout
    refused = runner.invoke(app, ["export", str(run), "--step", "20"])
    assert refused.exit_code == 2 and "--transformerlens" in refused.stderr


def test_a_sweep_logs_each_member_to_wandb(tmp_path, monkeypatch):
    from conftest import TINY_FLAGS
    from typer.testing import CliRunner

    from grokkit.cli import app

    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    sweep = tmp_path / "s"
    result = CliRunner().invoke(app, ["sweep", *TINY_FLAGS, "--seed", "0:2", "--run-dir", str(sweep), "--wandb", "t"])
    assert result.exit_code == 0, result.output
    for member in ("seed=0", "seed=1"):
        assert any((sweep / member / "wandb").glob("offline-run-*")), member


@pytest.fixture
def wandb_that_cannot_start(monkeypatch):
    """A stand-in wandb module whose init fails (not logged in, no network), as wandb.init raises then."""
    import sys
    import types

    module = types.ModuleType("wandb")

    def init(**kwargs):
        raise RuntimeError("api_key not configured (no-tty)")

    module.init = init
    module.Settings = lambda **kwargs: kwargs
    monkeypatch.setitem(sys.modules, "wandb", module)
    return module


def _tree(path):
    return {str(p.relative_to(path)): p.read_bytes() if p.is_file() else None for p in sorted(path.rglob("*"))}


def test_a_wandb_start_that_fails_leaves_no_run_behind(tmp_path, wandb_that_cannot_start):
    import os

    from conftest import TINY_FLAGS
    from typer.testing import CliRunner

    from grokkit.cli import app

    runner = CliRunner()
    runs = tmp_path / "runs"
    start_run(resolve(None, {**TINY, "train.steps": 20}), runs / "a")
    assert os.readlink(runs / "latest") == "a"
    before = _tree(runs)
    for attempt in range(2):  # the same command again fails the same way, not with "already holds a run"
        result = runner.invoke(app, ["train", *TINY_FLAGS, "--run-dir", str(runs / "wb"), "--wandb", "proj"])
        assert result.exit_code == 2 and "wandb could not start" in result.stderr, (attempt, result.output)
        assert "already holds" not in result.stderr
        assert not (runs / "wb").exists() and _tree(runs) == before
    (runs / "empty").mkdir()  # a folder the user made: kept, and empty again
    result = runner.invoke(app, ["train", *TINY_FLAGS, "--run-dir", str(runs / "empty"), "--wandb", "proj"])
    assert result.exit_code == 2 and list((runs / "empty").iterdir()) == []
    (runs / "empty").rmdir()
    # resume (with a larger budget, and --restart) changes nothing when wandb cannot start
    for flags in (["--steps", "40"], ["--restart"]):
        result = runner.invoke(app, ["resume", str(runs / "a"), *flags, "--wandb", "proj"])
        assert result.exit_code == 2 and "wandb could not start" in result.stderr, result.output
        assert _tree(runs) == before, flags
    # a sweep: a member whose sink cannot start is not left half made
    sweep = tmp_path / "s"
    result = runner.invoke(app, ["sweep", *TINY_FLAGS, "--seed", "0:2", "--run-dir", str(sweep), "--wandb", "t"])
    assert result.exit_code == 2, result.output
    assert not (sweep / "seed=0").exists() and not (sweep / "seed=1").exists()
