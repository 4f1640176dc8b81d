"""`grokkit report` and `grokkit export` end to end on a tiny real run, and the rendered summary."""

import json
import sys

import pytest
from conftest import GROKS
from rich.console import Console
from typer.testing import CliRunner

from grokkit.analysis import run_report
from grokkit.cli import app
from grokkit.config import resolve
from grokkit.render import comparison_view, report_view
from grokkit.rundir import RunDir
from grokkit.runner import start_run

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "80"})


@pytest.fixture(scope="module")
def grokked_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    start_run(resolve(None, GROKS), root / "grok")
    return root / "grok"


@pytest.fixture(scope="module")
def memorizing_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    start_run(resolve(None, {**GROKS, "train.steps": 200}), root / "short")
    return root / "short"


def test_report_json_matches_the_runs_own_metrics(grokked_run):
    result = invoke("report", grokked_run, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    records = RunDir.open(grokked_run).read_metrics().records
    first_train_99 = next(r["step"] for r in records if r["train_acc"] >= 0.99)
    first_val_99 = next(r["step"] for r in records if r["val_acc"] >= 0.99)
    assert report["memorized_step"] >= first_train_99 and report["generalized_step"] >= first_val_99
    held = [r for r in records if r["step"] >= report["generalized_step"]][:3]
    assert all(r["val_acc"] >= 0.99 for r in held)
    assert report["grokking_delay"] == report["generalized_step"] - report["memorized_step"]
    assert report["verdict"] == "grokked"
    assert report["final_val_acc"] == records[-1]["val_acc"]
    assert report["steps"] == records[-1]["step"]
    for key in ("run_dir", "task", "early_stop_step", "early_stop_val_acc", "final_train_acc", "final_param_norm",
                "delay_ratio"):  # fmt: skip
        assert key in report
    assert report["early_stop_step"] < report["generalized_step"]
    assert report["early_stop_val_acc"] < 0.5


def test_report_summary_reads_well_in_80_columns(grokked_run):
    result = invoke("report", grokked_run)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "verdict: grokked" in out
    assert "early-stopping counterfactual" in out and "shipped the weights of step" in out
    assert "accuracy vs step" in out and "loss (log) vs step" in out
    assert max(len(line) for line in out.splitlines()) <= 80


def test_report_several_runs_compares_them(grokked_run, memorizing_run):
    result = invoke("report", grokked_run, memorizing_run, "--no-plot")
    assert result.exit_code == 0, result.output
    assert "runs compared" in result.stdout
    assert "grokked" in result.stdout and "still training" not in result.stdout
    assert "memorization only" in result.stdout
    lines = invoke("report", grokked_run, memorizing_run, "--json").stdout.strip().splitlines()
    assert [json.loads(line)["verdict"] for line in lines] == ["grokked", "memorization only"]


def test_rendered_view_at_fixed_width(grokked_run):
    run = RunDir.open(grokked_run)
    config, history = run.config(), run.read_metrics().records
    console = Console(width=80, record=True, color_system=None)
    console.print(report_view("grok", config, run_report(history, config.train.steps), history, 80))
    text = console.export_text()
    assert "train" in text and "val" in text and "grokking delay" in text
    console.print(comparison_view([("a", config, run_report(history, 10), history)] * 2, 80))
    assert "runs compared" in console.export_text()


def test_report_on_an_interrupted_run_with_a_torn_line(tmp_path, grokked_run):
    lines = (grokked_run / "metrics.jsonl").read_text().splitlines()
    (tmp_path / "run").mkdir()
    for name in ("config.json", "env.json", "summary.json"):
        (tmp_path / "run" / name).write_text((grokked_run / name).read_text())
    (tmp_path / "run" / "metrics.jsonl").write_text("\n".join(lines[:5]) + '\n{"step": 13')
    result = invoke("report", tmp_path / "run", "--json")
    assert result.exit_code == 0, result.output
    assert "skipped unreadable line(s) [6]" in result.stderr
    report = json.loads(result.stdout)
    assert report["steps"] == json.loads(lines[4])["step"] and report["verdict"] == "still training"


def test_report_bad_input(tmp_path, grokked_run):
    result = invoke("report", tmp_path)
    assert result.exit_code == 2 and "not a grokkit run directory" in result.stderr
    result = invoke("report", grokked_run, "--patience", "0")
    assert result.exit_code == 2 and "--patience" in result.stderr
    result = invoke("report", grokked_run, "--png", tmp_path / "missing" / "f.png")
    assert result.exit_code == 2 and "cannot write" in result.stderr
    assert "Traceback" not in result.output


def test_report_png(tmp_path, grokked_run):
    result = invoke("report", grokked_run, "--png", tmp_path / "f.png", "--no-plot")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_optional_extras_say_how_to_get_them(tmp_path, grokked_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    result = invoke("report", grokked_run, "--png", tmp_path / "f.png")
    assert result.exit_code == 2 and "pip install 'grokkit[plot]'" in result.stderr
    result = invoke("export", grokked_run, "--tensorboard", tmp_path / "tb")
    assert result.exit_code == 2 and "pip install 'grokkit[tensorboard]'" in result.stderr


def test_export_csv_and_tensorboard(tmp_path, grokked_run):
    result = invoke("export", grokked_run, "--csv", tmp_path / "m.csv", "--tensorboard", tmp_path / "tb")
    assert result.exit_code == 0, result.output
    rows = (tmp_path / "m.csv").read_text().splitlines()
    assert rows[0].startswith("step,train_loss,train_acc,val_loss,val_acc,param_norm")
    assert len(rows) == 1 + len(RunDir.open(grokked_run).read_metrics().records)
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tb").iterdir())
    result = invoke("export", grokked_run)
    assert result.exit_code == 2 and "nothing to do" in result.stderr
