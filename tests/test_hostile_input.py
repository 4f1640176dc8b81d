"""Hostile input (#19): every value bounded and checked before work starts; one line and exit 2, never a traceback.

Most cases run in-process (CliRunner); a few run as real `python -m grokkit` processes, timed. The
timings are printed (`pytest -s`), not asserted, except that a hang fails: the mod-div case with a
huge p once spent minutes in trial division.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import TINY, TINY_FLAGS
from typer.testing import CliRunner

from grokkit import data
from grokkit.cli import app
from grokkit.config import (
    INT32_MAX,
    MAX_PARAMETERS,
    Config,
    coerce,
    load_config_file,
    parameter_count,
    parse_text,
    resolve,
)
from grokkit.errors import UsageError

runner = CliRunner()
LONG_NAME = "a" * 256
HUGE = "9" * 400  # a 400-digit number


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "100"})


def assert_one_line(result, *fragments: str) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert len(lines[0]) < 400, lines[0]  # a huge value is described, not printed
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


TOML_FILES: dict[str, bytes] = {
    "non-utf8": b"\xff\xfe[train]\nsteps = 10\n",
    "latin-1-comment": "[train]\nsteps = 10 # café\n".encode("latin-1"),
    "nested-arrays": b"seed = " + b"[" * 40_000 + b"]" * 40_000 + b"\n",
    "nested-inline-tables": b"seed = " + b"{a = " * 10_000 + b"1" + b"}" * 10_000 + b"\n",
    "nested-value": b"[data]\np = " + b"[" * 600 + b"]" * 600 + b"\n",
    "dotted-key-40000-deep": b"a." * 40_000 + b"b = 1\n",  # tomllib is quadratic here: 40 s unchecked
    "huge-int": f"[data]\np = {HUGE}\n".encode(),
    "over-4300-digits": f"[data]\np = {'9' * 5000}\n".encode(),
    "huge-float": b"[optim]\nlr = 1e400\n",
    "huge-int-for-float": f"[optim]\nlr = {HUGE}\n".encode(),
    "float32-overflow": b"[optim]\nlr = 1e39\n",
    "array-for-scalar": b"seed = [1, 2]\n",
    "table-for-scalar": b"[data]\np = {a = 1}\n",
    "date-for-int": b"seed = 1979-05-27\n",
    "bool-for-int": b"[train]\nsteps = true\n",
    "section-not-table": b"data = 5\n",
    "many-decimal-points": b"# a config\n" + b"".join(f"x{i} = {i}.5\n".encode() for i in range(2000)),
    "seed-over-int32": b"seed = 2147483648\n",
    "eval-every-over-int32": b"[train]\neval_every = 4294967296\n",
    "newline-in-task": b'[data]\ntask = "mod\\nadd"\n',
    "newline-in-key": b'"a\\nb" = 1\n',
    "long-key": b'"' + b"k" * 50_000 + b'" = 1\n',
    "too-large": b"# " + b"x" * 200_000 + b"\n",
}


@pytest.mark.parametrize("name", sorted(TOML_FILES))
def test_hostile_toml_is_one_line_naming_the_file(tmp_path, name):
    path = tmp_path / f"{name}.toml"
    path.write_bytes(TOML_FILES[name])
    start = time.perf_counter()
    line = assert_one_line(invoke("train", "--config", path, "--run-dir", tmp_path / "r"), "--config", str(path))
    print(f"{name}: {time.perf_counter() - start:.3f}s  {line}")
    assert not (tmp_path / "r").exists()


def test_toml_errors_name_the_field(tmp_path):
    cases = {
        "[train]\nsteps = 99999999999999999999\n": "train.steps must be <= 2147483647",
        "[data]\np = 618970019642690137449562111\n": "data.p must be <= 7071",
        "[optim]\nlr = [0.1]\n": "optim.lr must be float, got an array of 1 values",
        "[model]\nd_model = 100000000\n": "model.d_model must be <= 1048576",
    }
    for text, fragment in cases.items():
        path = tmp_path / "c.toml"
        path.write_text(text)
        with pytest.raises(UsageError, match=f"c.toml: {fragment}"):
            load_config_file(path)


# (command line, fragments of the one error line); {tmp} is a scratch folder
HOSTILE = [
    (["train", "--task", "mod-div", "--p", "618970019642690137449562111"], ["--p", "7071"]),
    (["train", "--task", "mod-div", "--p", str(2**61 - 1)], ["--p", "7071"]),
    (["train", "--p", "10**400"], ["--p", "'10**400' is not a valid value"]),
    (["train", "--p", HUGE], ["--p", "a 400-digit number"]),
    (["train", "--p", "1" + "0" * 5000], ["--p", "not a valid value"]),
    (["train", "--p", "-" + HUGE], ["--p", "at least 2", "400-digit negative number"]),
    (["train", "--seed", "2147483648"], ["--seed", "<= 2147483647"]),
    (["train", "--seed", "-1"], ["--seed", ">= 0"]),
    (["train", "--data-seed", HUGE], ["--data-seed", "<= 2147483647"]),
    (["train", "--eval-every", "4294967296"], ["--eval-every", "<= 2147483647"]),
    (["train", "--eval-every", "4294967296", "--checkpoint-every", "4294967296"], ["--eval-every"]),
    (["train", "--steps", "4294967296"], ["--steps", "int32"]),
    (["train", "--warmup", "4294967296"], ["--warmup", "int32"]),
    (["train", "--early-exit-window", HUGE], ["--early-exit-window"]),
    (["train", "--keep-checkpoints", HUGE], ["--keep-checkpoints"]),
    (["train", "--batch-size", HUGE], ["--batch-size"]),
    (["train", "--layers", "100000"], ["--layers", "<= 64"]),
    (["train", "--d-model", "100000000"], ["--d-model", "<= 1048576"]),
    (["train", "--d-model", "65536", "--heads", "1"], ["--d-model", "parameters, over the limit"]),
    (["train", "--model", "mlp", "--width", "1000000", "--depth", "3"], ["--width", "parameters"]),
    (["train", "--grokfast", "ma", "--grokfast-window", "100000"], ["--grokfast-window", "past gradients"]),
    (["train", "--task", "sparse-parity", "--n-bits", HUGE], ["--n-bits", "<= 62"]),
    (["train", "--task", "sparse-parity", "--k-bits", "-" + HUGE], ["--k-bits"]),
    (["train", "--task", "sparse-parity", "--n-bits", "62", "--n-samples", "50000000"], ["--n-samples"]),
    (["train", "--lr", "1e400"], ["--lr", "finite"]),
    (["train", "--lr", HUGE], ["--lr", "finite"]),
    (["train", "--lr", "1e39"], ["--lr", "float32"]),
    (["train", "--lr", "-0"], ["--lr", "> 0"]),
    (["train", "--wd", "-inf"], ["--wd", "finite"]),
    (["train", "--init-scale", "1e-400"], ["--init-scale", "> 0"]),
    (["train", "--train-frac", "-0.0"], ["--train-frac"]),
    (["train", "--seed", "٣"], ["--seed", "ASCII digits"]),
    (["train", "--lr", "٠.١"], ["--lr", "ASCII digits"]),
    (["train", "--seed", "0x10"], ["--seed", "not a valid value"]),
    (["train", "--seed", ""], ["--seed", "not a valid value"]),
    (["train", "--seed", "nan"], ["--seed", "not a valid value"]),
    (["train", "--steps", "1.5"], ["--steps", "not a valid value"]),
    (["train", "--task", ""], ["--task", "unknown task"]),
    (["train", "--task", "x" * 100_000], ["--task", "at most 100"]),
    (["train", "--task", "mod\nadd"], ["--task", "printable"]),
    (["train", "--preset", "x" * 100_000], ["--preset", "at most 100"]),
    (["train", "--preset", "a\nb"], ["--preset", "printable"]),
    (["train", "--run-dir", f"{{tmp}}/{LONG_NAME}"], ["--run-dir", "256 bytes", "255"]),
    (["train", "--run-dir", "{tmp}/" + ("b" * 200 + "/") * 25], ["--run-dir", "the path is"]),
    (["train", "--config", f"{{tmp}}/{LONG_NAME}"], ["--config", "256 bytes"]),
    (["sweep", "--run-dir", f"{{tmp}}/{LONG_NAME}"], ["--run-dir", "256 bytes"]),
    (["sweep", "--seed", "0:1000000000000"], ["--seed", "over 10,000"]),
    (["sweep", "--seed", f"0:{HUGE}"], ["--seed", "over 10,000"]),
    (["sweep", "--seed", "0:300", "--lr", ",".join(f"{i}e-4" for i in range(1, 301))], ["grid has 90,000"]),
    (["sweep", "--warmup", ",".join(str(i) for i in range(15_000))], ["--warmup", "15,000 values"]),
    (["sweep", "--seed", "2147483640:2147483650"], ["--seed", "<= 2147483647"]),
    (["sweep", "--seed", "0:٣"], ["--seed", "not a non-empty range"]),
    (["sweep", "--p", "5,618970019642690137449562111"], ["--p", "7071"]),
    (["data", "--out", f"{{tmp}}/{LONG_NAME}.npz"], ["--out", "260 bytes"]),
    (["data", "--out", "{tmp}/d.npz", "--task", "mod-div", "--p", "618970019642690137449562111"], ["--p"]),
    (["data", "--out", "{tmp}/d.npz", "--seed", "2147483648"], ["--seed"]),
    (["tasks", "--p", "1" + "0" * 4000], ["--p", "7071"]),
    (["resume", f"{{tmp}}/{LONG_NAME}"], ["RUN_DIR", "256 bytes"]),
    (["resume", "{tmp}/run", "--steps", "4294967296"], ["--steps", "int32"]),
    (["report", f"{{tmp}}/{LONG_NAME}"], ["RUN_DIRS", "256 bytes"]),
    (["report", "{tmp}/run", "--png", f"{{tmp}}/{LONG_NAME}.png"], ["--png", "260 bytes"]),
    (["compare", "{tmp}/run", f"{{tmp}}/{LONG_NAME}"], ["CANDIDATE", "256 bytes"]),
    (["inspect", f"{{tmp}}/{LONG_NAME}"], ["RUN_DIR", "256 bytes"]),
    (["export", "{tmp}/run", "--csv", f"{{tmp}}/{LONG_NAME}.csv"], ["--csv", "260 bytes"]),
]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    from grokkit.rundir import RunDir

    config = resolve(None, {"data.p": 11, "train.steps": 10})
    RunDir.create(root / "run", config, {}, data.split_dataset(121, 0.35, 0), link_latest=False)
    return root


@pytest.mark.parametrize(("args", "fragments"), HOSTILE, ids=[" ".join(a)[:60] for a, _ in HOSTILE])
def test_hostile_command_lines_are_one_line_and_exit_2(scratch, args, fragments):
    start = time.perf_counter()
    line = assert_one_line(invoke(*[a.replace("{tmp}", str(scratch)) for a in args]), *fragments)
    print(f"{time.perf_counter() - start:.3f}s  {line[:150]}")
    assert sorted(p.name for p in scratch.iterdir()) == ["run"]  # nothing was made


REAL_PROCESSES = {
    "mod-div p=2^89-1": ["train", "--task", "mod-div", "--p", "618970019642690137449562111"],
    "mod-div p=2^61-1": ["train", "--task", "mod-div", "--p", str(2**61 - 1)],
    "p 10**400": ["train", "--p", "10**400"],
    "p 400 digits": ["train", "--p", HUGE],
    "seed 2^31": ["train", "--seed", "2147483648"],
    "eval-every 2^32": ["train", "--eval-every", "4294967296"],
    "256-char run dir": ["train", "--run-dir", LONG_NAME],
    "non-UTF-8 TOML": ["train", "--config", "bad.toml"],
    "nested TOML": ["train", "--config", "deep.toml"],
}


def test_listed_hostile_inputs_exit_2_quickly_in_real_processes(tmp_path):
    """The inputs listed in #19, each a real process (two at a time); each must end (a hang fails at 20 s).

    Printed: each one's wall time beside a bare start-up (`grokkit --version`), so the difference is our own work.
    """
    (tmp_path / "bad.toml").write_bytes(TOML_FILES["non-utf8"])
    (tmp_path / "deep.toml").write_bytes(TOML_FILES["nested-arrays"])
    env = {**os.environ, "COLUMNS": "100"}

    def run(args: list[str]) -> tuple[subprocess.CompletedProcess[str] | None, float]:
        start = time.perf_counter()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "grokkit", *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                timeout=20,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return None, time.perf_counter() - start
        return done, time.perf_counter() - start

    _, start_up = run(["--version"])
    print(f"\n{'start-up (grokkit --version)':20s} {start_up:5.2f}s")
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(REAL_PROCESSES, pool.map(run, REAL_PROCESSES.values()), strict=True))
    for name, (done, seconds) in results.items():
        assert done is not None, f"{name}: still running after 20 s"
        print(f"{name:28s} {seconds:5.2f}s  exit {done.returncode}  {done.stderr.strip()[:100]}")
        assert done.returncode == 2, (name, done.stdout, done.stderr)
        assert "Traceback" not in done.stdout + done.stderr and len(done.stderr.strip().splitlines()) == 1, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml", "deep.toml"]


def test_size_is_checked_before_any_loop_over_p(monkeypatch):
    def no_primality(n):
        raise AssertionError(f"is_prime({n}) ran before the size check")

    monkeypatch.setattr(data, "is_prime", no_primality)
    for p in (618970019642690137449562111, 2**61 - 1, 10**400, data.MAX_P + 1):
        with pytest.raises(UsageError, match="over the limit"):
            data.validate_task_params("mod-div", p)


def test_numbers_on_the_command_line():
    """ASCII numbers as Python and TOML write them are accepted; other digits, hex and empty text are refused."""
    assert parse_text("seed", " 5 ") == 5 and parse_text("seed", "-0") == 0 and parse_text("seed", "+7") == 7
    assert parse_text("train.steps", "1_000") == 1000 and parse_text("optim.lr", "1_0e-3") == 1e-2
    assert parse_text("seed", str(INT32_MAX)) == INT32_MAX
    for key, text in [("seed", "٣"), ("seed", "１２"), ("seed", "0x10"), ("seed", ""), ("seed", "1e3"),
                      ("optim.lr", "nan"), ("optim.lr", "inf"), ("optim.lr", "-infinity"), ("optim.lr", "1e400"),
                      ("optim.lr", "٠.١"), ("train.steps", "2147483648")]:  # fmt: skip
        with pytest.raises(UsageError):
            parse_text(key, text)


def test_the_largest_accepted_values_train_resume_and_report(tmp_path):
    """The bounds are exact: int32's largest seed, warmup, evaluation interval and windows run."""
    most = str(INT32_MAX)
    run_dir = tmp_path / "r"
    result = invoke("train", *TINY_FLAGS, "--steps", "20", "--seed", most, "--data-seed", most, "--warmup", most,
                    "--eval-every", most, "--checkpoint-every", most, "--early-exit-window", most,
                    "--keep-checkpoints", most, "--run-dir", run_dir)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert invoke("resume", run_dir, "--steps", "40").exit_code == 0  # the same chunk length: no new compile
    assert invoke("report", run_dir, "--no-plot").exit_code == 0


def test_parameter_count_matches_the_models():
    import jax
    from flax import nnx

    from grokkit.models import build_model

    cases = [
        {},
        {"model.layer_norm": True, "model.layers": 2},
        {"model.kind": "mlp", "model.depth": 3},
        {"model.kind": "mlp", "model.embed": "sum", "model.bias": False},
        {"data.task": "s5-compose", "model.d_model": 8, "model.heads": 2, "model.d_mlp": 8},
        {"data.task": "sparse-parity", "data.n_bits": 10, "data.n_samples": 500, "model.kind": "mlp"},
        {"data.task": "sparse-parity", "data.n_bits": 10, "data.n_samples": 500},
    ]
    for overrides in cases:
        config = resolve(None, {**TINY, **overrides})
        vocab, seq_len, classes = data.task_shape(config.data.task, config.data.p, config.data.n_bits)
        model = nnx.eval_shape(lambda c=config, v=vocab, t=seq_len, n=classes: build_model(c.model, v, t, n, seed=0))
        real = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
        assert parameter_count(config) == real, overrides


def test_model_and_window_limits_are_exact():
    import dataclasses

    mlp = resolve(None, {"model.kind": "mlp", "model.depth": 2})

    def count(width: int) -> int:
        return parameter_count(dataclasses.replace(mlp, model=dataclasses.replace(mlp.model, width=width)))

    low, high = 1, 2**20  # the widest MLP within the limit, by bisection
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if count(middle) <= MAX_PARAMETERS else (low, middle - 1)
    resolve(None, {"model.kind": "mlp", "model.depth": 2, "model.width": low})
    with pytest.raises(UsageError, match=r"--width: the mlp would have .* parameters, over the limit"):
        resolve(None, {"model.kind": "mlp", "model.depth": 2, "model.width": low + 1})
    window = MAX_PARAMETERS // parameter_count(Config())
    resolve(None, {"optim.grokfast": "ma", "optim.grokfast_window": window})
    with pytest.raises(UsageError, match="--grokfast-window"):
        resolve(None, {"optim.grokfast": "ma", "optim.grokfast_window": window + 1})


def test_every_integer_setting_is_bounded_where_it_enters():
    from grokkit.config import INT_BOUNDS, config_keys, field_kind

    ints = [key for key in config_keys() if field_kind(key) is int]
    assert sorted(ints) == sorted(INT_BOUNDS), "an integer setting without a range"
    for key in ints:
        with pytest.raises(UsageError, match=r"<= \d+"):
            coerce(key, 10**400)


def test_a_long_path_is_refused_before_anything_is_made(tmp_path):
    from grokkit.cli.parsing import path_problem

    assert path_problem(tmp_path / "fine") is None
    assert path_problem(tmp_path / ("é" * 128)) is not None  # 256 bytes in UTF-8
    assert path_problem(Path("a" * 255)) is None
