"""`resume` never destroys a run: what it cannot restore it refuses, by name, changing nothing (#19).

Real `grokkit` processes on run folders made by the library and damaged by hand.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY

from grokkit.checkpoint import list_checkpoints, load_checkpoint
from grokkit.config import resolve
from grokkit.errors import UsageError
from grokkit.rundir import RunDir
from grokkit.runner import resume_run, start_run

GROKKIT = [sys.executable, "-m", "grokkit"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
SETTINGS = {**TINY, "train.steps": 40, "train.early_exit": False}


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """Runs trained once for the module: seed 0 to step 40 (checkpoints 20, 40), seed 1 to step 60."""
    root = tmp_path_factory.mktemp("made")
    start_run(resolve(None, SETTINGS), root / "seed0", notify=lambda m: None)
    start_run(resolve(None, {**SETTINGS, "seed": 1, "train.steps": 60}), root / "seed1")
    return {"seed0": root / "seed0", "seed1": root / "seed1"}


def copy_of(made: dict[str, Path], name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(made[name], tmp_path / name, symlinks=True))


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry under `folder` (the lock file included) and a hash of what it holds."""
    seen = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            seen[str(path.relative_to(folder))] = "link:" + os.readlink(path)
        elif path.is_file():
            seen[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            seen[str(path.relative_to(folder))] = "folder"
    return seen


def grokkit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*GROKKIT, *args], env=ENV, capture_output=True, text=True, timeout=300)


def edit_config(run_dir: Path, section: str | None, key: str, value) -> None:
    raw = json.loads((run_dir / "config.json").read_text())
    (raw[section] if section else raw)[key] = value
    (run_dir / "config.json").write_text(json.dumps(raw, indent=2))


def assert_refused(result: subprocess.CompletedProcess, *words: str) -> str:
    """Exit 1 or 2, one line on stderr that contains `words`, no traceback, nothing on stdout."""
    assert result.returncode in (1, 2), result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert result.stdout.strip() == "", result.stdout
    return lines[0]


def refuses_and_changes_nothing(run_dir: Path, *words: str) -> str:
    before = snapshot(run_dir)
    line = assert_refused(grokkit("resume", str(run_dir), "--steps", "60"), *words)
    assert snapshot(run_dir) == before, "the refused resume changed the run folder"
    return line


@pytest.mark.parametrize(
    ("section", "key", "value", "named"),
    [("data", "p", 13, "data.p 11 there, 13"), ("model", "d_model", 32, "model.d_model 16 there, 32"),
     (None, "seed", 5, "seed 0 there, 5")],
    ids=["p", "d_model", "seed"],
)  # fmt: skip
def test_config_json_edited_after_training_is_refused(made, tmp_path, section, key, value, named):
    run_dir = copy_of(made, "seed0", tmp_path)
    edit_config(run_dir, section, key, value)
    line = refuses_and_changes_nothing(run_dir, "step_000000040.npz", "not this run's checkpoint", named)
    assert "--restart" in line


def test_checkpoints_without_sidecars_are_refused(made, tmp_path):
    run_dir = copy_of(made, "seed0", tmp_path)
    for sidecar in (run_dir / "checkpoints").glob("*.json"):
        sidecar.unlink()
    refuses_and_changes_nothing(run_dir, "no checkpoint can be loaded", "missing sidecar", "--restart")


def test_every_checkpoint_damaged_is_refused(made, tmp_path):
    run_dir = copy_of(made, "seed0", tmp_path)
    for info in list_checkpoints(run_dir / "checkpoints"):
        info.path.write_bytes(info.path.read_bytes()[:100])
    refuses_and_changes_nothing(run_dir, "no checkpoint can be loaded", "checksum mismatch")


def test_checkpoints_entry_that_is_a_file_is_refused(made, tmp_path):
    run_dir = copy_of(made, "seed0", tmp_path)
    shutil.rmtree(run_dir / "checkpoints")
    (run_dir / "checkpoints").write_text("not a folder")
    refuses_and_changes_nothing(run_dir, "checkpoints is not a folder")


def test_metrics_past_the_first_checkpoint_without_any_checkpoint_is_refused(made, tmp_path):
    """Checkpoints gone entirely while metrics.jsonl shows 40 trained steps: step 0 would lose them."""
    run_dir = copy_of(made, "seed0", tmp_path)
    for path in (run_dir / "checkpoints").iterdir():
        path.unlink()
    refuses_and_changes_nothing(run_dir, "none found", "metrics.jsonl reaches step 40")


def test_checkpoint_copied_from_another_run_is_refused_by_name(made, tmp_path):
    """seed1's step-60 checkpoint has the same shapes as seed0's: it would have been continued silently."""
    run_dir = copy_of(made, "seed0", tmp_path)
    for suffix in (".npz", ".json"):
        name = f"step_000000060{suffix}"
        shutil.copy2(made["seed1"] / "checkpoints" / name, run_dir / "checkpoints" / name)
    refuses_and_changes_nothing(run_dir, "step_000000060.npz is not this run's checkpoint", "seed 1 there, 0")


def test_an_older_foreign_checkpoint_is_refused_too(made, tmp_path):
    run_dir = copy_of(made, "seed0", tmp_path)
    for suffix in (".npz", ".json"):
        name = f"step_000000020{suffix}"
        shutil.copy2(made["seed1"] / "checkpoints" / name, run_dir / "checkpoints" / name)
    refuses_and_changes_nothing(run_dir, "step_000000020.npz is not this run's checkpoint")


def test_restart_keeps_the_old_files_aside_and_trains_from_step_0(made, tmp_path):
    run_dir = copy_of(made, "seed0", tmp_path)
    old = snapshot(run_dir)
    edit_config(run_dir, "data", "p", 13)
    result = grokkit("resume", str(run_dir), "--restart")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "--restart: moved" in result.stdout and "from step 0 of 40" in result.stdout
    (aside,) = run_dir.glob("previous-*")
    kept = snapshot(aside)
    for name in ("checkpoints/step_000000020.npz", "checkpoints/step_000000040.json", "metrics.jsonl",
                 "summary.json", "split.npz", "env.json"):  # fmt: skip
        assert kept[name] == old[name], name
    assert "config.json" not in kept, "config.json (now p=13) does not describe the checkpoints kept aside"
    run = RunDir.open(run_dir)
    assert run.config().data.p == 13
    assert [r["step"] for r in run.read_metrics().records] == [10, 20, 30, 40]
    assert len(run.split().train_idx) + len(run.split().val_idx) == 13 * 13
    meta = load_checkpoint(list_checkpoints(run.checkpoints)[-1])[1]
    assert meta["identity"]["data.p"] == 13
    again = grokkit("resume", str(run_dir), "--steps", "60")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "from step 40 " in again.stdout


def test_restart_of_an_unchanged_run_keeps_a_readable_copy(made, tmp_path):
    run_dir = copy_of(made, "seed0", tmp_path)
    result = grokkit("resume", str(run_dir), "--restart", "--steps", "20")
    assert result.returncode == 0, result.stdout + result.stderr
    (aside,) = run_dir.glob("previous-*")
    report = grokkit("report", str(aside), "--json")
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["steps"] == 40


def test_restart_is_refused_for_a_sweep_folder(tmp_path):
    from grokkit.sweep import SweepSpec, create_sweep_dir

    create_sweep_dir(tmp_path / "sweep", SweepSpec(resolve(None, SETTINGS), {"seed": [0, 1]}))
    assert_refused(grokkit("resume", str(tmp_path / "sweep"), "--restart"), "--restart applies to single runs")


def test_run_stopped_before_its_first_checkpoint_starts_from_step_0(made, tmp_path):
    """No checkpoint ever completed: a kill between the first .npz and its sidecar, metrics up to that step."""
    run_dir = copy_of(made, "seed0", tmp_path)
    (run_dir / "checkpoints" / "step_000000040.npz").unlink()
    (run_dir / "checkpoints" / "step_000000040.json").unlink()
    (run_dir / "checkpoints" / "step_000000020.json").unlink()
    run = RunDir.open(run_dir)
    run.rewrite_metrics(run.read_metrics().records[:2])
    messages: list[str] = []
    result = resume_run(run_dir, notify=messages.append)
    assert any("starting again from step 0" in m for m in messages), messages
    assert result.history[-1]["step"] == 40


def test_orphan_checkpoint_past_the_first_checkpoint_step_is_refused(made, tmp_path):
    run_dir = copy_of(made, "seed0", tmp_path)
    for name in ("step_000000020.npz", "step_000000020.json", "step_000000040.json"):
        (run_dir / "checkpoints" / name).unlink()
    with pytest.raises(UsageError, match=r"step_000000040\.npz lost its sidecar"):
        resume_run(run_dir, steps=60)


def test_checkpoints_from_before_identities_are_accepted_with_a_notice(made, tmp_path):
    run_dir = copy_of(made, "seed0", tmp_path)
    for sidecar in (run_dir / "checkpoints").glob("*.json"):
        meta = json.loads(sidecar.read_text())
        legacy = {k: meta[k] for k in ("elapsed_s", "step", "sha256")}
        sidecar.write_text(json.dumps(legacy))
    messages: list[str] = []
    resume_run(run_dir, steps=60, notify=messages.append)
    assert any("step_000000040.npz predates run identities" in m for m in messages), messages
    assert "config_hash" in json.loads((run_dir / "checkpoints" / "step_000000060.json").read_text())


def test_changed_hyperparameters_are_announced_not_refused(made, tmp_path):
    """lr, wd, betas... live in the optimizer state and are read from config.json on every resume."""
    run_dir = copy_of(made, "seed0", tmp_path)
    edit_config(run_dir, "optim", "lr", 0.005)
    messages: list[str] = []
    resume_run(run_dir, steps=60, notify=messages.append)
    assert any("config.json changes optim.lr 0.01 -> 0.005 from step 40 on" in m for m in messages), messages


def test_budget_and_cadence_are_not_part_of_the_identity(made, tmp_path):
    run_dir = copy_of(made, "seed0", tmp_path)
    edit_config(run_dir, "train", "eval_every", 5)
    edit_config(run_dir, "train", "keep_checkpoints", 5)
    result = resume_run(run_dir, steps=50, early_exit=True)
    assert result.history[-1]["step"] == 50
