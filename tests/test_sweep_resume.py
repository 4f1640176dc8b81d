"""A resumed sweep is the sweep it would have been: bit for bit, wherever the interruption fell (issue #19).

Members train one after another on a CPU (`group.vectorize_members`), each by `grokkit train`'s own
compiled chunk, so neither the group's width nor an interruption can change a member's numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import GROKS

from grokkit.checkpoint import list_checkpoints, load_checkpoint
from grokkit.config import resolve
from grokkit.rundir import RunDir
from grokkit.runner import _DiskSink, resume_sweep, start_run, start_sweep
from grokkit.sweep import SweepSpec

# 70% train: seeds 5 and 1 exit early (generalized at 425 and 475, out at 525 and 575: measured);
# seed 2 generalizes at 800, after this budget. Three members, so a program of width 3 would
# shrink to 2 at step 525 and be compacted to 1 at 575.
EXITS = {**GROKS, "data.train_frac": 0.7, "train.steps": 700, "train.checkpoint_every": 100}
SEEDS = [5, 1, 2]
STOP = 550  # between the two early exits


def records(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in RunDir.open(run_dir).read_metrics().records]


def final_arrays(run_dir: Path) -> dict[str, np.ndarray]:
    return load_checkpoint(list_checkpoints(Path(run_dir) / "checkpoints")[-1])[0]


def outcome(run_dir: Path) -> dict:
    summary = json.loads((Path(run_dir) / "summary.json").read_text())
    return {k: v for k, v in summary.items() if k not in ("updated", "final")}


def assert_bit_identical(run_a: Path, run_b: Path) -> None:
    assert records(run_a) == records(run_b)
    a, b = final_arrays(run_a), final_arrays(run_b)
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a), [k for k in a if not np.array_equal(a[k], b[k])]
    assert outcome(run_a) == outcome(run_b)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted sweep."""
    root = tmp_path_factory.mktemp("straight")
    spec = SweepSpec(resolve(None, EXITS), {"seed": SEEDS})
    result = start_sweep(spec, root / "sweep")
    assert result.reasons == {"seed=5": "early-exit", "seed=1": "early-exit", "seed=2": "budget"}
    exits = [outcome(root / "sweep" / f"seed={s}")["step"] for s in SEEDS]
    assert exits[0] < STOP < exits[1]  # 525, 575 (700: the budget)
    return spec, root / "sweep"


class StopAt:
    """A stop request that fires at the first check after `step` (one check per chunk)."""

    def __init__(self, sweep_dir: Path, step: int):
        self.sweep_dir, self.step = sweep_dir, step

    def __call__(self) -> bool:
        written = [RunDir.open(d).read_metrics().records for d in self.sweep_dir.iterdir() if d.is_dir()]
        return max((r[-1]["step"] for r in written if r), default=0) >= self.step


def test_resumed_after_early_exits_is_bit_identical(straight, tmp_path):
    """Stopped at step 550: one member has exited early, two are left; resume must not change them."""
    spec, reference = straight
    first = start_sweep(spec, tmp_path / "sweep", stop=StopAt(tmp_path / "sweep", STOP))
    assert first.interrupted
    assert first.reasons == {"seed=5": "early-exit", "seed=1": "interrupted", "seed=2": "interrupted"}
    assert outcome(tmp_path / "sweep" / "seed=1")["step"] == STOP
    second = resume_sweep(tmp_path / "sweep")
    assert second.reasons == {"seed=5": "done before", "seed=1": "early-exit", "seed=2": "budget"}
    for seed in SEEDS:
        assert_bit_identical(tmp_path / "sweep" / f"seed={seed}", reference / f"seed={seed}")


class Crash(BaseException):
    """Stands in for kill -9: nothing after it runs (not an Exception, so no handler catches it)."""


def test_resumed_after_a_crash_between_two_checkpoint_writes_is_bit_identical(straight, tmp_path, monkeypatch):
    """Killed at step 300 after seed=5's checkpoint, before seed=1's: the members resume from different steps."""
    spec, reference = straight
    save = _DiskSink.on_checkpoint

    def crash_at_the_second_write(self, state, elapsed_s):
        if self.run.path.name == "seed=1" and int(state.step) == 300:
            raise Crash
        save(self, state, elapsed_s)

    monkeypatch.setattr(_DiskSink, "on_checkpoint", crash_at_the_second_write)
    with pytest.raises(Crash):
        start_sweep(spec, tmp_path / "sweep")
    monkeypatch.setattr(_DiskSink, "on_checkpoint", save)
    newest = {s: list_checkpoints(tmp_path / "sweep" / f"seed={s}" / "checkpoints")[-1].step for s in SEEDS}
    assert newest == {5: 300, 1: 200, 2: 200}
    resumed = resume_sweep(tmp_path / "sweep")
    assert resumed.groups == 2  # (step 300: seed=5), (step 200: seed=1, seed=2)
    assert resumed.reasons == {"seed=5": "early-exit", "seed=1": "early-exit", "seed=2": "budget"}
    for seed in SEEDS:
        assert_bit_identical(tmp_path / "sweep" / f"seed={seed}", reference / f"seed={seed}")


def test_each_member_is_its_standalone_train_run(straight, tmp_path):
    """Early exits, full batch: every member equals `grokkit train` of its config, bit for bit."""
    spec, reference = straight
    for member in spec.members():
        start_run(member.config, tmp_path / member.name)
        assert_bit_identical(tmp_path / member.name, reference / member.name)
