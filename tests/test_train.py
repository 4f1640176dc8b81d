import json

import jax
import numpy as np
import pytest
from conftest import GROKS, TINY

from grokkit import train as T
from grokkit.analysis import early_exit_due
from grokkit.config import resolve
from grokkit.errors import TrainingDiverged, UsageError
from grokkit.rundir import RunDir
from grokkit.runner import StopRequest, resume_run, start_run


def build(**overrides):
    exp = T.make_experiment(resolve(None, {**TINY, **overrides}))
    return exp, T.init_state(exp)


def leaves_equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def test_golden_numbers_after_five_steps():
    exp, state = build(**{"train.steps": 5, "train.eval_every": 5, "train.checkpoint_every": 5})
    record = T.fit(exp, state).history[-1]
    # measured with jax 0.10.2 on CPU; a change here means the mathematics changed
    assert record["train_loss"] == pytest.approx(2.3464746475219727, rel=1e-4)
    assert record["val_loss"] == pytest.approx(2.714663505554199, rel=1e-4)
    assert record["param_norm"] == pytest.approx(12.72212028503418, rel=1e-5)


def test_golden_numbers_mlp():
    exp, state = build(**{"model.kind": "mlp", "model.width": 32, "train.steps": 5, "train.eval_every": 5,
                          "train.checkpoint_every": 5})  # fmt: skip
    record = T.fit(exp, state).history[-1]
    assert record["train_loss"] == pytest.approx(2.3762948513031006, rel=1e-4)
    assert record["param_norm"] == pytest.approx(6.499059200286865, rel=1e-5)


@pytest.mark.parametrize("batch_size", [None, 16])
def test_scan_equals_step_by_step_loop_bit_exact(batch_size):
    exp, state = build(**{"optim.batch_size": batch_size})
    data = exp.device_data()
    step = jax.jit(lambda s: T.train_step(exp, s, T.select_batch(exp, s, data.train))[0])
    looped = state
    for _ in range(12):
        looped = step(looped)
    scanned, _ = T.make_chunk_fn(exp)(T.init_state(exp), data, 12)
    assert int(scanned.step) == int(looped.step) == 12
    assert leaves_equal(scanned.params, looped.params)
    assert leaves_equal(scanned.opt_state, looped.opt_state)


def test_same_config_same_numbers_and_seed_matters():
    a = T.fit(*build(**{"optim.batch_size": 8})).history
    b = T.fit(*build(**{"optim.batch_size": 8})).history
    c = T.fit(*build(**{"optim.batch_size": 8, "seed": 1})).history
    strip = lambda h: [{k: v for k, v in r.items() if k != "elapsed_s"} for r in h]  # noqa: E731
    assert strip(a) == strip(b)
    assert strip(a) != strip(c)


def test_state_round_trips_through_arrays():
    exp, state = build()
    arrays = T.state_to_arrays(state)
    assert "params/blocks/0/w_q_DHK/value" in arrays
    restored = T.state_from_arrays(T.abstract_state(exp), arrays)
    assert leaves_equal(restored, state)
    with pytest.raises(ValueError, match="missing"):
        T.state_from_arrays(T.abstract_state(exp), {k: v for k, v in arrays.items() if "w_q" not in k})


def _stop_at(step):
    stop = StopRequest()

    def on_eval(record):
        if record["step"] >= step:
            stop.signal = 2

    return stop, on_eval


def _final(run_dir):
    run = RunDir.open(run_dir)
    records = [{k: v for k, v in r.items() if k != "elapsed_s"} for r in run.read_metrics().records]
    from grokkit.checkpoint import list_checkpoints, load_checkpoint

    arrays, _ = load_checkpoint(list_checkpoints(run.checkpoints)[-1])
    return records, arrays


def test_resume_equals_uninterrupted_bit_exact(tmp_path):
    config = resolve(None, {**TINY, "optim.batch_size": 16, "train.early_exit": False})
    start_run(config, tmp_path / "straight")
    stop, on_eval = _stop_at(30)  # between checkpoints (20, 40): resumes from 20, redoes 30
    result = start_run(config, tmp_path / "cut", stop=stop, on_eval=on_eval)
    assert result.reason == "interrupted"
    assert json.loads((tmp_path / "cut" / "summary.json").read_text())["status"] == "interrupted"
    resumed = resume_run(tmp_path / "cut")
    assert resumed.reason == "budget"
    straight_records, straight_arrays = _final(tmp_path / "straight")
    cut_records, cut_arrays = _final(tmp_path / "cut")
    assert cut_records == straight_records
    assert straight_arrays.keys() == cut_arrays.keys()
    assert all(np.array_equal(straight_arrays[k], cut_arrays[k]) for k in straight_arrays)


def test_resume_can_extend_the_budget_and_refuses_to_shrink_it(tmp_path):
    config = resolve(None, TINY)
    start_run(config, tmp_path / "run")
    with pytest.raises(UsageError, match="already at step 40"):
        resume_run(tmp_path / "run", steps=20)
    result = resume_run(tmp_path / "run", steps=60, early_exit=False)
    assert result.history[-1]["step"] == 60
    assert RunDir.open(tmp_path / "run").config().train.steps == 60


def test_corrupt_checkpoint_falls_back_to_the_previous_one(tmp_path):
    config = resolve(None, {**TINY, "train.early_exit": False})
    start_run(config, tmp_path / "run")
    newest = tmp_path / "run" / "checkpoints" / "step_000000040.npz"
    payload = bytearray(newest.read_bytes())
    payload[len(payload) // 2] ^= 0xFF
    newest.write_bytes(bytes(payload))
    messages = []
    resume_run(tmp_path / "run", notify=messages.append)
    assert any("step_000000040.npz" in m and "falling back" in m for m in messages)
    assert any("from step 20" in m for m in messages)


def test_truncated_metrics_line_is_tolerated(tmp_path):
    config = resolve(None, {**TINY, "train.early_exit": False})
    stop, on_eval = _stop_at(20)
    start_run(config, tmp_path / "run", stop=stop, on_eval=on_eval)
    with open(tmp_path / "run" / "metrics.jsonl", "a") as f:
        f.write('{"step": 30, "train_lo')
    messages = []
    resume_run(tmp_path / "run", notify=messages.append)
    assert any("unreadable line(s) [3]" in m for m in messages)
    assert [r["step"] for r in RunDir.open(tmp_path / "run").read_metrics().records] == [10, 20, 30, 40]


def test_environment_change_is_refused_without_force(tmp_path):
    start_run(resolve(None, TINY), tmp_path / "run")
    env_path = tmp_path / "run" / "env.json"
    env = json.loads(env_path.read_text())
    env_path.write_text(json.dumps({**env, "jax": "0.0.1", "device_count": 8}))
    with pytest.raises(UsageError, match=r"jax 0\.0\.1 -> .*--force") as refused:
        resume_run(tmp_path / "run", steps=50)
    assert "device_count" not in str(refused.value)  # on a CPU the count cannot change a run's numbers
    messages = []
    resume_run(tmp_path / "run", steps=50, force=True, notify=messages.append)
    assert any("--force" in m for m in messages)


def test_device_count_matters_off_the_cpu_only():
    from grokkit.runner import env_differences

    cpu, gpu = {"backend": "cpu", "device_count": 2}, {"backend": "gpu", "device_count": 8}
    assert env_differences(cpu, {**cpu, "device_count": 1}) == []
    assert env_differences(gpu, {**gpu, "device_count": 1}) == ["device_count 8 -> 1"]
    assert env_differences(cpu, gpu) == ["backend cpu -> gpu", "device_count 2 -> 8"]


def test_run_directory_holding_a_run_is_never_overwritten(tmp_path):
    start_run(resolve(None, TINY), tmp_path / "run")
    with pytest.raises(UsageError, match="already holds a run"):
        start_run(resolve(None, TINY), tmp_path / "run")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not an empty folder"):
        start_run(resolve(None, TINY), tmp_path / "other")


def test_run_directory_is_self_describing(tmp_path):
    start_run(resolve(None, TINY), tmp_path / "run")
    run = tmp_path / "run"
    for name in ("config.json", "env.json", "split.npz", "metrics.jsonl", "summary.json"):
        assert (run / name).is_file(), name
    env = json.loads((run / "env.json").read_text())
    assert {"python", "jax", "jaxlib", "flax", "optax", "device_kind", "device_count", "xla_flags"} <= env.keys()
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert {"step", "train_loss", "train_acc", "val_loss", "val_acc", "param_norm", "elapsed_s"} <= record.keys()
    assert (tmp_path / "latest").resolve() == run.resolve()
    with np.load(run / "split.npz") as split:
        assert len(split["train_idx"]) + len(split["val_idx"]) == 121


def test_second_process_on_a_run_is_refused(tmp_path):
    start_run(resolve(None, TINY), tmp_path / "run")
    run = RunDir.open(tmp_path / "run")
    with run.lock(), pytest.raises(UsageError, match="in use by pid"), run.lock():
        pass


def test_nan_stops_with_an_explanation_and_keeps_the_good_checkpoint(tmp_path):
    config = resolve(None, {**TINY, "optim.lr": 1e30, "train.steps": 40})
    with pytest.raises(TrainingDiverged, match="NaN/Inf"):
        start_run(config, tmp_path / "run")
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "diverged"


def test_early_exit_rule():
    history = [{"step": s, "val_acc": a} for s, a in [(10, 0.5), (20, 0.995), (30, 0.98), (40, 0.99), (50, 1.0)]]
    assert not early_exit_due(history, 20)
    assert early_exit_due(history, 10)
    assert early_exit_due(history[:2], 0)
    assert not early_exit_due(history[:3], 0)


@pytest.mark.slow
def test_tiny_run_groks_with_a_delay(tmp_path):
    result = start_run(resolve(None, GROKS), tmp_path / "run")
    summary = result.summary
    assert summary["memorized_step"] is not None and summary["generalized_step"] is not None
    assert summary["generalized_step"] >= 5 * summary["memorized_step"]
    assert result.reason == "early-exit"
    at_memorization = next(r for r in result.history if r["step"] == summary["memorized_step"])
    assert at_memorization["val_acc"] < 0.5
