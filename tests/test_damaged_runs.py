"""Run folders with damaged files: one line naming the file (and field), never a traceback (#19).

Each case damages one file of a run made by the library, then runs the commands that read that
file as real `grokkit` processes: an error is one line on stderr (exit 1 or 2); where a command can
go on without the damaged part (report skipping a bad metrics line) it warns in one line instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY

from grokkit.config import resolve
from grokkit.runner import start_run

GROKKIT = [sys.executable, "-m", "grokkit"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("made") / "run"
    start_run(resolve(None, {**TINY, "train.steps": 40, "train.early_exit": False}), run_dir)
    return run_dir


def rewrite_json(name: str, change: Callable[[object], object]) -> Callable[[Path], None]:
    def damage(run_dir: Path) -> None:
        path = run_dir / name
        path.write_text(json.dumps(change(json.loads(path.read_text()))))

    return damage


def set_field(section: str, key: str, value) -> Callable[[object], object]:
    def change(raw):
        raw[section][key] = value
        return raw

    return change


def every_sidecar(value) -> Callable[[Path], None]:
    def damage(run_dir: Path) -> None:
        for sidecar in (run_dir / "checkpoints").glob("*.json"):
            sidecar.write_text(json.dumps(value))

    return damage


def metrics_line_2(payload: bytes) -> Callable[[Path], None]:
    def damage(run_dir: Path) -> None:
        lines = (run_dir / "metrics.jsonl").read_bytes().splitlines()
        lines[1] = payload
        (run_dir / "metrics.jsonl").write_bytes(b"\n".join(lines) + b"\n")

    return damage


def metrics_field(key: str, value) -> Callable[[Path], None]:
    def damage(run_dir: Path) -> None:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        record = json.loads(lines[1])
        record[key] = value
        metrics_line_2(json.dumps(record).encode())(run_dir)

    return damage


def garbage_split(run_dir: Path) -> None:
    (run_dir / "split.npz").write_bytes(np.random.default_rng(0).bytes(700))


def float_split(run_dir: Path) -> None:
    with np.load(run_dir / "split.npz") as npz:
        train, val = npz["train_idx"], npz["val_idx"]
    np.savez(run_dir / "split.npz", train_idx=train.astype(np.float32), val_idx=val)


def foreign_split(run_dir: Path) -> None:
    """A split of p=13 (169 examples) in a p=11 run (121 examples)."""
    order = np.random.default_rng(0).permutation(169)
    np.savez(run_dir / "split.npz", train_idx=np.sort(order[:84]), val_idx=np.sort(order[84:]))


RESUME = ["resume", "{run}", "--steps", "60"]
REPORT = ["report", "{run}", "--json"]
INSPECT = ["inspect", "{run}"]
EXPORT = ["export", "{run}", "--csv", "{tmp}/out.csv"]
LENS = ["export", "{run}", "--transformerlens", "{tmp}/lens"]

CONFIG_READERS = {"resume": RESUME, "report": REPORT, "inspect": INSPECT, "export": EXPORT}
CASES: list[tuple[str, Callable[[Path], None], dict[str, list[str]], tuple[str, ...]]] = [
    ("config-list", rewrite_json("config.json", lambda raw: [raw]), CONFIG_READERS,
     ("config.json: must be a JSON object of settings, got a list",)),
    ("config-wrong-type", rewrite_json("config.json", set_field("train", "steps", "40")), CONFIG_READERS,
     ("config.json: train.steps must be int, got '40'",)),
    ("config-eval-every-0", rewrite_json("config.json", set_field("train", "eval_every", 0)), CONFIG_READERS,
     ("config.json: train.eval_every must be >= 1, got 0",)),
    ("config-section-not-a-table", rewrite_json("config.json", lambda raw: {**raw, "model": 3}), CONFIG_READERS,
     ("config.json: [model] must be a table of settings",)),
    ("summary-list", rewrite_json("summary.json", lambda raw: [raw]),
     {"resume": RESUME, "report": REPORT, "export": EXPORT}, ("summary.json: must be a JSON object, got a list",)),
    ("summary-step-wrong-type", rewrite_json("summary.json", lambda raw: {**raw, "step": "forty"}),
     {"resume": RESUME, "report": REPORT, "export": EXPORT}, ("summary.json: step must be an integer >= 0",)),
    ("summary-status-unknown", rewrite_json("summary.json", lambda raw: {**raw, "status": 7}),
     {"resume": RESUME, "report": REPORT}, ("summary.json: status must be one of",)),
    ("sidecars-not-objects", every_sidecar([1, 2]), {"resume": RESUME},
     ("step_000000040.json: the sidecar must be a JSON object, got list",)),
    ("sidecars-not-objects", every_sidecar([1, 2]), {"inspect": INSPECT, "export": LENS}, ("no valid checkpoint",)),
    ("sidecars-wrong-types", every_sidecar({"sha256": 5, "step": 40}), {"resume": RESUME},
     ("step_000000040.json: sha256 must be a string",)),
    ("split-garbage", garbage_split, {"resume": RESUME, "inspect": INSPECT, "export": LENS},
     ("split.npz: is not a valid .npz archive",)),
    ("split-floats", float_split, {"resume": RESUME, "inspect": INSPECT},
     ("split.npz: train_idx must be a non-empty 1-D array of integers",)),
    ("split-of-another-p", foreign_split, {"resume": RESUME, "inspect": INSPECT},
     ("split.npz: holds 84 train + 85 validation examples, but config.json describes 60 + 61",)),
    ("metrics-wrong-type", metrics_field("val_acc", "high"), {"resume": RESUME},
     ("metrics.jsonl line 2: val_acc must be a number, got 'high'",)),
    ("metrics-step-wrong-type", metrics_field("step", "20"), {"resume": RESUME},
     ("metrics.jsonl line 2: step must be an integer >= 0, got '20'",)),
    ("metrics-not-utf8", metrics_line_2(b'{"step": 20, "train_loss": \xff\xfe}'), {"resume": RESUME},
     ("metrics.jsonl line 2: not UTF-8 text",)),
    ("env-list", rewrite_json("env.json", lambda raw: [raw]), {"resume": RESUME},
     ("env.json: must be a JSON object, got a list", "--force")),
]  # fmt: skip

ERRORS = [
    pytest.param(damage, command, args, words, id=f"{name}-{command}")
    for name, damage, commands, words in CASES
    for command, args in commands.items()
]


def grokkit(args: list[str], run_dir: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    argv = [a.format(run=run_dir, tmp=tmp_path) for a in args]
    return subprocess.run([*GROKKIT, *argv], env=ENV, capture_output=True, text=True, timeout=300)


def one_line(stream: str) -> str:
    lines = stream.strip().splitlines()
    assert len(lines) == 1, stream
    return lines[0]


@pytest.mark.parametrize(("damage", "command", "args", "words"), ERRORS)
def test_damaged_file_is_one_line_naming_it(made, tmp_path, damage, command, args, words):
    run_dir = Path(shutil.copytree(made, tmp_path / "run"))
    damage(run_dir)
    result = grokkit(args, run_dir, tmp_path)
    assert result.returncode in (1, 2), result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    line = one_line(result.stderr)
    assert line.startswith("error:")
    for word in words:
        assert word in line, line


WARNINGS = [
    pytest.param(metrics_field("val_acc", "high"), "line 2: val_acc must be a number, got 'high'", id="wrong-type"),
    pytest.param(metrics_field("step", "20"), "line 2: step must be an integer >= 0, got '20'", id="step-wrong-type"),
    pytest.param(metrics_field("param_norm", None), "line 2: param_norm must be a number, got None", id="null"),
    pytest.param(metrics_line_2(b'{"step": 20, "train_loss": \xff\xfe}'), "line 2: not UTF-8 text", id="not-utf8"),
    pytest.param(metrics_line_2(b"[20, 0.5]"), "line 2: must be a JSON object, got a list", id="list"),
]


@pytest.mark.parametrize(("damage", "words"), WARNINGS)
def test_report_and_export_skip_a_bad_metrics_line_and_name_it(made, tmp_path, damage, words):
    run_dir = Path(shutil.copytree(made, tmp_path / "run"))
    damage(run_dir)
    report = grokkit(REPORT, run_dir, tmp_path)
    assert report.returncode == 0, report.stdout + report.stderr
    warning = one_line(report.stderr)
    assert "metrics.jsonl: skipped unreadable line(s) [2]" in warning and words in warning, warning
    assert [r for r in json.loads(report.stdout)["bad_metrics_lines"]] == [2]
    export = grokkit(EXPORT, run_dir, tmp_path)
    assert export.returncode == 0, export.stdout + export.stderr
    assert "Traceback" not in export.stderr
    assert len((tmp_path / "out.csv").read_text().splitlines()) == 1 + 3


def test_env_json_damaged_resumes_with_force(made, tmp_path):
    run_dir = Path(shutil.copytree(made, tmp_path / "run"))
    rewrite_json("env.json", lambda raw: [raw])(run_dir)
    result = grokkit([*RESUME, "--force"], run_dir, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "env.json is damaged (--force: resuming without the environment check)" in result.stdout


def test_read_only_run_folder(made, tmp_path):
    """resume says the folder must be writable (exit 2, nothing changed); report reads it as usual."""
    run_dir = Path(shutil.copytree(made, tmp_path / "run"))
    if os.geteuid() != 0:
        for path in [run_dir, *run_dir.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
        wrap = lambda argv: argv  # noqa: E731
    else:  # root writes through permissions: a read-only bind mount in a private mount namespace instead
        if shutil.which("unshare") is None:
            pytest.skip("running as root without unshare(1)")
        probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True)
        if probe.returncode != 0:
            pytest.skip("running as root and cannot make a mount namespace")

        def wrap(argv: list[str]) -> list[str]:
            mount = f'mount --bind {run_dir} {run_dir} && mount -o remount,bind,ro {run_dir} && exec "$@"'
            return ["unshare", "--mount", "--propagation", "private", "sh", "-c", mount, "sh", *argv]

    try:
        for args, refused in ((RESUME, True), (REPORT, False)):
            argv = [*GROKKIT, *(a.format(run=run_dir, tmp=tmp_path) for a in args)]
            result = subprocess.run(wrap(argv), env=ENV, capture_output=True, text=True, timeout=300)
            assert "Traceback" not in result.stderr
            if refused:
                assert result.returncode == 2, result.stdout + result.stderr
                assert "cannot lock" in one_line(result.stderr) and "writable" in result.stderr
            else:
                assert result.returncode == 0, result.stdout + result.stderr
                assert json.loads(result.stdout)["steps"] == 40
    finally:
        for path in [run_dir, *run_dir.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)


def sweep_with(tmp_path: Path, change: Callable[[dict], dict]) -> Path:
    from grokkit.sweep import SweepSpec, create_sweep_dir

    sweep = tmp_path / "sweep"
    create_sweep_dir(sweep, SweepSpec(resolve(None, {**TINY, "train.steps": 20}), {"seed": [0, 1]}))
    raw = json.loads((sweep / "sweep.json").read_text())
    (sweep / "sweep.json").write_text(json.dumps(change(raw)))
    return sweep


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda raw: [raw], "sweep.json: must be a JSON object, got list"),
        (lambda raw: {**raw, "axes": [0, 1]}, "sweep.json: axes must be a JSON object of value lists"),
        (lambda raw: {**raw, "axes": {"seed": 3}}, "sweep.json: axes.seed must be a non-empty list of values"),
        (lambda raw: {**raw, "axes": {"seed": ["0"]}}, "sweep.json: axes.seed must be int, got '0'"),
        (lambda raw: {**raw, "axes": {"seed": [1, 1]}}, "sweep.json: axes list a value twice"),
        (lambda raw: {**raw, "base": {**raw["base"], "train": {**raw["base"]["train"], "eval_every": 0}}},
         "sweep.json: train.eval_every must be >= 1, got 0"),
    ],
    ids=["list", "axes-list", "axis-not-list", "axis-wrong-type", "axis-repeats", "eval-every-0"],
)  # fmt: skip
def test_damaged_sweep_json_is_one_line(tmp_path, change, words):
    sweep = sweep_with(tmp_path, change)
    for args in (["report", str(sweep)], ["resume", str(sweep)]):
        result = subprocess.run([*GROKKIT, *args], env=ENV, capture_output=True, text=True, timeout=300)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        assert words in one_line(result.stderr)
