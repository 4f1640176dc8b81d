"""Sweeps: value parsing, the grid, grouping, member == standalone, sharded == unsharded, resume, shards, report.

Resuming after early exits and crashes: tests/test_sweep_resume.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import GROKS, TINY, TINY_FLAGS
from typer.testing import CliRunner

from grokkit import group
from grokkit.checkpoint import list_checkpoints, load_checkpoint
from grokkit.cli import app
from grokkit.config import resolve
from grokkit.errors import UsageError
from grokkit.group import group_key, vectorize_members
from grokkit.reporting import SweepReport, load_sweep
from grokkit.rundir import RunDir
from grokkit.runner import resume_sweep, start_run, start_sweep
from grokkit.sweep import SweepSpec, parse_shard, parse_values, shard_members

runner = CliRunner()


def newest_arrays(run_dir: Path) -> dict[str, np.ndarray]:
    return load_checkpoint(list_checkpoints(Path(run_dir) / "checkpoints")[-1])[0]


def max_difference(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    assert a.keys() == b.keys()
    return max(float(np.max(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)))) for k in a)


def records(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in RunDir.open(run_dir).read_metrics().records]


def test_parse_values_lists_and_ranges():
    assert parse_values("seed", "0:4", "--seed") == [0, 1, 2, 3]
    assert parse_values("seed", "0:10:4,20", "--seed") == [0, 4, 8, 20]
    assert parse_values("data.train_frac", "0.25,0.3", "--train-frac") == [0.25, 0.3]
    assert parse_values("optim.lr", "1e-3", "--lr") == [1e-3]
    assert [v.value for v in parse_values("train.loss", "softmax,stablemax", "--loss")] == ["softmax", "stablemax"]


@pytest.mark.parametrize(
    ("key", "text", "fragment"),
    [
        ("seed", "3:3", "not a non-empty range"),
        ("seed", "a:b", "not a non-empty range"),
        ("data.train_frac", "0.3:0.5", "ranges like '0.3:0.5' work for integer options"),
        ("optim.lr", "fast", "'fast' is not a valid value (expected float)"),
        ("train.loss", "huber", "expected softmax, stablemax, mse"),
        ("seed", "1,1", "lists a value twice"),
        ("seed", "1,,2", "empty value"),
    ],
)
def test_parse_values_errors(key, text, fragment):
    with pytest.raises(UsageError) as err:
        parse_values(key, text, "--x")
    assert fragment in str(err.value)


def test_grid_is_the_product_with_seeds_last_and_shards_partition_it():
    spec = SweepSpec(resolve(None, TINY), {"seed": [0, 1], "data.train_frac": [0.4, 0.5], "optim.lr": [1e-2, 3e-3]})
    members = spec.members()
    assert len(members) == 8
    assert members[0].name == "train_frac=0.4,lr=0.01,seed=0"
    assert [m.values["seed"] for m in members[:2]] == [0, 1]
    assert members[3].config.optim.lr == 3e-3 and members[3].config.seed == 1
    shards = [shard_members(members, (i, 3)) for i in range(3)]
    assert sorted(m.name for s in shards for m in s) == sorted(m.name for m in members)
    assert parse_shard("1/3") == (1, 3)
    for bad in ("3/3", "-1/2", "x", "1/0"):
        with pytest.raises(UsageError, match="--shard"):
            parse_shard(bad)


def test_group_key_separates_shapes_not_values():
    base = resolve(None, TINY)
    values_only = [{"seed": 3}, {"optim.lr": 1e-3, "optim.wd": 0.1}, {"model.init_scale": 2.0, "optim.beta2": 0.9}]
    same = [resolve(None, {**TINY, **o}) for o in values_only]
    assert all(group_key(c) == group_key(base) for c in same)
    shapes_or_code = [{"data.p": 13}, {"data.train_frac": 0.6}, {"optim.grokfast": "ema"}, {"train.loss": "mse"}]
    different = [resolve(None, {**TINY, **o}) for o in shapes_or_code]
    assert all(group_key(c) != group_key(base) for c in different)


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    """2 learning rates x 2 seeds of TINY, with minibatches, trained as one group."""
    root = tmp_path_factory.mktemp("sweep")
    base = resolve(None, {**TINY, "optim.batch_size": 16, "train.early_exit": False})
    spec = SweepSpec(base, {"seed": [0, 1], "optim.lr": [1e-2, 3e-3]})
    result = start_sweep(spec, root / "sweep")
    return root, spec, result


def identical(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_a_member_is_a_standalone_run_bit_for_bit(tiny_sweep):
    """On a CPU members train one after another with `train`'s own compiled chunk (minibatches here)."""
    root, spec, result = tiny_sweep
    assert result.groups == 1 and set(result.reasons.values()) == {"budget"}
    for member in spec.members():
        start_run(member.config, root / "alone" / member.name)
        assert identical(newest_arrays(root / "sweep" / member.name), newest_arrays(root / "alone" / member.name))
        assert records(root / "sweep" / member.name) == records(root / "alone" / member.name)


def test_members_train_one_by_one_on_a_cpu_and_vectorized_elsewhere():
    assert vectorize_members("cpu") is False
    assert vectorize_members("gpu") is True and vectorize_members("tpu") is True


@pytest.fixture
def vectorized(monkeypatch):
    """Force the accelerator's way (vmap) on this CPU."""
    monkeypatch.setattr(group, "vectorize_members", lambda backend=None: True)


def test_vectorized_members_match_standalone_to_float_tolerance(tiny_sweep, tmp_path, vectorized):
    root, spec, _ = tiny_sweep
    result = start_sweep(spec, tmp_path / "vmapped")
    assert set(result.reasons.values()) == {"budget"}
    for member in spec.members():  # the one-by-one members are bit-identical to standalone runs (above)
        alone, swept = root / "sweep" / member.name, tmp_path / "vmapped" / member.name
        difference = max_difference(newest_arrays(swept), newest_arrays(alone))
        assert difference < 1e-5  # measured 5.9e-8 to 2.1e-6 (vmap reorders float32 sums; not bit-exact)
        assert [r["step"] for r in records(swept)] == [r["step"] for r in records(alone)]
        for a, b in zip(records(swept), records(alone), strict=True):
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
            assert a["val_acc"] == pytest.approx(b["val_acc"], abs=1e-6)
    # interrupted and resumed at the same width (no early exits): the same program, the same numbers
    first = start_sweep(spec, tmp_path / "cut", stop=StopAfter(2))
    assert first.interrupted
    assert set(resume_sweep(tmp_path / "cut").reasons.values()) == {"budget"}
    for member in spec.members():
        cut, straight = tmp_path / "cut" / member.name, tmp_path / "vmapped" / member.name
        assert records(cut) == records(straight) and identical(newest_arrays(cut), newest_arrays(straight))


def test_members_are_ordinary_runs(tiny_sweep):
    root, spec, _ = tiny_sweep
    member_dir = root / "sweep" / spec.members()[0].name
    config = RunDir.open(member_dir).config()
    assert config.seed == 0 and config.optim.lr == 1e-2
    result = runner.invoke(app, ["report", str(member_dir), "--no-plot"])
    assert result.exit_code == 0, result.output
    assert "lr=0.01,seed=0" in result.stdout


def sweep_on_four_devices(flags: list[str], run_dir: Path, *, vectorized: bool, devices: int | None = 4) -> None:
    """`grokkit sweep` in a new process with `devices` CPU devices (None: the user sets none)."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    env["COLUMNS"] = "200"
    if devices is not None:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    force = "import grokkit.group as g; g.vectorize_members = lambda backend=None: True; " if vectorized else ""
    code = f"import sys; {force}from grokkit.cli import main; sys.argv = ['grokkit', *sys.argv[1:]]; main()"
    out = subprocess.run([sys.executable, "-c", code, "sweep", *flags, "--run-dir", str(run_dir)], env=env,
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    if devices is not None:
        assert json.loads(next(run_dir.glob("*/env.json")).read_text())["device_count"] == devices


def test_a_cpu_sweep_makes_one_device_per_core_and_members_stay_bit_identical(tiny_sweep, tmp_path):
    root, spec, _ = tiny_sweep
    flags = [*TINY_FLAGS, "--batch-size", "16", "--no-early-exit", "--seed", "0:2", "--lr", "1e-2,3e-3"]
    sweep_on_four_devices(flags, tmp_path / "s", vectorized=False, devices=None)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    for member in spec.members():
        env = json.loads((tmp_path / "s" / member.name / "env.json").read_text())
        assert env["device_count"] == min(cores, len(spec.members()))
        assert identical(newest_arrays(tmp_path / "s" / member.name), newest_arrays(root / "sweep" / member.name))


@pytest.mark.parametrize("vectorized", [False, True], ids=["one-by-one", "vectorized"])
def test_sharded_over_four_devices_matches_one_device(tiny_sweep, tmp_path, vectorized):
    """One by one, member i runs on device i mod 4, bit-identical; vectorized, the member axis is sharded."""
    root, spec, _ = tiny_sweep
    same = identical if not vectorized else lambda a, b: max_difference(a, b) < 1e-5
    flags = [*TINY_FLAGS, "--batch-size", "16", "--no-early-exit", "--seed", "0:2", "--lr", "1e-2,3e-3"]
    # 4 members over 4 devices, then 3 members (padded to 4 when vectorized)
    sweep_on_four_devices(flags, tmp_path / "s4", vectorized=vectorized)
    for member in spec.members():
        assert same(newest_arrays(tmp_path / "s4" / member.name), newest_arrays(root / "sweep" / member.name))
    flags3 = [*TINY_FLAGS, "--batch-size", "16", "--no-early-exit", "--seed", "0:3", "--lr", "1e-2"]
    sweep_on_four_devices(flags3, tmp_path / "s3", vectorized=vectorized)
    for seed in (0, 1):
        a = newest_arrays(tmp_path / "s3" / f"seed={seed}")
        assert same(a, newest_arrays(root / "sweep" / f"lr=0.01,seed={seed}"))


class StopAfter:
    """A stop request that fires after `n` checks (one check per chunk)."""

    def __init__(self, n: int):
        self.n = n

    def __call__(self) -> bool:
        self.n -= 1
        return self.n < 0


def test_interrupted_sweep_resumes_to_the_same_numbers(tiny_sweep, tmp_path):
    root, spec, _ = tiny_sweep
    first = start_sweep(spec, tmp_path / "sweep", stop=StopAfter(2))
    assert first.interrupted and set(first.reasons.values()) == {"interrupted"}
    assert RunDir.open(tmp_path / "sweep" / spec.members()[0].name).summary()["status"] == "interrupted"
    second = resume_sweep(tmp_path / "sweep")
    assert set(second.reasons.values()) == {"budget"}
    for member in spec.members():
        assert records(tmp_path / "sweep" / member.name) == records(root / "sweep" / member.name)
        assert identical(newest_arrays(tmp_path / "sweep" / member.name), newest_arrays(root / "sweep" / member.name))
    assert set(resume_sweep(tmp_path / "sweep").reasons.values()) == {"done before"}


def test_shards_share_one_folder_and_report_merges_them(tiny_sweep, tmp_path):
    _, spec, _ = tiny_sweep
    start_sweep(spec, tmp_path / "sweep", shard=(0, 2))
    partial = load_sweep(tmp_path / "sweep")
    assert sum(row["started"] for row in partial.aggregates) == 2
    assert sorted(m["status"] for m in partial.members).count("not started") == 2
    start_sweep(spec, tmp_path / "sweep", shard=(1, 2))
    merged = load_sweep(tmp_path / "sweep")
    assert [row["started"] for row in merged.aggregates] == [2, 2]
    other = SweepSpec(spec.base, {"seed": [5, 6]})
    with pytest.raises(UsageError, match="holds a different sweep"):
        start_sweep(other, tmp_path / "sweep")


@pytest.mark.slow
def test_sweep_cli_report_groks_and_aggregates(tmp_path):
    flags = [f"--{key.rpartition('.')[2].replace('_', '-')}={value}" for key, value in GROKS.items()]
    result = runner.invoke(app, ["sweep", *flags, "--seed", "0:3", "--wd", "1,0.5", "--run-dir", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert "group 1/1: 6 members" in result.stdout
    report = runner.invoke(app, ["report", str(tmp_path / "s"), "--json"])
    data = json.loads(report.stdout)
    assert len(data["members"]) == 6 and len(data["aggregates"]) == 2
    wd1 = next(row for row in data["aggregates"] if row["point"] == {"optim.wd": 1.0})
    assert wd1["generalized"] == 3 and wd1["generalized_min"] <= wd1["generalized_median"] <= wd1["generalized_max"]
    seed1 = next(m for m in data["members"] if m["name"] == "wd=1,seed=1")["report"]
    start_run(RunDir.open(tmp_path / "s" / "wd=1,seed=1").config(), tmp_path / "alone")
    alone = json.loads(runner.invoke(app, ["report", str(tmp_path / "alone"), "--json"]).stdout)
    # chaotic over ~1k steps, yet the same bits: a member is its standalone run (one by one on a CPU)
    assert seed1["memorized_step"] == alone["memorized_step"]
    assert seed1["generalized_step"] == alone["generalized_step"]
    assert identical(newest_arrays(tmp_path / "s" / "wd=1,seed=1"), newest_arrays(tmp_path / "alone"))
    view = runner.invoke(app, ["report", str(tmp_path / "s")], env={"COLUMNS": "100"})
    assert "time to grok" in view.stdout and "3 grokked" in view.stdout


def test_sweep_cli_end_to_end_and_errors(tmp_path):
    result = runner.invoke(app, ["sweep", *TINY_FLAGS, "--seed", "0:2", "--run-dir", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert "2 members" in result.stdout and "Summary: grokkit report" in result.stdout
    assert (tmp_path / "s" / "seed=1" / "checkpoints").is_dir()
    resumed = runner.invoke(app, ["resume", str(tmp_path / "s")])
    assert resumed.exit_code == 0 and "2 done before" in resumed.stdout
    extended = runner.invoke(app, ["resume", str(tmp_path / "s"), "--steps", "60", "--no-early-exit"])
    assert extended.exit_code == 2 and "--early-exit" in extended.stderr
    extended = runner.invoke(app, ["resume", str(tmp_path / "s"), "--steps", "60"])
    assert extended.exit_code == 0, extended.output
    for seed in (0, 1):
        member = RunDir.open(tmp_path / "s" / f"seed={seed}")
        assert member.read_metrics().records[-1]["step"] == 60 and member.config().train.steps == 60
    assert json.loads((tmp_path / "s" / "sweep.json").read_text())["base"]["train"]["steps"] == 60
    for args, fragment in [
        (["--seed", "0:0"], "--seed: '0:0' is not a non-empty range"),
        (["--train-frac", "0.3:0.5"], "--train-frac: ranges like"),
        (["--shard", "2/2"], "--shard: must be i/n"),
        (["--train-frac", "0.5,1.5"], "--train-frac: must be strictly between 0 and 1"),
        (["--run-dir", str(tmp_path / "s"), "--seed", "7"], "holds a different sweep"),
    ]:
        bad = runner.invoke(app, ["sweep", *TINY_FLAGS, *args])
        assert bad.exit_code == 2, bad.output
        assert fragment in bad.stderr and "Traceback" not in bad.output
    help_text = runner.invoke(app, ["sweep", "--help"], env={"COLUMNS": "200"}).stdout
    assert "A list a,b,c or a range a:b." in help_text and "--shard" in help_text


def test_compare_a_sweep_against_a_run(tiny_sweep):
    root, spec, _ = tiny_sweep
    member = root / "sweep" / spec.members()[0].name
    result = runner.invoke(app, ["compare", str(member), str(root / "sweep"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [row["threshold"] for row in data["thresholds"]] == [0.5, 0.95, 0.99]
    assert data["thresholds"][0]["candidate"]["runs"] == 2 and data["thresholds"][0]["candidate"]["points"] == 2
    assert any("single seed" in w for w in data["warnings"])
    view = runner.invoke(app, ["compare", str(member), str(root / "sweep")], env={"COLUMNS": "120"})
    assert view.exit_code == 0 and "speed-up" in view.stdout and "warning:" in view.stdout
    missing = runner.invoke(app, ["compare", str(member), str(root / "nowhere")])
    assert missing.exit_code == 2 and "does not exist" in missing.stderr


def test_members_with_their_own_tables_stack_their_data(tmp_path):
    """`rand` draws its table from the data seed: each member's full dataset is stacked, not shared."""
    spec = SweepSpec(resolve(None, {**TINY, "data.task": "rand", "train.steps": 20}), {"seed": [0, 1]})
    result = start_sweep(spec, tmp_path / "rand")
    assert set(result.reasons.values()) == {"budget"}
    from grokkit.group import Member, stack_data
    from grokkit.train import Lane, RunSink, init_state, make_experiment

    exps = [make_experiment(m.config) for m in spec.members()]
    _, axes = stack_data([Member(e, init_state(e), Lane(RunSink(), [], 0)) for e in exps])
    assert axes.every is not None
    plain = [make_experiment(resolve(None, {**TINY, "seed": s})) for s in (0, 1)]
    _, shared = stack_data([Member(e, init_state(e), Lane(RunSink(), [], 0)) for e in plain])
    assert shared.every is None


def test_sweep_report_figure_and_two_axis_grid(tiny_sweep, tmp_path):
    root, _, _ = tiny_sweep
    result = runner.invoke(app, ["report", str(root / "sweep"), "--png", str(tmp_path / "phase.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "phase.png").read_bytes()[:4] == b"\x89PNG"
    from rich.console import Console

    from grokkit.render import sweep_view

    spec = SweepSpec(resolve(None, TINY), {"optim.lr": [1e-2, 3e-3], "optim.wd": [0.5, 1.0], "seed": [0, 1]})
    rows = [
        {"point": {"optim.lr": lr, "optim.wd": wd}, "members": 2, "started": 2, "generalized": 2 if median else 0,
         "verdicts": {}, "memorized_median": 100, "memorized_min": 100, "memorized_max": 100,
         "generalized_median": median, "generalized_min": median, "generalized_max": median}
        for lr, wd, median in [(1e-2, 0.5, 400), (1e-2, 1.0, 900), (3e-3, 0.5, None), (3e-3, 1.0, 2500)]
    ]  # fmt: skip
    console = Console(width=100, record=True)
    console.print(sweep_view(SweepReport(tmp_path, spec, [], rows), 100))
    text = console.export_text()
    assert "time to grok (median step" in text and "2,500" in text and "—" in text


def test_a_sweep_folder_from_before_a_new_setting_existed_is_joined_not_refused(tmp_path):
    from grokkit.sweep import SWEEP_FILE, create_sweep_dir

    spec = SweepSpec(resolve(None, TINY), {"seed": [0, 1]})
    create_sweep_dir(tmp_path / "s", spec)
    file = tmp_path / "s" / SWEEP_FILE
    older = json.loads(file.read_text())
    del older["base"]["model"]["init_scale"]  # as written by a grokkit without that setting (it takes its default)
    file.write_text(json.dumps(older))
    create_sweep_dir(tmp_path / "s", spec)  # joins
    with pytest.raises(UsageError, match="holds a different sweep"):
        create_sweep_dir(tmp_path / "s", SweepSpec(resolve(None, TINY), {"seed": [0, 2]}))
