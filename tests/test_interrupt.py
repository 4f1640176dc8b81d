"""Ctrl-C / SIGTERM on a real `grokkit train` process, then `grokkit resume`: bit-exact."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import TINY, TINY_FLAGS

from grokkit.checkpoint import list_checkpoints, load_checkpoint
from grokkit.config import resolve
from grokkit.rundir import RunDir
from grokkit.runner import start_run

GROKKIT = [sys.executable, "-m", "grokkit"]


def _records(run_dir):
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in RunDir.open(run_dir).read_metrics().records]


def _final_arrays(run_dir):
    return load_checkpoint(list_checkpoints(RunDir.open(run_dir).checkpoints)[-1])[0]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_then_resume_is_bit_exact(tmp_path, signum):
    run_dir = tmp_path / "cut"
    flags = [*TINY_FLAGS, "--steps", "1000000", "--checkpoint-every", "100", "--no-early-exit", "--batch-size", "16"]
    proc = subprocess.Popen(
        [*GROKKIT, "train", *flags, "--run-dir", str(run_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    metrics = run_dir / "metrics.jsonl"
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signum)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    assert "Resume with: grokkit resume" in output
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    stopped_at = summary["step"]
    assert list_checkpoints(run_dir / "checkpoints")[-1].step == stopped_at

    total = stopped_at + 50
    resumed = subprocess.run([*GROKKIT, "resume", str(run_dir), "--steps", str(total)], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"from step {stopped_at}" in resumed.stdout

    config = resolve(None, {**TINY, "train.steps": total, "train.checkpoint_every": 100, "train.early_exit": False,
                            "optim.batch_size": 16})  # fmt: skip
    start_run(config, tmp_path / "straight")
    assert _records(run_dir) == _records(tmp_path / "straight")
    cut, straight = _final_arrays(run_dir), _final_arrays(tmp_path / "straight")
    assert cut.keys() == straight.keys()
    assert all(np.array_equal(cut[k], straight[k]) for k in cut)
