"""Fault injection on real `grokkit` processes: kill -9, signals, full disk, corrupt files, two writers, NaN."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, TINY_FLAGS

from grokkit.checkpoint import PAUSE_ENV, CheckpointError, list_checkpoints, load_checkpoint
from grokkit.config import resolve
from grokkit.rundir import RunDir
from grokkit.runner import start_run

GROKKIT = [sys.executable, "-m", "grokkit"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
LONG = [*TINY_FLAGS, "--checkpoint-every", "20", "--no-early-exit", "--batch-size", "16"]


def straight_run(tmp_path: Path, steps: int, checkpoint_every: int = 20) -> Path:
    config = resolve(None, {**TINY, "train.steps": steps, "train.checkpoint_every": checkpoint_every,
                            "train.early_exit": False, "optim.batch_size": 16})  # fmt: skip
    start_run(config, tmp_path / f"straight-{steps}")
    return tmp_path / f"straight-{steps}"


def records(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in RunDir.open(run_dir).read_metrics().records]


def final_arrays(run_dir: Path) -> dict[str, np.ndarray]:
    return load_checkpoint(list_checkpoints(RunDir.open(run_dir).checkpoints)[-1])[0]


def assert_bit_identical(run_a: Path, run_b: Path) -> None:
    assert records(run_a) == records(run_b)
    a, b = final_arrays(run_a), final_arrays(run_b)
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)


def newest_valid_step(run_dir: Path) -> int:
    for info in reversed(list_checkpoints(run_dir / "checkpoints")):
        try:
            load_checkpoint(info)
            return info.step
        except CheckpointError:
            continue
    return 0


def wait_for(predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def where_the_kill_landed(run_dir: Path, since: float) -> str:
    """Classify by what the killed process left behind (files it touched after `since`)."""
    if _checkpoint_temp_file(run_dir, since):
        return "inside a checkpoint write"
    if _checkpoint_without_sidecar(run_dir, since):
        return "between checkpoint file and sidecar"
    return "elsewhere (start-up, training, evaluation)"


def _fresh(path: Path, since: float) -> bool:
    try:
        return path.stat().st_mtime >= since
    except FileNotFoundError:
        return False


def _checkpoint_temp_file(run_dir: Path, since: float) -> bool:
    return any(_fresh(p, since) for p in (run_dir / "checkpoints").glob(".*.tmp"))


def _checkpoint_without_sidecar(run_dir: Path, since: float) -> bool:
    return any(not c.sidecar.exists() and _fresh(c.path, since) for c in list_checkpoints(run_dir / "checkpoints"))


def kill_during(command: list[str], run_dir: Path, moment: str, delay: float) -> tuple[str, str]:
    """Start `command`, kill -9 it at `moment`, and say where the kill landed; returns (output, place)."""
    started = time.time()
    proc = subprocess.Popen(
        command, env={**ENV, PAUSE_ENV: "0.15"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if not (run_dir / "config.json").exists():
        wait_for(lambda: (run_dir / "metrics.jsonl").exists() or proc.poll() is not None)
    if moment == "checkpoint write":
        wait_for(lambda: _checkpoint_temp_file(run_dir, started) or proc.poll() is not None)
    elif moment == "before sidecar":
        wait_for(lambda: _checkpoint_without_sidecar(run_dir, started) or proc.poll() is not None)
    else:
        time.sleep(delay)
    if proc.poll() is not None:
        pytest.fail(f"the run finished before it could be killed; raise the step budget\n{proc.communicate()[0]}")
    proc.kill()
    output = proc.communicate()[0]
    assert proc.returncode == -signal.SIGKILL
    return output, where_the_kill_landed(run_dir, started)


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume_is_bit_exact(tmp_path):
    """Kills rotate between: inside a checkpoint's write, between its file and sidecar, and a random moment."""
    steps, kills = 1000, 12  # a budget the kills cannot finish: each trial must be killed mid-run
    run_dir = tmp_path / "run"
    rng = random.Random(20261125)
    landed: dict[str, int] = {}
    for trial in range(kills):
        if trial == 0:
            command = [*GROKKIT, "train", *LONG, "--steps", str(steps), "--run-dir", str(run_dir)]
        else:
            command = [*GROKKIT, "resume", str(run_dir)]
        expected_start = None if trial == 0 else newest_valid_step(run_dir)
        moment = ("checkpoint write", "before sidecar", "random")[trial % 3]
        output, place = kill_during(command, run_dir, moment, rng.uniform(0.05, 2.5))
        if expected_start is not None and "resuming" in output:
            assert f"from step {expected_start:,} " in output, output
        landed[place] = landed.get(place, 0) + 1
    expected_start = newest_valid_step(run_dir)
    finished = subprocess.run([*GROKKIT, "resume", str(run_dir)], env=ENV, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert f"from step {expected_start:,} " in finished.stdout
    assert_bit_identical(run_dir, straight_run(tmp_path, steps))
    print(f"\nkill -9 trials: {kills}; landed: {landed}; every resume bit-exact with the uninterrupted run")
    assert landed.get("inside a checkpoint write", 0) >= kills // 3
    assert landed.get("between checkpoint file and sidecar", 0) >= kills // 3


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_saves_a_checkpoint_then_resume_is_bit_exact(tmp_path, signum):
    run_dir = tmp_path / "cut"
    command = [*GROKKIT, "train", *LONG, "--steps", "1000000", "--checkpoint-every", "100", "--run-dir", str(run_dir)]
    proc = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    metrics = run_dir / "metrics.jsonl"
    wait_for(lambda: proc.poll() is not None or (metrics.exists() and len(metrics.read_text().splitlines()) >= 3))
    proc.send_signal(signum)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    assert f"Resume with: grokkit resume {run_dir}" in output
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    stopped_at = summary["step"]
    assert list_checkpoints(run_dir / "checkpoints")[-1].step == stopped_at

    total = stopped_at + 50
    resumed = subprocess.run([*GROKKIT, "resume", str(run_dir), "--steps", str(total)], env=ENV, capture_output=True,
                             text=True)  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"from step {stopped_at:,} " in resumed.stdout
    assert_bit_identical(run_dir, straight_run(tmp_path, total, checkpoint_every=100))


def grokkit_with_file_size_limit(limit: int, *args: str) -> list[str]:
    """`grokkit ARGS` in a process whose files may not grow past `limit` bytes (like a full disk: EFBIG)."""
    code = (
        "import resource, runpy, sys; "
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
        f"sys.argv = ['grokkit', *{list(args)!r}]; "
        "runpy.run_module('grokkit', run_name='__main__')"
    )
    return [sys.executable, "-c", code]


def test_full_disk_while_checkpointing_keeps_the_previous_checkpoint(tmp_path):
    run_dir = straight_run(tmp_path, 40)
    checkpoint_size = (run_dir / "checkpoints" / "step_000000040.npz").stat().st_size
    command = grokkit_with_file_size_limit(checkpoint_size // 2, "resume", str(run_dir), "--steps", "80")
    blocked = subprocess.run(command, env=ENV, capture_output=True, text=True)
    assert blocked.returncode == 1, blocked.stdout + blocked.stderr
    assert "cannot write the checkpoint for step 60" in blocked.stderr
    assert "Traceback" not in blocked.stderr and f"grokkit resume {run_dir}" in blocked.stderr
    folder = run_dir / "checkpoints"
    assert not list(folder.glob(".*.tmp")), "a half-written file was left behind"
    assert [c.step for c in list_checkpoints(folder)] == [20, 40]
    assert newest_valid_step(run_dir) == 40
    resumed = subprocess.run([*GROKKIT, "resume", str(run_dir), "--steps", "80"], env=ENV, capture_output=True,
                             text=True)  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "from step 40 " in resumed.stdout
    assert_bit_identical(run_dir, straight_run(tmp_path, 80))


@pytest.mark.parametrize("damage", ["flip", "truncate", "no-sidecar"])
def test_damaged_checkpoint_is_named_and_the_previous_one_used(tmp_path, damage):
    run_dir = tmp_path / "run"
    config = resolve(None, {**TINY, "train.steps": 60, "train.checkpoint_every": 20, "train.early_exit": False,
                            "optim.batch_size": 16})  # fmt: skip
    start_run(config, run_dir)
    newest = run_dir / "checkpoints" / "step_000000060.npz"
    payload = bytearray(newest.read_bytes())
    if damage == "flip":
        for i in range(100, len(payload), len(payload) // 7):
            payload[i] ^= 0x5A
        newest.write_bytes(bytes(payload))
    elif damage == "truncate":
        newest.write_bytes(bytes(payload[: len(payload) // 3]))
    else:
        newest.with_suffix(".json").unlink()
    resumed = subprocess.run([*GROKKIT, "resume", str(run_dir)], env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "step_000000060.npz failed to load" in resumed.stdout and "falling back" in resumed.stdout
    assert "from step 40 " in resumed.stdout
    assert_bit_identical(run_dir, straight_run(tmp_path, 60))


def test_torn_metrics_line_is_handled_by_report_and_resume(tmp_path):
    run_dir = tmp_path / "run"
    config = resolve(None, {**TINY, "train.steps": 40, "train.early_exit": False, "optim.batch_size": 16})
    start_run(config, run_dir)
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"step": 50, "train_loss": 0.1')
    report = subprocess.run([*GROKKIT, "report", str(run_dir), "--json"], env=ENV, capture_output=True, text=True)
    assert report.returncode == 0, report.stderr
    assert "skipped unreadable line(s) [5]" in report.stderr
    assert json.loads(report.stdout)["steps"] == 40
    resumed = subprocess.run([*GROKKIT, "resume", str(run_dir), "--steps", "60"], env=ENV, capture_output=True,
                             text=True)  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "unreadable line(s) [5]" in resumed.stdout
    assert [r["step"] for r in RunDir.open(run_dir).read_metrics().records] == [10, 20, 30, 40, 50, 60]


def test_second_process_on_a_run_directory_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    command = [*GROKKIT, "train", *LONG, "--steps", "1000000", "--run-dir", str(run_dir)]
    owner = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: owner.poll() is not None or (run_dir / "metrics.jsonl").exists())
        second = subprocess.run([*GROKKIT, "resume", str(run_dir)], env=ENV, capture_output=True, text=True)
        assert second.returncode == 2, second.stdout + second.stderr
        assert f"in use by pid {owner.pid}" in second.stderr
    finally:
        owner.send_signal(signal.SIGINT)
        owner.communicate(timeout=120)
    assert owner.returncode == 130


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    config = resolve(None, {**TINY, "train.steps": 20, "train.early_exit": False})
    start_run(config, run_dir)
    raw = json.loads((run_dir / "config.json").read_text())
    raw["optim"]["lr"] = 1e30  # fault injection: an absurd learning rate from step 20 on
    (run_dir / "config.json").write_text(json.dumps(raw))
    diverged = subprocess.run([*GROKKIT, "resume", str(run_dir), "--steps", "60"], env=ENV, capture_output=True,
                              text=True)  # fmt: skip
    assert diverged.returncode == 3, diverged.stdout + diverged.stderr
    assert "NaN/Inf" in diverged.stderr and "last good checkpoint (step 20) is kept" in diverged.stderr
    assert "Traceback" not in diverged.stderr
    assert [c.step for c in list_checkpoints(run_dir / "checkpoints")] == [20]
    assert newest_valid_step(run_dir) == 20
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "diverged"


def _array_digest(run_dir: Path) -> str:
    arrays = final_arrays(run_dir)
    digest = hashlib.sha256()
    for key in sorted(arrays):
        digest.update(key.encode() + arrays[key].tobytes())
    return digest.hexdigest()


def test_two_processes_give_identical_parameters(tmp_path):
    digests = []
    for name in ("a", "b"):
        command = [*GROKKIT, "train", *LONG, "--steps", "60", "--run-dir", str(tmp_path / name)]
        done = subprocess.run(command, env=ENV, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        digests.append(_array_digest(tmp_path / name))
    assert digests[0] == digests[1]
    assert records(tmp_path / "a") == records(tmp_path / "b")
