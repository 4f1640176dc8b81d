import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import TINY_FLAGS
from typer.testing import CliRunner

from grokkit.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "100"})


def assert_usage_error(result, *fragments):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    message = result.stderr.strip()
    assert message, result.output
    for fragment in fragments:
        assert fragment in message, message


def test_help_lists_commands_and_does_not_import_jax():
    code = "import sys; from grokkit.cli import app; assert 'jax' not in sys.modules, 'jax imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("tasks", "data", "train", "resume", "sweep", "report", "compare", "inspect", "export"):
        assert command in result.stdout


def test_python_dash_m_works():
    out = subprocess.run([sys.executable, "-m", "grokkit", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("grokkit ")


def test_train_help_has_panels_and_presets():
    result = invoke("train", "--help")
    assert result.exit_code == 0
    for fragment in ("Data", "Model", "Optimizer", "Grokking interventions", "Run", "nanda2023", "power2022",
                     "grokfast2024", "--grokfast", "--orthograd", "--loss-dtype", "--init-scale", "--no-early-exit",
                     "[default: 97]", "[default: 0.35]", "[default: adamw]", "[default: full batch]"):  # fmt: skip
        assert fragment in result.stdout
    assert "grokkit[plot]" in invoke("report", "--help").stdout
    assert "1, full batch" in result.stdout  # docstring paragraphs are reflowed, not broken at source newlines
    assert "tokens [n, seq]" in invoke("data", "--help").stdout


def test_tasks_table():
    result = invoke("tasks")
    assert result.exit_code == 0
    for name in ("mod-add", "mod-div", "s5-conjugate", "sparse-parity", "rand", "9,409", "14,400"):
        assert name in result.stdout


def test_data_npz(tmp_path):
    out = tmp_path / "d.npz"
    result = invoke("data", "--task", "mod-add", "--p", 97, "--train-frac", 0.3, "--seed", 0, "--out", out)
    assert result.exit_code == 0, result.output
    assert "9,409 examples" in result.stdout
    with np.load(out) as npz:
        assert npz["tokens"].shape == (9409, 3)
        assert len(npz["train_idx"]) == round(0.3 * 9409)
        assert ((npz["tokens"][:, 0] + npz["tokens"][:, 1]) % 97 == npz["labels"]).all()


def test_data_csv(tmp_path):
    out = tmp_path / "d.csv"
    result = invoke("data", "--task", "s5-compose", "--format", "csv", "--out", out)
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert lines[0] == "x,y,label,split" and len(lines) == 14_401
    assert {line.rsplit(",", 1)[1] for line in lines[1:]} == {"train", "val"}


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--task", "mod-ad"], ["unknown task", "mod-add"]),
        (["--p", "1"], ["--p", "at least 2"]),
        (["--task", "mod-div", "--p", "96"], ["prime", "97"]),
        (["--p", "100000"], ["over the limit"]),
        (["--train-frac", "1.5"], ["--train-frac", "between 0 and 1"]),
        (["--train-frac", "0"], ["--train-frac"]),
        (["--p", "3", "--train-frac", "0.01"], ["empty train"]),
    ],
)
def test_data_bad_input(tmp_path, args, fragments):
    assert_usage_error(invoke("data", "--out", tmp_path / "x.npz", *args), *fragments)


def test_data_unwritable_output(tmp_path):
    assert_usage_error(invoke("data", "--out", tmp_path / "missing" / "x.npz"), "cannot write")
    assert_usage_error(invoke("data", "--out", tmp_path), "is a folder")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--steps", "0"], ["--steps", ">= 1"]),
        (["--lr", "-1"], ["--lr", "> 0"]),
        (["--eval-every", "0"], ["--eval-every"]),
        (["--heads", "3"], ["--heads", "divide"]),
        (["--batch-size", "100000"], ["--batch-size", "train set has"]),
        (["--preset", "nanda"], ["unknown preset", "nanda2023"]),
        (["--task", "mod-mull"], ["mod-mul"]),
    ],
)
def test_train_bad_input(tmp_path, args, fragments):
    assert_usage_error(invoke("train", "--run-dir", tmp_path / "r", *args), *fragments)


def test_train_then_resume_end_to_end(tmp_path):
    run_dir = tmp_path / "runs" / "one"
    result = invoke("train", *TINY_FLAGS, "--run-dir", run_dir)
    assert result.exit_code == 0, result.output
    assert "step      40/40" in result.stdout
    assert "memorized" in result.stdout or "not yet fit" in result.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["step"] == 40
    again = invoke("train", *TINY_FLAGS, "--run-dir", run_dir)
    assert_usage_error(again, "already holds a run", "grokkit resume")
    resumed = invoke("resume", tmp_path / "runs" / "latest", "--steps", 60, "--no-early-exit")
    assert resumed.exit_code == 0, resumed.output
    assert "resuming" in resumed.stdout and "from step 40 of 60" in resumed.stdout
    assert json.loads((run_dir / "summary.json").read_text())["step"] == 60


def test_resume_bad_input(tmp_path):
    assert_usage_error(invoke("resume", tmp_path / "nowhere"), "does not exist")
    (tmp_path / "empty").mkdir()
    assert_usage_error(invoke("resume", tmp_path / "empty"), "not a grokkit run directory")


def test_diverged_run_exits_nonzero_with_one_line(tmp_path):
    result = invoke("train", *TINY_FLAGS, "--lr", "1e30", "--run-dir", tmp_path / "r")
    assert result.exit_code == 3
    assert "NaN/Inf" in result.stderr and "Traceback" not in result.output


BAD_TOML = {
    "unknown-key": ("[optim]\nlrr = 0.1\n", ["optim.lrr", "did you mean 'optim.lr'"]),
    "wrong-type": ('[train]\nsteps = "many"\n', ["train.steps must be int"]),
    "bad-enum": ('[model]\nkind = "cnn"\n', ["model.kind must be one of transformer, mlp"]),
    "not-toml": ("steps = = 3\n", ["not valid TOML"]),
    "nan": ("[optim]\nlr = nan\n", ["finite"]),
    "bad-value": ("[train]\nsteps = -5\n", ["c.toml: train.steps must be >= 1, got -5"]),
}


@pytest.mark.parametrize("case", sorted(BAD_TOML))
def test_train_config_file_bad_input(tmp_path, case):
    text, fragments = BAD_TOML[case]
    path = tmp_path / "c.toml"
    path.write_text(text)
    assert_usage_error(invoke("train", "--config", path, "--run-dir", tmp_path / "r"), *fragments)


def test_train_config_file_with_flags_overriding(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('preset = "nanda2023"\nseed = 4\n[optim]\nlr = 0.02\n[train]\nsteps = 99\n')
    from grokkit.config import load_config_file, resolve

    config = resolve(None, {**load_config_file(path), "optim.lr": 0.5})
    assert (config.preset, config.seed, config.optim.lr, config.train.steps, config.data.p) == (
        "nanda2023", 4, 0.5, 99, 113)  # fmt: skip
    assert_usage_error(invoke("train", "--config", tmp_path / "missing.toml"), "--config", "cannot read")


BAD_EVERYWHERE = [
    (["tasks", "--p", "1"], ["--p"]),
    (["tasks", "--p", "abc"], ["--p"]),
    (["data", "--out", "{tmp}/x.npz", "--seed", "-1"], ["seed"]),
    (["data", "--out", "{tmp}/x.npz", "--train-frac", "nan"], ["--train-frac"]),
    (["data", "--out", "{tmp}/x.npz", "--p", "abc"], ["--p"]),
    (["data", "--out", "{tmp}/x.npz", "--format", "xlsx"], ["--format"]),
    (["train", "--steps", "-5"], ["--steps"]),
    (["train", "--lr", "nan"], ["--lr", "finite"]),
    (["train", "--lr", "inf"], ["--lr", "finite"]),
    (["train", "--wd", "-1"], ["--wd"]),
    (["train", "--train-frac", "nan"], ["--train-frac"]),
    (["train", "--p", "10000000"], ["--p", "over the limit"]),
    (["train", "--d-model", "0"], ["--d-model"]),
    (["train", "--layers", "0"], ["--layers"]),
    (["train", "--warmup", "-1"], ["--warmup"]),
    (["train", "--beta1", "1.5"], ["--beta1"]),
    (["train", "--model", "cnn"], ["--model"]),
    (["train", "--optimizer", "lion"], ["--optimizer"]),
    (["train", "--steps", "ten"], ["--steps"]),
    (["train", "--checkpoint-every", "15", "--eval-every", "10"], ["--checkpoint-every"]),
    (["train", "--keep-checkpoints", "0"], ["--keep-checkpoints"]),
    (["train", "--run-dir", "{tmp}/file.txt"], ["--run-dir"]),
    (["resume", "{tmp}/nowhere"], ["does not exist"]),
    (["resume", "{tmp}/run", "--steps", "0"], ["--steps"]),
    (["resume", "{tmp}/run", "--steps", "many"], ["--steps"]),
    (["report", "{tmp}/nowhere"], ["does not exist"]),
    (["report", "{tmp}/run", "--patience", "0"], ["--patience"]),
    (["report", "{tmp}/run", "{tmp}/run", "--png", "{tmp}/f.png"], ["--png", "single run"]),
    (["export", "{tmp}/run"], ["nothing to do"]),
    (["export", "{tmp}/run", "--csv", "{tmp}"], ["--csv", "folder"]),
    (["export", "{tmp}/run", "--jsonl", "{tmp}"], ["--jsonl", "folder"]),
    (["export", "{tmp}/run", "--transformerlens", "{tmp}/file.txt"], ["is a file"]),
    (["export", "{tmp}/run", "--transformerlens", "{tmp}/tl", "--step", "abc"], ["--step"]),
    (["export", "{tmp}/run", "--step", "20"], ["nothing to do", "--transformerlens"]),
    (["export", "{tmp}/nowhere", "--csv", "{tmp}/m.csv"], ["does not exist"]),
    (["train", "--grokfast", "fft"], ["--grokfast"]),
    (["train", "--grokfast-alpha", "1"], ["--grokfast-alpha", "[0, 1)"]),
    (["train", "--grokfast-lambda", "-1"], ["--grokfast-lambda", ">= 0"]),
    (["train", "--grokfast-window", "0"], ["--grokfast-window", ">= 1"]),
    (["train", "--init-scale", "0"], ["--init-scale", "> 0"]),
    (["train", "--init-scale", "nan"], ["--init-scale", "finite"]),
    (["train", "--loss", "hinge"], ["--loss"]),
    (["train", "--loss-dtype", "float16"], ["--loss-dtype"]),
    (["train", "--decay-to", "one"], ["--decay-to"]),
    (["sweep", "--lr", "1e-3,abc"], ["--lr", "'abc' is not a valid value"]),
    (["sweep", "--seed", "5:2"], ["--seed", "non-empty range"]),
    (["sweep", "--steps", "0,10"], ["--steps", ">= 1"]),
    (["sweep", "--run-dir", "{tmp}/file.txt"], ["--run-dir", "not a sweep folder"]),
    (["resume", "{tmp}/run", "--shard", "0/2"], ["--shard", "not a sweep folder"]),
    (["compare", "{tmp}/run", "{tmp}/nowhere"], ["does not exist"]),
]


@pytest.fixture(scope="module")
def bad_input_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    (root / "file.txt").write_text("not a run")
    (root / "run").mkdir()
    from grokkit.config import resolve
    from grokkit.rundir import RunDir

    config = resolve(None, {"data.p": 11, "train.steps": 10})
    from grokkit.data import split_dataset

    RunDir.create(root / "run", config, {}, split_dataset(121, 0.35, 0))
    return root


@pytest.mark.parametrize(("args", "fragments"), BAD_EVERYWHERE, ids=[" ".join(a[:3]) for a, _ in BAD_EVERYWHERE])
def test_every_command_rejects_bad_input_cleanly(bad_input_dir, args, fragments):
    result = invoke(*[a.replace("{tmp}", str(bad_input_dir)) for a in args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
