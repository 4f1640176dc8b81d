"""TransformerLens export: names, shapes and config, and a NumPy TransformerLens forward pass that matches grokkit."""

import ast
import json
import math
import runpy
import shutil
import sys
import types
from importlib.metadata import version

import numpy as np
import pytest
from conftest import TINY
from flax import nnx

from grokkit.checkpoint import list_checkpoints, load_checkpoint
from grokkit.config import resolve
from grokkit.data import split_dataset
from grokkit.errors import UsageError
from grokkit.rundir import RunDir
from grokkit.runner import resume_run, start_run
from grokkit.train import abstract_state, make_experiment, state_from_arrays
from grokkit.transformerlens import CONFIG_NAME, DATA_NAME, EXPORT_NAME, LOADER_NAME, export_transformerlens

SHORT = {"train.steps": 20, "train.eval_every": 10, "train.checkpoint_every": 10}
ONE_LAYER = {**TINY, **SHORT}
TWO_LAYERS = {
    **TINY,
    **SHORT,
    "model.layers": 2,
    "model.d_model": 24,
    "model.heads": 4,
    "model.d_mlp": 40,
    "model.layer_norm": True,
    "model.activation": "gelu",
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tl-runs")
    start_run(resolve(None, ONE_LAYER), root / "one")
    start_run(resolve(None, TWO_LAYERS), root / "two")
    return {"one": root / "one", "two": root / "two"}


@pytest.fixture(scope="module")
def exports(runs, tmp_path_factory):
    root = tmp_path_factory.mktemp("tl-out")
    return {name: (export_transformerlens(path, root / name), root / name) for name, path in runs.items()}


def expected_shapes(layers, d, h, k, f, vocab, classes, ctx, layer_norm):
    shapes = {
        "embed.W_E": (vocab, d),
        "pos_embed.W_pos": (ctx, d),
        "unembed.W_U": (d, classes),
        "unembed.b_U": (classes,),
    }
    for layer in range(layers):
        b = f"blocks.{layer}."
        shapes |= {b + f"attn.W_{x}": (h, d, k) for x in "QKV"} | {b + f"attn.b_{x}": (h, k) for x in "QKV"}
        shapes |= {b + "attn.W_O": (h, k, d), b + "attn.b_O": (d,)}
        shapes |= {b + "mlp.W_in": (d, f), b + "mlp.b_in": (f,), b + "mlp.W_out": (f, d), b + "mlp.b_out": (d,)}
        if layer_norm:
            shapes |= {b + f"{ln}.{wb}": (d,) for ln in ("ln1", "ln2") for wb in "wb"}
    if layer_norm:
        shapes |= {"ln_final.w": (d,), "ln_final.b": (d,)}
    return shapes


def read_npz(path):
    with np.load(path) as npz:
        return {name: npz[name] for name in npz.files}


@pytest.mark.parametrize(
    ("name", "shape_args"),
    [("one", (1, 16, 2, 8, 32, 12, 11, 3, False)), ("two", (2, 24, 4, 6, 40, 12, 11, 3, True))],
)
def test_names_shapes_and_config(exports, name, shape_args):
    written, out = exports[name]
    assert [p.name for p in written] == ["step_000000010.npz", "step_000000020.npz"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [CONFIG_NAME, DATA_NAME, EXPORT_NAME, LOADER_NAME, *(p.name for p in written)]
    )
    expected = expected_shapes(*shape_args)
    for path in written:
        tensors = read_npz(path)
        assert {k: v.shape for k, v in tensors.items()} == expected
        assert all(v.dtype == np.float32 for v in tensors.values())
    layers, d, h, k, f, vocab, classes, ctx, layer_norm = shape_args
    cfg = json.loads((out / CONFIG_NAME).read_text())
    assert {key: cfg[key] for key in ("n_layers", "d_model", "n_heads", "d_head", "d_mlp")} == {
        "n_layers": layers, "d_model": d, "n_heads": h, "d_head": k, "d_mlp": f,
    }  # fmt: skip
    assert (cfg["d_vocab"], cfg["d_vocab_out"], cfg["n_ctx"]) == (vocab, classes, ctx)
    assert cfg["act_fn"] == ("gelu_new" if name == "two" else "relu")
    assert cfg["normalization_type"] == ("LN" if layer_norm else None)
    assert cfg["positional_embedding_type"] == "standard" and cfg["attn_only"] is False


GELU_NEW = lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))  # noqa: E731
ACTIVATIONS = {
    "relu": lambda x: np.maximum(x, 0),
    "gelu_new": GELU_NEW,
    "gelu": np.vectorize(lambda x: 0.5 * x * (1 + math.erf(x / math.sqrt(2)))),
}


def tl_layer_norm(x, sd, name, cfg):
    """TransformerLens's LayerNorm: centre, divide by sqrt(mean square + eps), scale and shift."""
    x = x - x.mean(-1, keepdims=True)
    return x / np.sqrt((x**2).mean(-1, keepdims=True) + cfg["eps"]) * sd[f"{name}.w"] + sd[f"{name}.b"]


def tl_forward(sd, cfg, tokens_BT):
    """TransformerLens's HookedTransformer forward pass, restated in NumPy (float64): logits [B, T, V_out]."""
    sd = {k: v.astype(np.float64) for k, v in sd.items()}
    norm = (lambda x, name: tl_layer_norm(x, sd, name, cfg)) if cfg["normalization_type"] == "LN" else (lambda x, _: x)
    seq = tokens_BT.shape[1]
    x = sd["embed.W_E"][tokens_BT] + sd["pos_embed.W_pos"][:seq]
    causal = np.tril(np.ones((seq, seq), bool))
    for layer in range(cfg["n_layers"]):
        b = f"blocks.{layer}."
        a = norm(x, b + "ln1")
        q, k, v = (np.einsum("btd,hdk->bthk", a, sd[b + f"attn.W_{n}"]) + sd[b + f"attn.b_{n}"] for n in "QKV")
        scores = np.einsum("bqhk,bshk->bhqs", q, k) / np.sqrt(cfg["d_head"])
        scores = np.where(causal, scores, -np.inf)
        pattern = np.exp(scores - scores.max(-1, keepdims=True))
        pattern /= pattern.sum(-1, keepdims=True)
        z = np.einsum("bhqs,bshk->bqhk", pattern, v)
        x = x + np.einsum("bqhk,hkd->bqd", z, sd[b + "attn.W_O"]) + sd[b + "attn.b_O"]
        post = ACTIVATIONS[cfg["act_fn"]](norm(x, b + "ln2") @ sd[b + "mlp.W_in"] + sd[b + "mlp.b_in"])
        x = x + post @ sd[b + "mlp.W_out"] + sd[b + "mlp.b_out"]
    if cfg["normalization_type"] == "LN":
        x = norm(x, "ln_final")
    return x @ sd["unembed.W_U"] + sd["unembed.b_U"]


def grokkit_logits(run_path, step):
    """grokkit's own logits (its fast forward pass) for every example, from the checkpoint at `step`."""
    run = RunDir.open(run_path)
    exp = make_experiment(run.config(), split=run.split())
    info = next(i for i in list_checkpoints(run.checkpoints) if i.step == step)
    state = state_from_arrays(abstract_state(exp), load_checkpoint(info)[0])
    return np.asarray(nnx.merge(exp.graphdef, state.params)(exp.dataset.tokens)), exp.dataset


@pytest.mark.parametrize("name", ["one", "two"])
def test_transformerlens_forward_pass_on_the_export_reproduces_grokkits_logits(runs, exports, name):
    written, out = exports[name]
    cfg = json.loads((out / CONFIG_NAME).read_text())
    for path in written:
        expected, dataset = grokkit_logits(runs[name], int(path.stem.removeprefix("step_")))
        logits = tl_forward(read_npz(path), cfg, dataset.tokens)[:, -1]
        assert np.abs(logits - expected).max() < 1e-4
        assert np.abs(expected).max() > 0.1  # a real comparison, not of two near-zero tensors


def test_a_wrong_activation_name_would_be_caught(runs, exports):
    written, out = exports["two"]
    cfg = {**json.loads((out / CONFIG_NAME).read_text()), "act_fn": "gelu"}  # the exact GELU, not jax.nn.gelu's
    expected, dataset = grokkit_logits(runs["two"], 20)
    assert np.abs(tl_forward(read_npz(written[-1]), cfg, dataset.tokens)[:, -1] - expected).max() > 1e-4


def test_data_file_holds_every_example_and_the_runs_split(runs, exports):
    _, out = exports["one"]
    data = read_npz(out / DATA_NAME)
    run = RunDir.open(runs["one"])
    exp = make_experiment(run.config(), split=run.split())
    np.testing.assert_array_equal(data["tokens"], exp.dataset.tokens)
    np.testing.assert_array_equal(data["true_labels"], exp.dataset.labels)
    np.testing.assert_array_equal(data["train_idx"], run.split().train_idx)
    np.testing.assert_array_equal(data["split_train_idx"], run.split().train_idx)
    np.testing.assert_array_equal(data["train_labels"], exp.dataset.labels[run.split().train_idx])
    np.testing.assert_array_equal(data["val_idx"], run.split().val_idx)


@pytest.fixture(scope="module")
def lineage_runs(runs, tmp_path_factory):
    """A --label-noise run and a --train-subset run (initialized from run "one"), as tiny transformers."""
    root = tmp_path_factory.mktemp("tl-lineage")
    start_run(resolve(None, {**ONE_LAYER, "data.label_noise": 0.3}), root / "noisy")
    subset = {**ONE_LAYER, "train.init_from": f"{runs['one']}@20", "data.train_subset": 0.5}
    start_run(resolve(None, subset), root / "subset")
    return {"noisy": root / "noisy", "subset": root / "subset"}


def tl_predictions(out, step_file, tokens):
    """The export's predicted class for every example at one step, by the NumPy TransformerLens forward pass."""
    cfg = json.loads((out / CONFIG_NAME).read_text())
    return tl_forward(read_npz(step_file), cfg, tokens)[:, -1].argmax(-1)


def run_loader_main(out, monkeypatch, capsys):
    """The export's loader script's main(), with HookedTransformer replaced by the NumPy forward pass above:
    {step: accuracy} as it prints them."""
    fake_torch, fake_tl = types.ModuleType("torch"), types.ModuleType("transformer_lens")
    fake_torch.Tensor = fake_tl.HookedTransformer = fake_tl.HookedTransformerConfig = object
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    monkeypatch.setitem(sys.modules, "transformer_lens", fake_tl)
    loader = runpy.run_path(str(out / LOADER_NAME))
    loader["main"].__globals__["predict"] = lambda path, data: tl_predictions(out, path, data["tokens"])
    capsys.readouterr()
    loader["main"]()
    printed = {}
    for line in capsys.readouterr().out.splitlines():
        step, accuracy = line.removeprefix("step ").split(": accuracy ")
        printed[int(step.replace(",", ""))] = ast.literal_eval(accuracy)
    return printed


@pytest.mark.parametrize("name", ["noisy", "subset"])
def test_loader_train_accuracy_is_grokkits_recorded_train_acc(lineage_runs, tmp_path, monkeypatch, capsys, name):
    export_transformerlens(lineage_runs[name], tmp_path / "out")
    data = read_npz(tmp_path / "out" / DATA_NAME)
    run = RunDir.open(lineage_runs[name])
    exp = make_experiment(run.config(), split=run.split())
    np.testing.assert_array_equal(data["train_idx"], exp.train_idx)
    np.testing.assert_array_equal(data["train_labels"], exp.train_labels[0])
    np.testing.assert_array_equal(data["split_train_idx"], run.split().train_idx)
    np.testing.assert_array_equal(data["true_labels"], exp.dataset.labels)
    recorded = {r["step"]: r for r in run.read_metrics().records}
    printed = run_loader_main(tmp_path / "out", monkeypatch, capsys)
    assert {10, 20} <= set(printed) <= {0, 10, 20}  # a --init-from run also checkpoints its initial state
    for step in (10, 20):
        accuracy = printed[step]
        assert accuracy["train"] == pytest.approx(recorded[step]["train_acc"], abs=1e-4)
        assert accuracy["val"] == pytest.approx(recorded[step]["val_acc"], abs=1e-4)
    final = tl_predictions(tmp_path / "out", tmp_path / "out" / "step_000000020.npz", data["tokens"])
    whole_split = (final[data["split_train_idx"]] == data["true_labels"][data["split_train_idx"]]).mean()
    assert whole_split != pytest.approx(recorded[20]["train_acc"], abs=1e-4)  # the stored split would be wrong


def test_loader_script_is_valid_python(exports):
    _, out = exports["one"]
    ast.parse((out / LOADER_NAME).read_text())


def test_chosen_steps_and_bad_ones(runs, tmp_path):
    assert [p.name for p in export_transformerlens(runs["one"], tmp_path / "a", steps=[20])] == ["step_000000020.npz"]
    with pytest.raises(UsageError, match=r"no checkpoint at step 15 .*\(checkpoints: 10, 20\)"):
        export_transformerlens(runs["one"], tmp_path / "b", steps=[15])
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="is a file"):
        export_transformerlens(runs["one"], tmp_path / "file")


def test_a_folder_is_reused_only_for_the_same_run(runs, tmp_path):
    export_transformerlens(runs["one"], tmp_path / "a", steps=[10])
    export_transformerlens(runs["one"], tmp_path / "a", steps=[20])
    assert sorted(p.name for p in (tmp_path / "a").glob("step_*.npz")) == ["step_000000020.npz"]  # only this export
    with pytest.raises(UsageError, match="holds other files than an export of this run"):
        export_transformerlens(runs["two"], tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="holds other files"):
        export_transformerlens(runs["one"], tmp_path / "b")


def test_another_run_with_the_same_folder_name_is_refused_not_mixed_in(runs, tmp_path):
    other = tmp_path / "other" / "one"  # same basename as runs["one"], another seed
    start_run(resolve(None, {**ONE_LAYER, "seed": 1, "train.steps": 10}), other)
    out = tmp_path / "tl"
    export_transformerlens(runs["one"], out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(UsageError, match=r"holds other files than an export of this run \(an export of .*one\)"):
        export_transformerlens(other, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing of the other run written
    identity = json.loads((out / EXPORT_NAME).read_text())
    assert identity["run"] == str(runs["one"].resolve()) and len(identity["config_hash"]) == 64
    copy = tmp_path / "copy" / "one"  # the same config at another path is another run too
    shutil.copytree(runs["one"], copy)
    with pytest.raises(UsageError, match="holds other files than an export of this run"):
        export_transformerlens(copy, out)


def test_a_config_hash_change_at_the_same_path_is_refused(runs, tmp_path):
    copy = tmp_path / "one"
    shutil.copytree(runs["one"], copy)
    export_transformerlens(copy, tmp_path / "tl")
    config = json.loads((copy / "config.json").read_text())
    config["seed"] += 1
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(UsageError, match="holds other files than an export of this run"):
        export_transformerlens(copy, tmp_path / "tl")


def test_steps_gone_after_resume_restart_leave_the_export(runs, tmp_path):
    copy = tmp_path / "one"
    shutil.copytree(runs["one"], copy)
    export_transformerlens(copy, tmp_path / "tl")
    resume_run(copy, steps=10, restart=True)  # checkpoints now: step 10 only, of the new trajectory
    written = export_transformerlens(copy, tmp_path / "tl")
    assert sorted(p.name for p in (tmp_path / "tl").glob("step_*.npz")) == [p.name for p in written]
    assert [p.name for p in written] == ["step_000000010.npz"]


def test_an_invalid_checkpoint_is_skipped_unless_asked_for(runs, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(runs["one"], copy)
    (copy / "checkpoints" / "step_000000020.npz").write_bytes(b"torn")
    assert [p.name for p in export_transformerlens(copy, tmp_path / "out")] == ["step_000000010.npz"]
    with pytest.raises(UsageError, match="step 20 failed to load"):
        export_transformerlens(copy, tmp_path / "out2", steps=[20])


def bare_run(path, **overrides):
    """A run directory with a config and no training (enough for the refusals)."""
    config = resolve(None, {**TINY, **overrides})
    RunDir.create(path, config, {}, split_dataset(121, 0.5, 0), link_latest=False)
    return path


def test_refuses_mlp_runs_quadratic_activations_and_runs_without_checkpoints(tmp_path):
    with pytest.raises(UsageError, match="needs a transformer run; this run's model is mlp"):
        export_transformerlens(bare_run(tmp_path / "mlp", **{"model.kind": "mlp"}), tmp_path / "o1")
    with pytest.raises(UsageError, match="no quadratic activation"):
        export_transformerlens(bare_run(tmp_path / "sq", **{"model.activation": "quadratic"}), tmp_path / "o2")
    with pytest.raises(UsageError, match="no valid checkpoint to export"):
        export_transformerlens(bare_run(tmp_path / "empty"), tmp_path / "o3")


@pytest.mark.parametrize("name", ["one", "two"])
def test_loads_in_transformerlens_for_real(runs, exports, name):
    pytest.importorskip("transformer_lens")
    written, out = exports[name]
    if int(version("transformer_lens").split(".")[0]) >= 4:  # HookedTransformer was removed in 4.0
        with pytest.raises(SystemExit, match=r"transformer_lens<4"):
            runpy.run_path(str(out / LOADER_NAME))
        return
    loader = runpy.run_path(str(out / LOADER_NAME))
    for path in written:
        model = loader["load"](path)
        expected, dataset = grokkit_logits(runs[name], int(path.stem.removeprefix("step_")))
        logits = loader["answer_logits"](model, dataset.tokens).double().numpy()
        assert np.abs(logits - expected).max() < 1e-4
