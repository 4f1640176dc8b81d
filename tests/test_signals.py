"""Signals and refusals on real `grokkit` processes: a second Ctrl-C while saving, SIGHUP, sweeps, no side effects."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY, TINY_FLAGS
from test_faults import ENV, GROKKIT, LONG, assert_bit_identical, newest_valid_step, straight_run, wait_for
from typer.testing import CliRunner

from grokkit.checkpoint import PAUSE_ENV
from grokkit.cli import app
from grokkit.config import resolve
from grokkit.runner import StopRequest, start_sweep
from grokkit.sweep import SweepSpec

FOREVER = ["--steps", "1000000", "--checkpoint-every", "100000"]  # no checkpoint but the one a stop writes


def evaluations(run_dir: Path) -> int:
    metrics = run_dir / "metrics.jsonl"
    return len(metrics.read_text().splitlines()) if metrics.exists() else 0


def temp_files_since(folder: Path, since: float) -> bool:
    """A checkpoint write in progress (its temp file), started after `since`."""
    for path in folder.glob(".*.tmp"):
        try:
            if path.stat().st_mtime >= since:
                return True
        except FileNotFoundError:
            continue
    return False


def assert_stopped_consistently(run_dir: Path) -> int:
    """Summary `interrupted`, its step the newest complete checkpoint's, no temp file left; returns the step."""
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted", summary["status"]
    assert newest_valid_step(run_dir) == summary["step"] > 0
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))
    return summary["step"]


def resume_to(run_dir: Path, total: int) -> None:
    resumed = subprocess.run([*GROKKIT, "resume", str(run_dir), "--steps", str(total)], env=ENV, capture_output=True,
                             text=True)  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr


def test_second_ctrl_c_during_the_checkpoint_write_still_stops_cleanly(tmp_path):
    run_dir = tmp_path / "run"
    command = [*GROKKIT, "train", *LONG, *FOREVER, "--run-dir", str(run_dir)]
    proc = subprocess.Popen(command, env={**ENV, PAUSE_ENV: "0.6"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip
    wait_for(lambda: proc.poll() is not None or evaluations(run_dir) >= 2)
    first = time.time()
    proc.send_signal(signal.SIGINT)
    wait_for(lambda: proc.poll() is not None or temp_files_since(run_dir / "checkpoints", first - 1))
    assert proc.poll() is None, "the run ended before the second Ctrl-C"
    proc.send_signal(signal.SIGINT)  # the second, while the checkpoint is being written
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    stopped_at = assert_stopped_consistently(run_dir)
    assert "SIGINT again: already stopping" in output, output
    assert f"Resume with: grokkit resume {run_dir}" in output
    resume_to(run_dir, stopped_at + 20)
    assert_bit_identical(run_dir, straight_run(tmp_path, stopped_at + 20, checkpoint_every=100000))


def _train_in_a_terminal(command: list[str], run_dir: Path) -> int:
    """Run `command` on its own pseudo-terminal (its controlling terminal), close that terminal once the run
    trains, and return the exit code: closing it is what sends SIGHUP, and later writes to it fail."""
    master, slave = pty.openpty()
    take_terminal = (
        "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); os.execv(sys.argv[1], sys.argv[1:])"
    )
    proc = subprocess.Popen([sys.executable, "-c", take_terminal, *command], env=ENV, stdin=slave, stdout=slave,
                            stderr=slave, start_new_session=True)  # fmt: skip
    os.close(slave)
    deadline = time.monotonic() + 120
    while evaluations(run_dir) < 2 and proc.poll() is None:
        assert time.monotonic() < deadline, "timed out"
        if select.select([master], [], [], 0.05)[0]:
            os.read(master, 1 << 16)  # keep the terminal drained, as a terminal would
    os.close(master)  # the terminal window closes
    return proc.wait(timeout=120)


@pytest.mark.parametrize("how", ["kill -HUP", "terminal closed"])
def test_sighup_stops_like_sigterm_then_resume_is_bit_exact(tmp_path, how):
    run_dir = tmp_path / "cut"
    command = [*GROKKIT, "train", *LONG, *FOREVER, "--run-dir", str(run_dir)]
    if how == "terminal closed":
        code = _train_in_a_terminal(command, run_dir)
    else:
        proc = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_for(lambda: proc.poll() is not None or evaluations(run_dir) >= 2)
        proc.send_signal(signal.SIGHUP)
        output, _ = proc.communicate(timeout=120)
        code = proc.returncode
    assert code == 130  # as for SIGTERM and Ctrl-C
    stopped_at = assert_stopped_consistently(run_dir)
    if how == "kill -HUP":
        assert f"Resume with: grokkit resume {run_dir}" in output, output
    resume_to(run_dir, stopped_at + 20)
    assert_bit_identical(run_dir, straight_run(tmp_path, stopped_at + 20, checkpoint_every=100000))


def test_sweep_stops_with_every_member_at_one_step_after_two_ctrl_c(tmp_path):
    sweep = tmp_path / "sweep"
    command = [*GROKKIT, "sweep", *LONG, *FOREVER, "--seed", "0,1,2", "--run-dir", str(sweep)]
    proc = subprocess.Popen(command, env={**ENV, PAUSE_ENV: "0.3"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip
    members = [sweep / f"seed={seed}" for seed in range(3)]
    wait_for(lambda: proc.poll() is not None or all(evaluations(m) >= 2 for m in members))
    first = time.time()
    proc.send_signal(signal.SIGINT)
    wait_for(lambda: proc.poll() is not None or any(temp_files_since(m / "checkpoints", first - 1) for m in members))
    assert proc.poll() is None, "the sweep ended before the second Ctrl-C"
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    steps = {assert_stopped_consistently(member) for member in members}
    assert len(steps) == 1, f"members stopped at different steps: {steps}"
    assert "already stopping" in output


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry under `folder`: its kind, mode and bytes (or link target)."""
    entries = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                content: bytes | str = os.readlink(path)
            elif stat.S_ISDIR(st.st_mode):
                content = ""
            else:
                content = path.read_bytes()
            entries[str(path.relative_to(folder))] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), content)
    return entries


@pytest.fixture
def interrupted_sweep(tmp_path):
    """A two-member sweep whose second member (shard 1/2) was interrupted at step 0; its env.json from another jax."""
    spec = SweepSpec(resolve(None, {**TINY, "train.early_exit": False}), {"seed": [0, 1]})
    stop = StopRequest()
    stop.signal = signal.SIGINT
    start_sweep(spec, tmp_path / "sweep", shard=(1, 2), stop=stop)
    env_file = tmp_path / "sweep" / "seed=1" / "env.json"
    env_file.write_text(json.dumps({**json.loads(env_file.read_text()), "jax": "0.0.1"}))
    return tmp_path / "sweep"


@pytest.mark.parametrize("extra", [[], ["--steps", "80"]], ids=["env differs", "env differs, --steps"])
def test_refused_sweep_resume_leaves_the_folder_unchanged(interrupted_sweep, extra):
    before = snapshot(interrupted_sweep)
    result = CliRunner().invoke(app, ["resume", str(interrupted_sweep), *extra])
    assert result.exit_code == 2, result.output
    assert "environment differs" in result.stderr and "--force" in result.stderr
    assert snapshot(interrupted_sweep) == before


def test_stale_staging_folders_are_removed_by_the_next_train(tmp_path):
    stale = tmp_path / ".old-run.creating-k2j4h5g6"  # left by a `train` killed while making its folder
    stale.mkdir()
    (stale / "env.json").write_text("{}")
    busy = tmp_path / ".busy-run.creating-a1b2c3d4"  # another `train` is making this one right now
    busy.mkdir()
    holder = os.open(busy, os.O_RDONLY | os.O_DIRECTORY)
    not_ours = [tmp_path / ".notes.creating-x", tmp_path / "old-run.creating-k2j4h5g6"]
    for path in not_ours:
        path.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / ".link.creating-zzzzzzzz").symlink_to(elsewhere)
    holder_proc = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.stdin.read()"], stdin=subprocess.PIPE,
                                   pass_fds=(holder,))  # fmt: skip
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)  # the lock is the open file's: the live child shares it
        os.close(holder)
        done = subprocess.run([*GROKKIT, "train", *TINY_FLAGS, "--steps", "10", "--run-dir", str(tmp_path / "new")],
                              env=ENV, capture_output=True, text=True)  # fmt: skip
    finally:
        holder_proc.communicate(b"")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "removed .old-run.creating-k2j4h5g6, left by a start that was interrupted" in done.stdout
    assert not stale.exists()
    assert busy.is_dir(), "a live process's staging folder was removed"
    assert all(path.is_dir() for path in not_ours) and (tmp_path / ".link.creating-zzzzzzzz").is_symlink()
    assert elsewhere.is_dir()
    assert (tmp_path / "new" / "config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if ".creating-" in p.name) == sorted(
        [busy.name, ".link.creating-zzzzzzzz", *(p.name for p in not_ours)]
    )
