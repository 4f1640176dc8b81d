"""The option table and the command line around it: every option reachable, one typed path, one-line errors."""

from __future__ import annotations

import json

import pytest
from conftest import TINY, TINY_FLAGS
from typer.main import get_command
from typer.testing import CliRunner

from grokkit.cli import app
from grokkit.cli.options import ROWS, TABLE
from grokkit.cli.parsing import expand_switches
from grokkit.config import (
    Config,
    Loss,
    ModelKind,
    coerce,
    config_keys,
    load_config_file,
    option_name,
    parse_text,
    resolve,
)
from grokkit.errors import UsageError

runner = CliRunner()
COMMANDS = get_command(app).commands  # type: ignore[attr-defined]


def flags_of(command: str) -> set[str]:
    return {opt for param in COMMANDS[command].params for opt in param.opts}


def test_every_config_field_a_user_may_set_is_an_option_of_train_and_sweep():
    for key in config_keys():
        assert key in ROWS, f"{key} has no row in the option table"
        assert option_name(key) in flags_of("train") and option_name(key) in flags_of("sweep"), key


def test_train_and_sweep_help_list_the_same_config_options():
    helps = {c: runner.invoke(app, [c, "--help"], env={"COLUMNS": "200"}).stdout for c in ("train", "sweep")}
    for row in TABLE:
        for command, text in helps.items():
            assert f"{row.flag} " in text, f"{row.flag} missing from {command} --help"
    assert flags_of("train") == flags_of("sweep") - {"--shard"}
    for choices in ("relu|gelu|quadratic", "softmax|stablemax|mse", "transformer|mlp", "on|off"):
        assert choices in helps["train"] and choices in helps["sweep"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["train", "--lr", "abc"], "--lr: 'abc' is not a valid value (expected float)"),
        (["train", "--stepz", "10"], "--steps"),  # Click's "did you mean"
        (["train", "--model"], "requires an argument"),
        (["compare"], "Missing argument"),
        (["report", "--bogus"], "No such option: --bogus"),
        (["train", "--lr", "1e-3,3e-3"], "`grokkit sweep` takes lists"),
        (["sweep", "--orthograd", "maybe"], "--orthograd"),
        (["nonsense"], "No such command"),
    ],
)
def test_every_parse_error_is_one_line_on_stderr_with_exit_2(args, fragment):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert fragment in lines[0]
    assert "Usage:" not in result.output and "╭" not in result.output and "Traceback" not in result.output


def test_on_off_options_take_a_flag_a_negation_or_values():
    assert expand_switches(["--orthograd"]) == ["--orthograd=on"]
    assert expand_switches(["--no-orthograd", "--lr", "1"]) == ["--orthograd=off", "--lr", "1"]
    assert expand_switches(["--orthograd", "on,off", "--steps", "3"]) == ["--orthograd=on,off", "--steps", "3"]
    assert expand_switches(["--early-exit", "--p", "7"]) == ["--early-exit=on", "--p", "7"]
    assert expand_switches(["--", "--orthograd"]) == ["--", "--orthograd"]
    assert expand_switches(["--orthograd", "maybe"]) == ["--orthograd=maybe"]  # refused by name, not as an extra word
    assert expand_switches(["--early-exit", "runs/x"], positionals=True) == ["--early-exit=on", "runs/x"]


def test_a_boolean_intervention_is_a_sweep_axis(tmp_path):
    (tmp_path / "file").write_text("x")
    result = runner.invoke(app, ["sweep", *TINY_FLAGS, "--orthograd", "on,off", "--run-dir", str(tmp_path / "file")])
    assert "unexpected extra argument" not in result.output
    assert "optim.orthograd" in result.stdout and "True, False" in result.stdout and "2 members" in result.stdout
    assert result.exit_code == 2 and "not a sweep folder" in result.stderr  # the plan was made; the folder refused


def test_sparse_parity_settings_reach_train_and_sweep():
    for command in ("train", "sweep"):
        result = runner.invoke(app, [command, "--task", "sparse-parity", "--n-bits", "40", "--k-bits", "41"])
        assert result.exit_code == 2 and "--k-bits: k-bits must be in [1, n-bits=40]" in result.stderr, result.output


def test_one_typed_path_from_text_toml_json_and_presets(tmp_path):
    assert parse_text("optim.lr", "3e-3") == coerce("optim.lr", 3e-3) == 3e-3
    assert parse_text("optim.orthograd", "on") is True and parse_text("model.layer_norm", "off") is False
    assert parse_text("optim.batch_size", "0") is None and coerce("optim.batch_size", 0) is None
    config = resolve(None, {"model.kind": "mlp", "train.loss": "mse"})
    assert type(config.model.kind) is ModelKind and type(config.train.loss) is Loss
    again = Config.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and type(again.model.kind) is ModelKind
    path = tmp_path / "c.toml"
    path.write_text('[model]\nkind = "mlp"\n[optim]\nbatch_size = 0\n')
    assert load_config_file(path) == {"model.kind": ModelKind.mlp, "optim.batch_size": None}
    for key, value in [("train.steps", "100"), ("optim.lr", True), ("model.kind", "cnn"), ("seed", 1.5)]:
        with pytest.raises(UsageError, match=key):
            coerce(key, value)
    with pytest.raises(UsageError, match="config must be a table"):
        Config.from_dict(["not", "a", "table"])


def test_runs_are_named_by_the_settings_their_task_uses(tmp_path):
    from grokkit.rundir import default_run_dir

    assert default_run_dir(resolve(None, {"data.task": "s5-compose"}), tmp_path).name.startswith("s5-compose-2")
    assert default_run_dir(resolve(None, TINY), tmp_path).name.startswith("mod-add-p11-")
    parity = resolve(None, {"data.task": "sparse-parity", "data.n_bits": 10, "data.k_bits": 2, "data.n_samples": 500})
    assert default_run_dir(parity, tmp_path).name.startswith("sparse-parity-n10-k2-s500-")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from grokkit.runner import start_run

    path = tmp_path_factory.mktemp("finished") / "run"
    start_run(resolve(None, TINY), path)
    return path


@pytest.mark.parametrize(
    ("status", "fragment"),
    [("generalized", "--no-early-exit"), ("finished", "--steps N"), ("diverged", "lower learning rate")],
)
def test_resume_of_a_run_with_nothing_left_to_do_says_why_and_changes_nothing(finished_run, tmp_path, status, fragment):
    import shutil

    from grokkit.rundir import RunDir

    run = RunDir.open(shutil.copytree(finished_run, tmp_path / "r", symlinks=True))
    run.write_summary({**run.summary(), "status": status})
    before = {p.relative_to(run.path): p.read_bytes() for p in run.path.rglob("*") if p.is_file()}
    result = runner.invoke(app, ["resume", str(run.path)])
    assert result.exit_code == 0, result.output
    assert "nothing to do" in result.stdout and fragment in result.stdout
    assert {p.relative_to(run.path): p.read_bytes() for p in run.path.rglob("*") if p.is_file()} == before


def test_resume_of_a_finished_run_whose_last_checkpoint_is_damaged_redoes_those_steps(finished_run, tmp_path):
    import shutil

    from grokkit.checkpoint import list_checkpoints
    from grokkit.rundir import RunDir

    run = RunDir.open(shutil.copytree(finished_run, tmp_path / "r", symlinks=True))
    newest = list_checkpoints(run.checkpoints)[-1].path
    newest.write_bytes(newest.read_bytes()[:-7])
    result = runner.invoke(app, ["resume", str(run.path)])
    assert result.exit_code == 0 and "nothing to do" not in result.stdout, result.output
    assert run.read_metrics().records[-1]["step"] == 40


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--beta2", "0.999999999"], "--beta2: must be in [0, 1), got 0.999999999 (1 in float32"),
        (["--momentum", "0.99999999999"], "--momentum: must be in [0, 1)"),
        (["--lr", "1e-50"], "--lr: must be > 0, got 1e-50 (0 in float32"),
        (["--init-scale", "1e-46"], "--init-scale: must be > 0"),
        (["--mask-random"], "--mask-random: needs --mask-from"),
        (["--mask-sha256", "ab"], "--mask-sha256: needs --mask-from"),
        (["--init-sha256", "ab"], "--init-sha256: needs --init-from"),
    ],
)
def test_values_are_checked_as_they_are_used_and_dependent_options_need_theirs(args, fragment):
    result = runner.invoke(app, ["train", *args])
    assert result.exit_code == 2 and fragment in result.stderr, result.output
