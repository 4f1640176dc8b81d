"""The Weights & Biases sink: what it logs (a stand-in wandb module), and a real offline run when wandb is installed."""

import sys
import types

import pytest
from conftest import TINY

from grokkit.config import resolve
from grokkit.errors import UsageError
from grokkit.wandb_sink import require_wandb, scalars, wandb_sink

RECORDS = [
    {
        "step": step,
        "train_loss": 1.0 / step,
        "val_acc": step / 100,
        "param_norms": {"blocks/0": 2.0, "embed_VD": 1.5},
        "key_frequencies": [1, 4],
        "elapsed_s": 0.5,
    }
    for step in (10, 20, 30)
]


class FakeRun:
    def __init__(self, **kwargs):
        self.init = kwargs
        self.logged: list[tuple[int, dict]] = []
        self.summary: dict = {}
        self.exit_code = None
        self.url = "https://example.invalid/run"

    def log(self, data, step):
        self.logged.append((step, data))

    def finish(self, exit_code=0):
        assert self.exit_code is None, "finished twice"
        self.exit_code = exit_code


@pytest.fixture
def fake_wandb(monkeypatch):
    module = types.ModuleType("wandb")
    module.runs = []

    def init(**kwargs):
        module.runs.append(FakeRun(**kwargs))
        return module.runs[-1]

    module.init = init
    module.Settings = lambda **kwargs: kwargs
    monkeypatch.setitem(sys.modules, "wandb", module)
    return module


def test_scalars_are_named_as_in_the_other_exports():
    assert scalars(RECORDS[0]) == {
        "train_loss": 0.1,
        "val_acc": 0.1,
        "param_norms.blocks/0": 2.0,
        "param_norms.embed_VD": 1.5,
        "key_frequencies.0": 1,
        "key_frequencies.1": 4,
        "elapsed_s": 0.5,
    }


def test_logs_every_record_at_its_step_and_finishes(fake_wandb, tmp_path):
    config = resolve(None, TINY)
    sink = wandb_sink(config, tmp_path / "run-a", "grokking")
    assert fake_wandb.runs == []  # nothing starts before the first event
    for record in RECORDS:
        sink.on_eval(record)
    sink.on_checkpoint(state=None, elapsed_s=1.0)
    (run,) = fake_wandb.runs
    assert run.init["project"] == "grokking" and run.init["name"] == "run-a"
    assert run.init["dir"] == str(tmp_path / "run-a") and run.init["config"] == config.to_dict()
    assert [step for step, _ in run.logged] == [10, 20, 30]
    assert run.logged[1][1] == scalars(RECORDS[1]) and "step" not in run.logged[1][1]
    assert sink.url == "https://example.invalid/run"
    sink.on_finish("early-exit")
    sink.close()
    assert run.exit_code == 0 and run.summary["finish_reason"] == "early-exit"


def test_a_resumed_run_logs_its_history_first_and_divergence_fails_it(fake_wandb, tmp_path):
    sink = wandb_sink(resolve(None, TINY), tmp_path / "run-b", None, history=RECORDS[:2])
    sink.on_finish("diverged")
    (run,) = fake_wandb.runs
    assert [step for step, _ in run.logged] == [10, 20] and run.exit_code == 1


def test_close_without_finish_marks_the_run_failed(fake_wandb, tmp_path):
    sink = wandb_sink(resolve(None, TINY), tmp_path / "run-c", None)
    sink.close()  # never started: nothing to finish
    assert fake_wandb.runs == []
    sink.on_eval(RECORDS[0])
    sink.close()
    assert fake_wandb.runs[0].exit_code == 1


def test_a_failing_start_is_one_clear_line(fake_wandb, tmp_path):
    def refuse(**kwargs):
        raise RuntimeError("api_key not configured")

    fake_wandb.init = refuse
    sink = wandb_sink(resolve(None, TINY), tmp_path / "run-d", None)
    with pytest.raises(UsageError, match=r"wandb could not start a run \(api_key not configured\); run 'wandb login'"):
        sink.start()


def test_missing_wandb_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(UsageError, match=r"needs wandb: pip install 'grokkit\[wandb\]'"):
        require_wandb()
    with pytest.raises(UsageError, match=r"needs wandb: pip install 'grokkit\[wandb\]'"):
        wandb_sink(resolve(None, TINY), tmp_path, None)


def test_real_wandb_offline_writes_its_run_folder(monkeypatch, tmp_path):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    sink = wandb_sink(resolve(None, TINY), run_dir, "grokkit-test")
    for record in RECORDS:
        sink.on_eval(record)
    assert sink.url is None
    assert sink.run.summary["param_norms.blocks/0"] == 2.0
    sink.on_finish("budget")
    (folder,) = (run_dir / "wandb").glob("offline-run-*")
    (log,) = folder.glob("run-*.wandb")
    assert log.stat().st_size > 0
