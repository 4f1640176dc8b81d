"""TransformerLens export: a transformer run's checkpoints as HookedTransformer state dicts.

The folder holds one `step_NNNNNNNNN.npz` per exported checkpoint (TransformerLens parameter names
and shapes), `config.json` (the HookedTransformerConfig arguments), `data.npz` (every example, the
examples and labels the run trained on, and its validation split), `grokkit_export.json` (which run
this is: its absolute path and config hash) and `load_in_transformerlens.py`, which loads and
evaluates them. grokkit reads its answer at the final position: TransformerLens's `logits[:, -1]`.

A folder is reused only for an export of the same run (same path, same config hash); another run's
export there is refused. Each export leaves exactly its own step files: older ones are removed.

data.npz: `tokens` [n, seq] and `true_labels` [n] for every example (dataset order); `train_idx` and
`train_labels` the examples and labels actually trained on (--train-subset's part of the split,
--label-noise's replaced labels); `val_idx`; `split_train_idx` the stored split's training examples.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from grokkit.atomic import atomic_write, atomic_write_bytes, atomic_write_json
from grokkit.checkpoint import (
    CheckpointError,
    CheckpointInfo,
    checkpoint_path,
    config_hash,
    list_checkpoints,
    load_checkpoint,
)
from grokkit.config import Activation, Config, ModelConfig, ModelKind
from grokkit.errors import UsageError
from grokkit.rundir import RunDir

CONFIG_NAME = "config.json"
DATA_NAME = "data.npz"
LOADER_NAME = "load_in_transformerlens.py"
EXPORT_NAME = "grokkit_export.json"
"""Which run the folder's export is of: {"run": absolute run path, "config_hash": checkpoint.config_hash}."""
LAYER_NORM_EPS = 1e-5
"""grokkit.models.LayerNorm's epsilon (TransformerLens's default too)."""

ACT_FN = {Activation.relu: "relu", Activation.gelu: "gelu_new"}
"""TransformerLens's name for each activation; jax.nn.gelu is the tanh approximation, TL's gelu_new."""


def transformerlens_config(model: ModelConfig, tensors: dict[str, np.ndarray], name: str) -> dict[str, Any]:
    """The HookedTransformerConfig arguments for exported `tensors` of a model built from `model`."""
    return {
        "model_name": name,
        "n_layers": model.layers,
        "d_model": model.d_model,
        "d_head": model.d_model // model.heads,
        "n_heads": model.heads,
        "d_mlp": model.d_mlp,
        "d_vocab": int(tensors["embed.W_E"].shape[0]),
        "d_vocab_out": int(tensors["unembed.W_U"].shape[1]),
        "n_ctx": int(tensors["pos_embed.W_pos"].shape[0]),
        "act_fn": ACT_FN[Activation(model.activation)],
        "normalization_type": "LN" if model.layer_norm else None,
        "eps": LAYER_NORM_EPS,
        "attn_only": False,
        "positional_embedding_type": "standard",
        "attention_dir": "causal",
        "use_attn_scale": True,
        "default_prepend_bos": False,
    }


def transformerlens_state_dict(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """HookedTransformer's state dict from grokkit's Transformer parameters ({"blocks/0/w_q_DHK": ...}).

    grokkit has no attention or unembedding biases: they are exported as zeros.
    """

    def get(name: str) -> np.ndarray:
        return np.asarray(params[name], np.float32)

    w_q_DHK = get("blocks/0/w_q_DHK")
    d_model, heads, d_head = w_q_DHK.shape
    n_classes = get("unembed_DC").shape[1]
    out = {"embed.W_E": get("embed_VD"), "pos_embed.W_pos": get("pos_TD")}
    layer = 0
    while f"blocks/{layer}/w_q_DHK" in params:
        grok, tl = f"blocks/{layer}/", f"blocks.{layer}."
        for x in "qkv":
            out[f"{tl}attn.W_{x.upper()}"] = get(f"{grok}w_{x}_DHK").transpose(1, 0, 2)
            out[f"{tl}attn.b_{x.upper()}"] = np.zeros((heads, d_head), np.float32)
        out[f"{tl}attn.W_O"] = get(f"{grok}w_o_HKD")
        out[f"{tl}attn.b_O"] = np.zeros((d_model,), np.float32)
        out[f"{tl}mlp.W_in"] = get(f"{grok}w_in_DF")
        out[f"{tl}mlp.b_in"] = get(f"{grok}b_in_F")
        out[f"{tl}mlp.W_out"] = get(f"{grok}w_out_FD")
        out[f"{tl}mlp.b_out"] = get(f"{grok}b_out_D")
        for grok_ln, tl_ln in (("ln_attn", "ln1"), ("ln_mlp", "ln2")):
            if f"{grok}{grok_ln}/scale" in params:
                out[f"{tl}{tl_ln}.w"] = get(f"{grok}{grok_ln}/scale")
                out[f"{tl}{tl_ln}.b"] = get(f"{grok}{grok_ln}/bias")
        layer += 1
    if "ln_final/scale" in params:
        out["ln_final.w"] = get("ln_final/scale")
        out["ln_final.b"] = get("ln_final/bias")
    out["unembed.W_U"] = get("unembed_DC")
    out["unembed.b_U"] = np.zeros((n_classes,), np.float32)
    return out


def checkpoint_params(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A checkpoint's model parameters by module path: "params/blocks/0/w_q_DHK/value" -> "blocks/0/w_q_DHK"."""
    return {
        name.removeprefix("params/").removesuffix("/value"): value
        for name, value in arrays.items()
        if name.startswith("params/")
    }


def export_transformerlens(run_dir: Path, out: Path, steps: list[int] | None = None) -> list[Path]:
    """Write a transformer run's valid checkpoints (or those at `steps`) for TransformerLens; returns the .npz files."""
    run, out = RunDir.open(run_dir), Path(out)
    config = run.config()
    _check_exportable(config)
    infos = _selected(run, steps)
    name = f"grokkit-{run.path.name}"
    identity = {"run": str(run.path.resolve()), "config_hash": config_hash(config)}
    _make_folder(out, identity)
    written: list[Path] = []
    tensors: dict[str, np.ndarray] = {}
    try:
        for info in infos:
            try:
                arrays, _ = load_checkpoint(info)
            except CheckpointError as err:
                if steps is None:
                    continue  # an invalid file is not a checkpoint (a write was interrupted); resume skips it too
                raise UsageError(f"checkpoint at step {info.step} failed to load ({err}); export other steps") from None
            tensors = transformerlens_state_dict(checkpoint_params(arrays))
            written.append(_write_npz(checkpoint_path(out, info.step), tensors))
        if not written:
            raise UsageError(
                f"{run.path} has no valid checkpoint to export; train or resume it first", option="RUN_DIR"
            )
        for stale in out.glob("step_*.npz"):  # an earlier export's steps: the folder holds exactly this export
            if stale not in written:
                stale.unlink()
        atomic_write_json(out / CONFIG_NAME, transformerlens_config(config.model, tensors, name))
        _write_data(run, config, out / DATA_NAME)
        atomic_write_bytes(out / LOADER_NAME, LOADER.encode())
    except OSError as err:
        raise UsageError(f"cannot write {out}: {err.strerror}") from None
    return written


def _check_exportable(config: Config) -> None:
    if ModelKind(config.model.kind) != ModelKind.transformer:
        raise UsageError(
            f"TransformerLens export needs a transformer run; this run's model is {config.model.kind}",
            option="RUN_DIR",
        )
    if Activation(config.model.activation) not in ACT_FN:
        raise UsageError(
            f"TransformerLens has no {config.model.activation} activation; "
            f"export a run whose activation is {' or '.join(ACT_FN)}",
            option="RUN_DIR",
        )


def _selected(run: RunDir, steps: list[int] | None) -> list[CheckpointInfo]:
    infos = list_checkpoints(run.checkpoints)
    if steps is None:
        return infos
    by_step = {info.step: info for info in infos}
    missing = [step for step in steps if step not in by_step]
    if missing:
        have = ", ".join(str(step) for step in by_step) or "none"
        raise UsageError(f"no checkpoint at step {', '.join(map(str, missing))} in {run.path} (checkpoints: {have})")
    return [by_step[step] for step in sorted(set(steps))]


def _make_folder(out: Path, identity: dict[str, str]) -> None:
    """Make `out`, or reuse it if empty or an earlier export of the same run (same path and config hash);
    records `identity` there first, so an interrupted export of this run can be retried in place."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file; give a folder for the TransformerLens export")
    if out.is_dir() and any(out.iterdir()):
        try:
            earlier = json.loads((out / EXPORT_NAME).read_text())
        except (OSError, ValueError):
            earlier = None
        if not isinstance(earlier, dict) or {key: earlier.get(key) for key in identity} != identity:
            whose = f" (an export of {earlier.get('run')})" if isinstance(earlier, dict) and earlier.get("run") else ""
            raise UsageError(f"{out} holds other files than an export of this run{whose}; give an empty or new folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / EXPORT_NAME, identity)
    except OSError as err:
        raise UsageError(f"cannot write {out}: {err.strerror}") from None


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))
    return path


def _write_data(run: RunDir, config: Config, path: Path) -> None:
    """data.npz: every example with its true label, and the examples and labels the run actually trained on."""
    from grokkit.api import trained_on
    from grokkit.data import make_dataset

    d = config.data
    dataset = make_dataset(d.task, d.p, seed=config.data_seed, n_bits=d.n_bits, k_bits=d.k_bits, n_samples=d.n_samples)
    split = run.split()
    train_idx, train_labels = trained_on(split, config, dataset)
    _write_npz(
        path,
        {
            "tokens": dataset.tokens,
            "true_labels": dataset.labels,
            "train_idx": train_idx,
            "train_labels": train_labels,
            "val_idx": split.val_idx,
            "split_train_idx": split.train_idx,
        },
    )


LOADER = '''"""Load grokkit's TransformerLens export into HookedTransformer and evaluate every step.

Usage: python load_in_transformerlens.py   (needs: pip install torch 'transformer_lens<4')
"""

import json
from pathlib import Path

import numpy as np

try:
    import torch
    from transformer_lens import HookedTransformer, HookedTransformerConfig
except ImportError:  # not installed, or TransformerLens 4, which removed HookedTransformer
    raise SystemExit("this export loads into HookedTransformer: pip install torch 'transformer_lens<4'") from None

HERE = Path(__file__).resolve().parent
BUILT_BY_TRANSFORMERLENS = ("mask", "IGNORE")  # attention buffers HookedTransformer makes itself


def load(step_file: Path) -> HookedTransformer:
    """A HookedTransformer holding the weights of one exported checkpoint."""
    cfg = HookedTransformerConfig(**json.loads((HERE / "config.json").read_text()))
    model = HookedTransformer(cfg)
    with np.load(step_file) as npz:
        state = {name: torch.from_numpy(npz[name]) for name in npz.files}
    result = model.load_state_dict(state, strict=False)
    missing = [key for key in result.missing_keys if not key.endswith(BUILT_BY_TRANSFORMERLENS)]
    if missing or result.unexpected_keys:
        raise SystemExit(f"{step_file.name}: missing {missing}, unexpected {result.unexpected_keys}")
    return model.eval()


def answer_logits(model: HookedTransformer, tokens: np.ndarray, batch: int = 4096) -> torch.Tensor:
    """Logits for the answer: grokkit reads them at the final position."""
    chunks = []
    with torch.no_grad():
        for start in range(0, len(tokens), batch):
            chunk = torch.from_numpy(tokens[start : start + batch]).long().to(model.cfg.device)
            chunks.append(model(chunk)[:, -1].cpu())
    return torch.cat(chunks)


def predict(step_file: Path, data: dict) -> np.ndarray:
    """One step's predicted class for every example."""
    return answer_logits(load(step_file), data["tokens"]).argmax(-1).numpy()


def accuracies(predicted: np.ndarray, data: dict) -> dict:
    """Train accuracy on the labels trained on (grokkit's train_acc: --train-subset's examples, --label-noise's
    labels), validation accuracy on the true labels."""
    train = predicted[data["train_idx"]] == data["train_labels"]
    val = predicted[data["val_idx"]] == data["true_labels"][data["val_idx"]]
    return {"train": float(train.mean()), "val": float(val.mean())}


def main() -> None:
    with np.load(HERE / "data.npz") as npz:
        data = {name: npz[name] for name in npz.files}
    for step_file in sorted(HERE.glob("step_*.npz")):
        accuracy = {name: round(value, 4) for name, value in accuracies(predict(step_file, data), data).items()}
        print(f"step {int(step_file.stem.removeprefix('step_')):,}: accuracy {accuracy}")


if __name__ == "__main__":
    main()
'''
