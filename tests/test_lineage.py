"""Runs that start from other runs: --init-from, --train-subset, --label-noise, --mask-from/--prune (#15)."""

import json

import numpy as np
import pytest
from conftest import TINY, TINY_FLAGS
from typer.testing import CliRunner

from grokkit.checkpoint import list_checkpoints, load_checkpoint
from grokkit.cli import app
from grokkit.config import resolve
from grokkit.lineage import corrupt_labels, prune_mask
from grokkit.rundir import RunDir
from grokkit.runner import resume_run, start_run

runner = CliRunner()
SOURCE = {**TINY, "train.steps": 60, "train.early_exit": False}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A 60-step run with checkpoints at 20, 40 and 60."""
    path = tmp_path_factory.mktemp("src") / "src"
    start_run(resolve(None, SOURCE), path)
    return path


def records(path, after=0):
    rows = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rows if r["step"] > after]


def final_params(path):
    arrays, _ = load_checkpoint(list_checkpoints(path / "checkpoints")[-1])
    return {k: v for k, v in arrays.items() if k.startswith("params/")}


def same_arrays(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_continuing_with_the_optimizer_equals_the_source_trajectory_bit_for_bit(source, tmp_path):
    config = resolve(None, {**SOURCE, "train.init_from": f"{source}@20", "train.init_optimizer": True})
    start_run(config, tmp_path / "cont")
    assert records(tmp_path / "cont") == records(source, after=20)
    assert same_arrays(final_params(tmp_path / "cont"), final_params(source))


def test_provenance_is_in_config_json_and_resume_is_bit_exact(source, tmp_path):
    config = resolve(None, {**SOURCE, "train.init_from": str(source), "train.steps": 80})  # newest: step 60
    start_run(config, tmp_path / "a")
    saved = json.loads((tmp_path / "a" / "config.json").read_text())["train"]
    newest = list_checkpoints(source / "checkpoints")[-1]
    assert saved["init_from"] == f"{source.resolve()}@{newest.step}"
    assert saved["init_sha256"] == load_checkpoint(newest)[1]["sha256"]
    # the same run stopped at 40 and resumed gives the same numbers
    start_run(resolve(None, {**SOURCE, "train.init_from": str(source), "train.steps": 40}), tmp_path / "b")
    # params only: a fresh optimizer from step 0, the source's weights
    first = load_checkpoint(list_checkpoints(tmp_path / "b" / "checkpoints")[0])[0]
    assert first["step"] == 0
    assert np.array_equal(first["params/embed_VD/value"], final_params(source)["params/embed_VD/value"])
    resume_run(tmp_path / "b", steps=80)
    assert records(tmp_path / "b") == records(tmp_path / "a")
    assert same_arrays(final_params(tmp_path / "b"), final_params(tmp_path / "a"))


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--d-model", "32", "--heads", "2"], "tensor params/"),
        (["--p", "13"], "p 11"),
        (["--task", "mod-mul"], "task 'mod-add'"),
    ],
)
def test_another_model_or_task_is_one_line_exit_2(source, tmp_path, flags, named):
    result = runner.invoke(
        app, ["train", *TINY_FLAGS, *flags, "--init-from", str(source), "--run-dir", str(tmp_path / "x")]
    )
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--init-from" in lines[0] and named in lines[0], lines
    assert not (tmp_path / "x").exists()


def test_missing_or_corrupt_source_checkpoint_is_one_line_exit_2(source, tmp_path):
    for where in (f"{source}@30", str(tmp_path / "nothing"), "a" * 5000, "a/" * 3000 + "@5", ""):
        result = runner.invoke(app, ["train", *TINY_FLAGS, "--init-from", where, "--run-dir", str(tmp_path / "x")])
        assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, result.output
    broken = tmp_path / "broken"
    start_run(resolve(None, {**TINY, "train.steps": 20}), broken)
    npz = list_checkpoints(broken / "checkpoints")[-1].path
    npz.write_bytes(npz.read_bytes()[:-10])
    result = runner.invoke(app, ["train", *TINY_FLAGS, "--init-from", str(broken), "--run-dir", str(tmp_path / "x")])
    assert result.exit_code == 2 and "checksum" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_prune_mask_removes_the_smallest_magnitudes_per_tensor():
    w = np.array([[0.5, -0.1], [0.05, -2.0]], np.float32)
    assert prune_mask(w, 0.5).tolist() == [[True, False], [False, True]]
    assert prune_mask(w, 0.0).all()


def test_ticket_weights_stay_exactly_zero_through_training_and_resume(source, tmp_path):
    flags = {**SOURCE, "optim.mask_from": f"{source}@60", "optim.prune": 0.4, "train.steps": 40, "seed": 3}
    start_run(resolve(None, flags), tmp_path / "t")
    resume_run(tmp_path / "t", steps=60)
    pruned_any = False
    for info in list_checkpoints(tmp_path / "t" / "checkpoints"):
        arrays = load_checkpoint(info)[0]
        for name, w in arrays.items():
            if name.startswith("params/") and w.ndim >= 2:
                mask = prune_mask(final_params(source)[name], 0.4)
                assert np.count_nonzero(~mask) == round(0.4 * w.size)
                assert np.all(w[~mask] == 0) and np.all(w[mask] != 0), (info.step, name)
                pruned_any = True
            elif name.startswith("params/"):
                assert np.any(w != 0) or "b_" in name  # biases train freely
    assert pruned_any
    saved = json.loads((tmp_path / "t" / "config.json").read_text())["optim"]
    assert saved["mask_from"] == f"{source.resolve()}@60" and len(saved["mask_sha256"]) == 64


@pytest.mark.parametrize("vectorized", [False, True], ids=["one-by-one", "vectorized"])
def test_sweep_members_start_from_the_source_and_keep_the_mask(source, tmp_path, monkeypatch, vectorized):
    from grokkit import group

    monkeypatch.setattr(group, "vectorize_members", lambda backend=None: vectorized)
    result = runner.invoke(
        app,
        ["sweep", *TINY_FLAGS, "--steps", "40", "--seed", "0,1", "--mask-from", f"{source}@60", "--prune", "0.4",
         "--run-dir", str(tmp_path / "sw")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    members = sorted(p for p in (tmp_path / "sw").iterdir() if (p / "config.json").exists())
    assert len(members) == 2
    for member in members:
        params = final_params(member)
        for name, w in params.items():
            if w.ndim >= 2:
                assert np.all(w[~prune_mask(final_params(source)[name], 0.4)] == 0), (member.name, name)
    result = runner.invoke(
        app, ["sweep", *TINY_FLAGS, "--init-from", f"{source}@20", "--init-optimizer", "--steps", "60",
              "--run-dir", str(tmp_path / "cont")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (member,) = [p for p in (tmp_path / "cont").iterdir() if (p / "config.json").exists()]
    if not vectorized:  # vmapped members match standalone runs to float tolerance only (README, Sweeps)
        assert records(member) == records(source, after=20)


@pytest.mark.parametrize("xi", [0.0, 0.1, 0.37, 0.9])
def test_label_noise_is_deterministic_exact_in_count_and_always_another_class(xi):
    labels = np.random.default_rng(0).integers(0, 13, size=200)
    noisy, where = corrupt_labels(labels, 13, xi, seed=5)
    again, where_again = corrupt_labels(labels, 13, xi, seed=5)
    assert np.array_equal(noisy, again) and np.array_equal(where, where_again)
    assert len(where) == round(xi * 200) == np.count_nonzero(noisy != labels)
    assert np.all(noisy[where] != labels[where]) and np.all((noisy >= 0) & (noisy < 13))
    if xi:
        assert not np.array_equal(where, corrupt_labels(labels, 13, xi, seed=6)[1])


@pytest.mark.parametrize(
    ("flags", "option"),
    [
        (["--train-subset", "0.5"], "--train-subset"),
        (["--label-noise", "1.0"], "--label-noise"),
        (["--label-noise", "-0.1"], "--label-noise"),
        (["--prune", "1", "--mask-from", "x@1"], "--prune"),
        (["--prune", "-0.5", "--mask-from", "x@1"], "--prune"),
        (["--prune", "0.5"], "--prune"),
        (["--init-optimizer"], "--init-optimizer"),
    ],
)
@pytest.mark.parametrize("command", ["train", "sweep"])
def test_bad_lineage_input_is_one_line_exit_2(tmp_path, flags, option, command):
    result = runner.invoke(app, [command, *TINY_FLAGS, *flags, "--run-dir", str(tmp_path / "x")])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and option in lines[0], lines
    assert not (tmp_path / "x").exists()


def test_train_subset_is_a_deterministic_part_of_the_source_split(source, tmp_path):
    from grokkit.train import make_experiment

    config = resolve(None, {**SOURCE, "train.init_from": f"{source}@60", "data.train_subset": 0.5})
    start_run(config, tmp_path / "sub")
    exp = make_experiment(RunDir.open(tmp_path / "sub").config(), split=RunDir.open(tmp_path / "sub").split())
    full = RunDir.open(source).split()
    assert np.array_equal(RunDir.open(tmp_path / "sub").split().val_idx, full.val_idx)
    assert len(exp.train_idx) == round(0.5 * len(full.train_idx))
    assert set(exp.train_idx) < set(full.train_idx)
    again = make_experiment(config, split=full)
    assert np.array_equal(again.train_idx, exp.train_idx)
    resume_run(tmp_path / "sub", steps=80)  # resumes onto the same subset
    assert [r["step"] for r in records(tmp_path / "sub")] == [10, 20, 30, 40, 50, 60, 70, 80]


def test_label_noise_run_records_clean_and_corrupted_accuracy_and_stores_the_indices(tmp_path):
    from grokkit.train import make_experiment

    config = resolve(None, {**TINY, "data.label_noise": 0.2, "train.steps": 20})
    start_run(config, tmp_path / "noisy")
    exp = make_experiment(config)
    stored = np.load(tmp_path / "noisy" / "label_noise.npz")
    assert len(stored["index"]) == round(0.2 * exp.n_train)
    assert np.array_equal(stored["true_label"], exp.dataset.labels[stored["index"]])
    assert np.all(stored["noisy_label"] != stored["true_label"])
    for record in records(tmp_path / "noisy"):
        assert {"train_acc_clean", "train_acc_corrupted", "train_acc_corrupted_true"} <= set(record)
    assert "train_acc_clean" not in records(_plain_run(tmp_path))[0]


def _plain_run(tmp_path):
    start_run(resolve(None, {**TINY, "train.steps": 10, "train.checkpoint_every": 10}), tmp_path / "plain")
    return tmp_path / "plain"


def test_random_mask_control_prunes_as_many_weights_elsewhere(source, tmp_path):
    flags = {**SOURCE, "optim.mask_from": f"{source}@60", "optim.prune": 0.5, "train.steps": 20}
    start_run(resolve(None, {**flags, "optim.mask_random": True}), tmp_path / "r")
    start_run(resolve(None, flags), tmp_path / "m")
    random, ticket = final_params(tmp_path / "r"), final_params(tmp_path / "m")
    name = "params/blocks/0/w_in_DF/value"
    assert np.count_nonzero(random[name] == 0) == np.count_nonzero(ticket[name] == 0) == round(0.5 * random[name].size)
    assert not np.array_equal(random[name] == 0, ticket[name] == 0)


def test_restart_of_a_continued_run_starts_from_the_source_again(source, tmp_path):
    config = resolve(None, {**SOURCE, "train.init_from": f"{source}@20", "train.init_optimizer": True})
    start_run(config, tmp_path / "c")
    resume_run(tmp_path / "c", restart=True, steps=60)
    assert records(tmp_path / "c") == records(source, after=20)


def test_neuron_ipr_is_one_for_a_single_frequency_and_small_when_spread():
    from grokkit.inspection import neuron_ipr

    p = 41
    residues = np.arange(p)
    periodic = np.cos(2 * np.pi * 5 * residues / p + 0.3)
    spread = np.random.default_rng(0).standard_normal(p)
    ipr = neuron_ipr(np.stack([periodic, spread], axis=1)[None])
    assert ipr[0] == pytest.approx(1.0) and ipr[1] < 0.2


def test_inspect_shows_the_neuron_ipr(source):
    result = runner.invoke(app, ["inspect", str(source)])
    assert result.exit_code == 0, result.output
    assert "inverse participation ratio" in result.output


@pytest.mark.parametrize(
    ("val", "clean", "corrupted", "true", "phase"),
    [
        (0.99, 1.0, 1.0, 0.0, "coexistence"),
        (0.99, 1.0, 0.5, 0.5, "partial inversion"),
        (1.0, 1.0, 0.0, 1.0, "full inversion"),
        (0.1, 1.0, 1.0, 0.0, "memorization"),
        (0.1, 1.0, 0.2, 0.1, "forgetting"),
        (0.1, 0.5, 0.2, 0.1, "confusion"),
    ],
)
def test_noise_phase_names(val, clean, corrupted, true, phase):
    from grokkit.analysis import noise_phase

    record = {"val_acc": val, "train_acc_clean": clean, "train_acc_corrupted": corrupted,
              "train_acc_corrupted_true": true}  # fmt: skip
    assert noise_phase(record) == phase
    assert noise_phase({"val_acc": val}) is None


def test_report_names_the_label_noise_phase(tmp_path):
    start_run(resolve(None, {**TINY, "data.label_noise": 0.2, "train.steps": 20}), tmp_path / "n")
    result = runner.invoke(app, ["report", str(tmp_path / "n"), "--no-plot"])
    assert result.exit_code == 0, result.output
    assert "label-noise phase (Doshi et al. 2024)" in " ".join(result.output.split())
    result = runner.invoke(app, ["report", str(tmp_path / "n"), "--json"])
    assert json.loads(result.output)["noise_phase"] in ("memorization", "forgetting", "confusion")


def test_a_sweep_member_the_source_does_not_fit_is_refused_before_any_folder(source, tmp_path):
    sweep = tmp_path / "sws"
    result = runner.invoke(
        app, ["sweep", *TINY_FLAGS, "--init-from", str(source), "--seed", "0,1", "--run-dir", str(sweep)]
    )
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--init-from" in lines[0] and "seed=1" in lines[0] and "--data-seed 0" in lines[0]
    assert not sweep.exists()


@pytest.mark.parametrize("step", [40, 60])
def test_continuing_the_optimizer_needs_a_budget_past_the_source_step(source, tmp_path, step):
    flags = ["--init-from", f"{source}@{step}", "--init-optimizer", "--run-dir", str(tmp_path / "x")]
    result = runner.invoke(app, ["train", *TINY_FLAGS, *flags])  # --steps 40
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --steps:") and f"above {step}" in lines[0], lines
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("step", ["_", "1__0", "100_", "_20"])
def test_a_malformed_source_step_is_one_line_exit_2(source, tmp_path, step):
    result = runner.invoke(
        app, ["train", *TINY_FLAGS, "--init-from", f"{source}@{step}", "--run-dir", str(tmp_path / "x")]
    )
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--init-from" in lines[0], result.output
    assert not (tmp_path / "x").exists()


def test_restart_moves_the_label_noise_aside_and_writes_config_json_s(tmp_path):
    from grokkit.train import make_experiment

    run = tmp_path / "noisy"
    start_run(resolve(None, {**TINY, "data.label_noise": 0.2, "train.steps": 20}), run)
    old = np.load(run / "label_noise.npz")["index"]
    raw = json.loads((run / "config.json").read_text())
    raw["data"]["label_noise"] = 0.1
    (run / "config.json").write_text(json.dumps(raw))
    resume_run(run, restart=True)
    (aside,) = run.glob("previous-*")
    assert np.array_equal(np.load(aside / "label_noise.npz")["index"], old)
    new = np.load(run / "label_noise.npz")["index"]
    assert len(new) == round(0.1 * make_experiment(RunDir.open(run).config()).n_train) < len(old)
    raw["data"]["label_noise"] = 0.0
    (run / "config.json").write_text(json.dumps(raw))
    resume_run(run, restart=True)
    assert not (run / "label_noise.npz").exists()


def test_flag_names_come_from_the_option_table():
    import inspect

    import grokkit.lineage
    import grokkit.runner

    for module, flags in (
        (grokkit.lineage, ("--init-from", "--mask-from", "--train-subset")),
        (grokkit.runner, ("--steps",)),
    ):
        text = inspect.getsource(module)
        assert not [flag for flag in flags if f'"{flag}"' in text]
