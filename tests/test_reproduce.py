"""`grokkit reproduce`: the verdict rule on hand-built samples, the loss threshold, the spec and folder a preset
reproduces in, the records file, the README table, and the command end to end on a tiny preset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY
from typer.testing import CliRunner

from grokkit import reproduce
from grokkit.cli import app
from grokkit.errors import UsageError
from grokkit.presets import PRESETS, Claim, Measure, Preset
from grokkit.reproduce import (
    Verdict,
    command_line,
    default_reproduction_dir,
    evaluate,
    load_records,
    markdown_table,
    record,
    reproduction_spec,
    steps_to,
    verdict,
)
from grokkit.survival import Sample

runner = CliRunner()
PAPER = Claim(Measure.val_acc, 0.95, (1000, 2000), 10_000, "Table 9; two runs")
NEVER = Claim(Measure.val_acc, 0.5, None, 80_000, "Fig. 9; one run")


@pytest.mark.parametrize(
    ("reached", "censored", "expected"),
    [
        ((1500,), (), Verdict.within),
        ((500, 900, 1100), (), Verdict.within),  # the slowest seed reaches into the paper's range
        ((2500, 3000), (), Verdict.slower),
        ((400, 600, 800), (), Verdict.faster),
        ((400, 900), (5000,), Verdict.within),  # a censored seed is slower than any step: the ranges overlap
        ((400,), (5000,), Verdict.not_reproduced),  # exactly half got there: the median lies beyond the budget
        ((2500,), (5000, 5000), Verdict.not_reproduced),  # fewer than half got there: the median is censored
        ((), (5000, 5000, 5000), Verdict.not_reproduced),
        ((2001, 2100), (), Verdict.slower),
        ((2000, 2100), (), Verdict.within),  # ties at the paper's high are within
    ],
)
def test_verdict_against_a_paper_range(reached, censored, expected):
    assert verdict(PAPER, Sample(reached, censored)) is expected


@pytest.mark.parametrize(
    ("reached", "censored", "expected"),
    [
        ((), (80_000,), Verdict.never),
        ((3000,), (80_000, 80_000), Verdict.never),
        ((3000, 4000), (80_000,), Verdict.generalized),
    ],
)
def test_verdict_against_a_paper_that_never_got_there(reached, censored, expected):
    assert verdict(NEVER, Sample(reached, censored)) is expected


def curve(losses: list[float], every: int = 100) -> list[dict[str, Any]]:
    return [{"step": i * every, "val_loss": v, "val_acc": 1.0 - v} for i, v in enumerate(losses)]


def test_loss_threshold_is_strict_and_must_hold():
    claim = Claim(Measure.val_loss, 0.01, (1, 1), 1, "")
    # 0.01 exactly is not below it; 0.005 at step 200 does not hold (0.02 next); from 400 on it holds
    history = curve([1.0, 0.01, 0.005, 0.02, 0.009, 0.008, 0.007, 0.006])
    assert steps_to(history, claim) == 400
    assert steps_to(curve([1.0, 0.01, 0.01, 0.01]), claim) is None


def test_evaluate_censors_a_seed_that_never_got_there_at_its_last_step(monkeypatch):
    monkeypatch.setitem(PRESETS, "paper-x", Preset("paper-x", "x", {}, claims=(PAPER,)))
    reaches = [{"step": s, "val_acc": 0.96 if s >= 1200 else 0.1, "val_loss": 1.0} for s in range(0, 3001, 100)]
    never = [{"step": s, "val_acc": 0.1, "val_loss": 1.0} for s in range(0, 2001, 100)]
    (row,) = evaluate("paper-x", [reaches, never, reaches])
    assert (row["runs"], row["reached"], row["median"], row["min"], row["max"]) == (3, 2, 1200, 1200, 1200)
    assert row["verdict"] == Verdict.within
    (row,) = evaluate("paper-x", [never, never, reaches])
    assert row["median"] is None and row["median_above"] == 2000 and row["verdict"] == Verdict.not_reproduced


def test_a_preset_without_a_paper_figure_gets_our_99_percent_step_and_no_verdict(monkeypatch):
    monkeypatch.setitem(PRESETS, "plain-x", Preset("plain-x", "x", {}))
    history = [{"step": s, "val_acc": 1.0 if s >= 700 else 0.2, "val_loss": 1.0} for s in range(0, 1501, 100)]
    (row,) = evaluate("plain-x", [history])
    assert row["median"] == 700 and row["verdict"] is None and row["paper_budget"] is None


def test_spec_is_the_preset_with_its_reproduction_settings_over_seeds():
    spec = reproduction_spec("nanda2023")
    assert spec.axes == {"seed": [0, 1, 2]}
    assert spec.base.train.early_exit_window == PRESETS["nanda2023"].reproduce["train.early_exit_window"]
    assert spec.base.data.p == 113
    shorter = reproduction_spec("grokfast2024-baseline", seeds=2, steps=500)
    assert shorter.axes == {"seed": [0, 1]} and shorter.base.train.steps == 500
    assert default_reproduction_dir("nanda2023") == Path("runs/reproduce/nanda2023-3seeds")
    assert default_reproduction_dir("nanda2023", 5, 1000) == Path("runs/reproduce/nanda2023-5seeds-1000steps")
    assert command_line("nanda2023", 3, 40_000) == "grokkit reproduce nanda2023"
    assert command_line("nanda2023", 5, 1000) == "grokkit reproduce nanda2023 --seeds 5 --steps 1000"


@pytest.mark.parametrize("seeds", [0, -1, 1001])
def test_seed_counts_out_of_range_are_refused(seeds):
    with pytest.raises(UsageError, match="--seeds"):
        reproduction_spec("nanda2023", seeds=seeds)


def test_records_round_trip_and_fill_the_readme_table(tmp_path, monkeypatch):
    path = tmp_path / "reproductions.json"
    assert load_records(path) == {}
    result = {
        "preset": "grokfast2024", "seeds": 3, "budget": 100_000, "command": "grokkit reproduce grokfast2024",
        "wall_s": 180.0, "steps_trained": [1000, 1200, 1400],
        "claims": [{"claim": PRESETS["grokfast2024"].claims[0].label, "paper_steps": [910, 910],
                    "paper_budget": 300_000, "where": "Table 3; one run", "runs": 3, "reached": 3, "median": 750,
                    "median_above": None, "min": 700, "max": 1850, "verdict": "within spread"}],
    }  # fmt: skip
    record(result, path)
    stored = load_records(path)["grokfast2024"]
    assert stored["wall_s"] == 180.0 and stored["date"] and stored["machine"] and "jax" in stored["versions"]
    table = markdown_table(load_records(path))
    assert (
        "| `grokkit reproduce grokfast2024` | steps to 95% validation accuracy (Table 3; one run) | 910 | "
        "750 [700–1,850] (3/3) |" in table
    )
    assert "| 100,000 | 3.0 min (3 seeds) | within spread |" in table
    assert reproduce.wall_text(45.2) == "45 s" and reproduce.wall_text(734.7) == "12.2 min"
    assert "| `nanda2023` |" in table and "not run" in table  # every preset has a row


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ([], "name a preset"),
        (["nanda2024"], "unknown preset 'nanda2024': did you mean nanda2023?"),
        (["nanda2023", "--seeds", "0"], "--seeds"),
        (["nanda2023", "--seeds", "99999999999999999999"], "--seeds"),
        (["nanda2023", "--steps", "0"], "--steps"),
        (["--list", "nanda2023"], "--list"),
        (["nanda2023", "--seeds", "x"], "--seeds"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, fragment, tmp_path):
    result = runner.invoke(app, ["reproduce", *args, "--run-dir", str(tmp_path / "r")] if args[:1] != ["--list"]
                           else ["reproduce", *args])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert fragment in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_list_shows_every_preset():
    result = runner.invoke(app, ["reproduce", "--list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in PRESETS:
        assert name in result.output


def test_reproduce_end_to_end_then_again_without_training(tmp_path, monkeypatch):
    claim = Claim(Measure.val_acc, 0.5, (10, 20), 40, "a tiny claim")
    monkeypatch.setitem(PRESETS, "tiny-paper", Preset("tiny-paper", "tests", dict(TINY), claims=(claim,), seeds=2))
    folder = tmp_path / "repro"
    first = runner.invoke(app, ["reproduce", "tiny-paper", "--run-dir", str(folder), "--json"])
    assert first.exit_code == 0, first.output
    result = json.loads(first.stdout.strip().splitlines()[-1])
    assert result["seeds"] == 2 and result["budget"] == 40 and len(result["steps_trained"]) == 2
    (row,) = result["claims"]
    assert row["runs"] == 2 and row["paper_steps"] == [10, 20] and row["where"] == "a tiny claim"
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["seed=0", "seed=1"]
    metrics = (folder / "seed=0" / "metrics.jsonl").read_bytes()
    again = runner.invoke(app, ["reproduce", "tiny-paper", "--run-dir", str(folder), "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout.strip().splitlines()[-1]) == result  # read back, not retrained
    assert (folder / "seed=0" / "metrics.jsonl").read_bytes() == metrics
    shown = runner.invoke(app, ["reproduce", "tiny-paper", "--run-dir", str(folder)], env={"COLUMNS": "120"})
    assert "ours beside the paper's" in shown.output and "a tiny claim" in shown.output
