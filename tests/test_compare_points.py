"""`grokkit compare` on one problem: grid points chosen with --baseline-point/--candidate-point, the best point
only over tuned settings, censored medians in the table and JSON. Sweep folders are fabricated (no training)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY
from typer.testing import CliRunner

from grokkit.cli import app
from grokkit.comparison import Side, choose, compare, parse_point, select_point
from grokkit.config import resolve
from grokkit.errors import UsageError
from grokkit.reporting import load_side
from grokkit.sweep import SweepSpec, create_sweep_dir

runner = CliRunner()
BUDGET, EVERY = 3000, 100


def history(at_95: int | None, at_99: int | None) -> list[dict[str, Any]]:
    """Validation accuracy 10% until `at_95` (96% from there), 100% from `at_99`; None: never."""
    records = []
    for step in range(0, BUDGET + 1, EVERY):
        val = 1.0 if at_99 is not None and step >= at_99 else 0.96 if at_95 is not None and step >= at_95 else 0.1
        records.append({"step": step, "train_acc": 1.0, "val_acc": val, "train_loss": 0.01, "val_loss": 1.0,
                        "param_norm": 40.0, "elapsed_s": step * 0.01})  # fmt: skip
    return records


def fake_sweep(path: Path, axes: dict[str, list], base: dict[str, Any], reach: Callable) -> Path:
    """A sweep folder whose members have config.json and metrics.jsonl: reach(values) -> (at 95%, at 99%)."""
    config = resolve(None, {**TINY, "train.steps": BUDGET, "train.eval_every": EVERY,
                            "train.checkpoint_every": 1000, **base})  # fmt: skip
    spec = SweepSpec(config, axes)
    create_sweep_dir(path, spec)
    for member in spec.members():
        folder = path / member.name
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(member.config.to_dict()))
        lines = [json.dumps(r) for r in history(*reach(member.values))]
        (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory) -> Path:
    """The issue's case: a baseline over train fraction 0.3/0.5 (0.5 is the easier problem, so faster) against
    Grokfast at 0.3; a baseline tuned over lr; a candidate 1 of 2 seeds of which reach 99%."""
    root = tmp_path_factory.mktemp("compare")
    slow = {0: 2400, 1: 2600, 2: 2500}
    fake_sweep(root / "baseline", {"data.train_frac": [0.3, 0.5], "seed": [0, 1, 2]}, {},
               lambda v: (None, slow[v["seed"]] if v["data.train_frac"] == 0.3 else 1000))  # fmt: skip
    fake_sweep(root / "grokfast", {"seed": [0, 1, 2]}, {"data.train_frac": 0.3, "optim.grokfast": "ema"},
               lambda v: (None, 1200 + 100 * v["seed"]))  # fmt: skip
    fake_sweep(root / "tuned", {"optim.lr": [1e-3, 3e-3], "seed": [0, 1, 2]}, {"data.train_frac": 0.3},
               lambda v: (None, (2000 if v["optim.lr"] == 1e-3 else 1400) + 100 * v["seed"]))  # fmt: skip
    fake_sweep(root / "half", {"seed": [0, 1]}, {"data.train_frac": 0.3},
               lambda v: (2300, 2300) if v["seed"] == 0 else (2500, None))  # fmt: skip
    fake_sweep(root / "other-frac", {"data.train_frac": [0.3, 0.5], "seed": [0, 1]}, {},
               lambda v: (None, 1500))  # fmt: skip
    return root


def run(*args: Any):
    return runner.invoke(app, ["compare", *map(str, args)], env={"COLUMNS": "100"})


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def test_a_data_axis_is_never_the_best_point(sweeps):
    """0.5 is faster, but it is another problem: no pick, an error naming train_frac and the fix."""
    line = one_line_error(run(sweeps / "baseline", sweeps / "grokfast"))
    assert "train_frac" in line and "0.3, 0.5" in line and "--baseline-point train_frac=0.3" in line
    with pytest.raises(UsageError, match="train_frac"):
        compare(load_side(sweeps / "baseline", "baseline"), load_side(sweeps / "grokfast", "candidate"))


def test_both_sides_over_a_data_axis_need_a_point_each(sweeps):
    line = one_line_error(run(sweeps / "baseline", sweeps / "other-frac"))
    assert "--baseline-point train_frac=VALUE --candidate-point train_frac=VALUE" in line
    ok = run(sweeps / "baseline", sweeps / "other-frac", "--baseline-point", "train_frac=0.5",
             "--candidate-point", "data.train_frac=0.5", "--json")  # fmt: skip
    assert ok.exit_code == 0, ok.output


def test_single_runs_of_different_problems_are_refused(sweeps):
    line = one_line_error(run(sweeps / "baseline" / "train_frac=0.5,seed=0", sweeps / "grokfast" / "seed=0"))
    assert "train_frac" in line and "0.5" in line and "0.3" in line


def test_baseline_point_selects_those_members(sweeps):
    result = run(sweeps / "baseline", sweeps / "grokfast", "--baseline-point", "train_frac=0.3", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    base = data["selection"]["baseline"]
    assert base["pinned"] == {"data.train_frac": 0.3} and base["runs"] == 3 and base["points_tried"] == 1
    assert data["problem"]["data.train_frac"] == 0.3 and data["problem"]["data.task"] == "mod-add"
    row = data["thresholds"][2]
    assert row["baseline"]["median_step"] == 2500 and row["candidate"]["median_step"] == 1300
    assert row["speedup_steps"] == pytest.approx(2500 / 1300) and row["speedup_steps_bound"] is None
    low, high = row["speedup_steps_interval"]  # 3 seeds a side, nothing censored: an interval
    assert low <= row["speedup_steps"] <= high
    assert data["statistics"].startswith("steps to each threshold pooled over seeds by Kaplan–Meier")
    for spelling in ("data.train_frac=0.3", "train-frac=0.3", "--train-frac=0.3", "train_frac=3e-1"):
        again = run(sweeps / "baseline", sweeps / "grokfast", "--baseline-point", spelling, "--json")
        assert again.exit_code == 0 and json.loads(again.stdout)["thresholds"] == data["thresholds"], spelling
    text = run(sweeps / "baseline", sweeps / "grokfast", "--baseline-point", "train_frac=0.3").stdout
    assert "baseline: grid point train_frac=0.3 (--baseline-point)" in text and "1.92×" in text


@pytest.mark.parametrize(
    ("option", "value", "fragments"),
    [
        ("--baseline-point", "train_frac=0.4", ["--baseline-point", "train_frac=0.4 is not a point of the baseline",
                                                "train_frac 0.3, 0.5"]),
        ("--baseline-point", "lr=0.001", ["lr=0.001 is not a point", "its runs have lr 0.01"]),
        ("--candidate-point", "seed=7", ["--candidate-point", "seed 0, 1, 2"]),
        ("--baseline-point", "train_frac", ["expected KEY=VALUE"]),
        ("--baseline-point", "train_fracc=0.3", ["unknown setting", "did you mean train_frac"]),
        ("--baseline-point", "train_frac=abc", ["'abc' is not a valid value"]),
        ("--baseline-point", "train_frac=1.5", ["must be strictly between 0 and 1"]),
    ],
)  # fmt: skip
def test_a_point_not_on_the_grid_is_a_one_line_error(sweeps, option, value, fragments):
    line = one_line_error(run(sweeps / "baseline", sweeps / "grokfast", option, value))
    for fragment in fragments:
        assert fragment in line


def test_the_same_key_twice_is_an_error():
    with pytest.raises(UsageError, match="given twice"):
        parse_point(["lr=1e-3", "optim.lr=3e-3"], "--baseline-point")


def test_best_point_is_over_tuned_settings_and_named(sweeps):
    result = run(sweeps / "tuned", sweeps / "grokfast", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    base = data["selection"]["baseline"]
    assert base["point"] == "lr=0.003" and base["points_tried"] == 2 and base["tuned_over"] == ["optim.lr"]
    assert base["values"] == {"optim.lr": 0.003} and data["selection"]["candidate"]["points_tried"] == 1
    assert data["thresholds"][2]["baseline"]["median_step"] == 1500 and data["thresholds"][2]["baseline"]["points"] == 2
    assert any("best of 2 grid points and the candidate of 1" in w for w in data["warnings"])
    text = run(sweeps / "tuned", sweeps / "grokfast").stdout
    assert "baseline: the fastest of 2 grid points over lr: lr=0.003" in text
    pinned = json.loads(run(sweeps / "tuned", sweeps / "grokfast", "--baseline-point", "lr=1e-3", "--json").stdout)
    assert pinned["selection"]["baseline"]["points_tried"] == 1
    assert pinned["thresholds"][2]["baseline"]["median_step"] == 2100


def test_choose_ignores_seeds_and_never_groups_by_a_problem_setting(sweeps):
    side = load_side(sweeps / "baseline", "baseline")
    assert choose(side).points == 1 and choose(side).tuned == []  # train_frac is not something to tune
    narrowed = select_point(side, {"data.train_frac": 0.5}, "--baseline-point")
    assert len(narrowed.runs) == 3 and narrowed.pinned == {"data.train_frac": 0.5}
    assert narrowed.points == ["train_frac=0.5"] * 3


def test_censored_candidate_median_is_above_the_budget_and_the_speedup_a_bound(sweeps):
    """1 of 2 seeds reached 99% (at 2,300): the median is "> 3,000", not 2,300; the speed-up is a bound."""
    result = run(sweeps / "grokfast", sweeps / "half", "--json")
    assert result.exit_code == 0, result.output
    rows = {row["threshold"]: row for row in json.loads(result.stdout)["thresholds"]}
    cand99, cand95 = rows[0.99]["candidate"], rows[0.95]["candidate"]
    assert cand99["median_step"] is None and cand99["median_step_above"] == BUDGET
    assert (cand99["reached"], cand99["runs"], cand99["min_step"]) == (1, 2, 2300)
    assert cand95["median_step"] == 2400  # both seeds reached 95%: 2,300 and 2,500
    assert rows[0.99]["speedup_steps"] == pytest.approx(1300 / 3000) and rows[0.99]["speedup_steps_bound"] == "upper"
    assert rows[0.99]["lower_bound"] is False and rows[0.99]["speedup_steps_interval"] is None
    text = run(sweeps / "grokfast", sweeps / "half").stdout
    assert "> 3,000 [2,300]" in text and "1/2 runs" in text and "≥ 2.31× slower" in text


def test_warnings_print_numbers_readably():
    base = resolve(None, {"optim.lr": 3e-3})
    cand = resolve(None, {"optim.lr": 3e-3, "optim.grokfast": "ema", "optim.grokfast_lambda": 2.0})
    history_ = history(None, 1000)
    result = compare(Side("baseline", [(base, history_)], False), Side("candidate", [(cand, history_)], False))
    warning = next(w for w in result["warnings"] if "effective learning rate" in w)
    assert "0.003 vs 0.009" in warning and "0.009000000000000001" not in warning
