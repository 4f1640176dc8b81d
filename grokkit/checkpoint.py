"""Checkpoints as `.npz` (one array per state leaf) plus a JSON sidecar with a checksum.

A checkpoint counts only once its sidecar exists and the `.npz` matches the sidecar's
SHA-256, so a write interrupted at any moment is never mistaken for a valid checkpoint.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import time
import zipfile
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from grokkit.atomic import atomic_write, atomic_write_json
from grokkit.config import INJECTED, Config

_NAME = re.compile(r"^step_(\d{9})\.npz$")
PAUSE_ENV = "GROKKIT_TEST_CHECKPOINT_PAUSE"
"""Fault-injection hook: seconds to pause inside each checkpoint write, so a test's kill -9 lands there."""


def _pause_for_fault_injection() -> None:
    pause = float(os.environ.get(PAUSE_ENV) or 0)
    if pause > 0:
        time.sleep(pause)


class CheckpointError(Exception):
    """A checkpoint file is missing, truncated, corrupted or does not match its sidecar."""


@dataclass(frozen=True)
class CheckpointInfo:
    step: int
    path: Path

    @property
    def sidecar(self) -> Path:
        return self.path.with_suffix(".json")


def checkpoint_path(folder: Path, step: int) -> Path:
    return Path(folder) / f"step_{step:09d}.npz"


def save_checkpoint(folder: Path, step: int, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Path:
    """Write `arrays` and `meta` for `step`; the sidecar (with the checksum) goes last."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]  # numpy stub kwargs
    payload = buffer.getvalue()
    path = checkpoint_path(folder, step)

    def write_payload(f) -> None:
        half = len(payload) // 2
        f.write(payload[:half])
        _pause_for_fault_injection()  # a kill here leaves only a temp file, never a checkpoint
        f.write(payload[half:])

    atomic_write(path, write_payload)
    _pause_for_fault_injection()  # a kill here leaves an .npz without its sidecar: not valid
    atomic_write_json(path.with_suffix(".json"), {**meta, "step": step, "sha256": hashlib.sha256(payload).hexdigest()})
    return path


def list_checkpoints(folder: Path) -> list[CheckpointInfo]:
    """Checkpoint files by step, oldest first (validity is checked on load)."""
    if not Path(folder).is_dir():
        return []
    found = [CheckpointInfo(int(m.group(1)), p) for p in Path(folder).iterdir() if (m := _NAME.match(p.name))]
    return sorted(found, key=lambda c: c.step)


def read_sidecar(info: CheckpointInfo) -> dict[str, Any]:
    """A checkpoint's sidecar, checked field by field (its checksum, step and identity)."""
    name = info.sidecar.name
    try:
        meta = json.loads(_read_regular(info.sidecar))
    except FileNotFoundError:
        raise CheckpointError(f"{name}: missing sidecar") from None
    except (OSError, ValueError, RecursionError) as err:
        raise CheckpointError(f"{name}: unreadable sidecar ({err})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{name}: the sidecar must be a JSON object, got {type(meta).__name__}")
    if not isinstance(meta.get("sha256"), str):
        raise CheckpointError(f"{name}: sha256 must be a string, got {meta.get('sha256')!r}")
    if meta.get("step", info.step) != info.step or isinstance(meta.get("step"), bool):
        raise CheckpointError(f"{name}: step is {meta.get('step')!r}, but the file name says {info.step}")
    elapsed = meta.get("elapsed_s", 0.0)
    if not isinstance(elapsed, int | float) or isinstance(elapsed, bool) or not elapsed >= 0:
        raise CheckpointError(f"{name}: elapsed_s must be a number >= 0, got {elapsed!r}")
    for key in ("config_hash", "seed"):
        if key in meta and not isinstance(meta[key], str if key == "config_hash" else int):
            raise CheckpointError(f"{name}: {key} has the wrong type ({meta[key]!r})")
    if "identity" in meta and not isinstance(meta["identity"], dict):
        raise CheckpointError(f"{name}: identity must be a JSON object")
    return meta


def load_checkpoint(info: CheckpointInfo) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Strictly load one checkpoint: sidecar present and well-formed, checksum matching, every array readable."""
    meta = read_sidecar(info)
    try:
        payload = _read_regular(info.path, binary=True)
    except OSError as err:
        raise CheckpointError(f"{info.path.name}: unreadable ({err})") from None
    if hashlib.sha256(payload).hexdigest() != meta["sha256"]:
        raise CheckpointError(f"{info.path.name}: checksum mismatch (truncated or corrupted)")
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, AttributeError, TypeError) as err:
        raise CheckpointError(f"{info.path.name}: not a valid .npz ({err})") from None
    return arrays, meta


def _read_regular(path: Path, binary: bool = False) -> Any:
    from grokkit.rundir import read_regular_file

    return read_regular_file(path, binary)


IDENTITY_EXEMPT = (
    "preset",
    "train.steps",
    "train.early_exit",
    "train.early_exit_window",
    "train.watch_after",
    "train.eval_every",
    "train.checkpoint_every",
    "train.keep_checkpoints",
)
"""Config keys a resume may change without the checkpoints stopping to be this run's: budget, cadence, labels."""
HYPERPARAMETERS = INJECTED
"""config.json sets these on every resume, so they may be edited between resumes; a change is announced,
never refused."""


def run_identity(config: Config) -> dict[str, Any]:
    """What makes a checkpoint belong to a run: every setting that shapes the trajectory (data, model,
    optimizer structure, loss, seed), flattened to {"data.p": 97, ...}; budget, cadence and the
    optimizer's hyperparameters are left out."""
    flat = {
        f"{section}.{key}" if isinstance(values, dict) else section: value
        for section, values in config.to_dict().items()
        for key, value in (values.items() if isinstance(values, dict) else [(None, values)])
    }
    flat["data.data_seed"] = config.data_seed
    exempt = {*IDENTITY_EXEMPT, *(f"optim.{name}" for name in HYPERPARAMETERS)}
    return {key: value for key, value in sorted(flat.items()) if key not in exempt}


def config_hash(config: Config) -> str:
    """A stable SHA-256 of `run_identity`."""
    return hashlib.sha256(json.dumps(run_identity(config), sort_keys=True).encode()).hexdigest()


def identity_meta(config: Config) -> dict[str, Any]:
    """What every checkpoint's sidecar records about the run it belongs to."""
    return {
        "config_hash": config_hash(config),
        "seed": config.seed,
        "identity": run_identity(config),
        "hyperparameters": {name: getattr(config.optim, name) for name in HYPERPARAMETERS},
    }


def identity_mismatch(meta: dict[str, Any], config: Config) -> str:
    """How a sidecar's run differs from `config`'s, naming the fields ("" if it is the same run, or the sidecar
    predates identities). A setting newer than the sidecar counts as matching while it has its default value."""
    if "config_hash" not in meta or meta["config_hash"] == config_hash(config):
        return ""
    theirs = meta.get("identity")
    if not isinstance(theirs, dict):
        return f"config hash {meta['config_hash'][:12]} there, {config_hash(config)[:12]} in config.json"
    ours, defaults = run_identity(config), run_identity(Config())
    fields = [
        f"{key} {theirs.get(key, defaults.get(key))!r} there, {ours.get(key)!r} in config.json"
        for key in sorted(set(theirs) | set(ours))
        if theirs.get(key, defaults.get(key)) != ours.get(key)
    ]
    return "; ".join(fields[:3]) + ("; ..." if len(fields) > 3 else "")


def hyperparameter_changes(meta: dict[str, Any], config: Config) -> str:
    """The optimizer hyperparameters config.json changes from the checkpoint's ("" if none or unknown)."""
    stored = meta.get("hyperparameters")
    theirs: dict[str, Any] = stored if isinstance(stored, dict) else {}
    changes = [
        f"optim.{name} {theirs[name]!r} -> {getattr(config.optim, name)!r}"
        for name in HYPERPARAMETERS
        if name in theirs and theirs[name] != getattr(config.optim, name)
    ]
    return ", ".join(changes)


def remove_temp_files(folder: Path) -> list[Path]:
    """Delete temp files that an interrupted atomic write left behind; returns what was removed."""
    removed = []
    for path in Path(folder).glob(".*.tmp"):
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def prune_checkpoints(folder: Path, keep: int, protect: AbstractSet[int] = frozenset()) -> None:
    """Delete all but the newest `keep` checkpoints (steps in `protect` are kept too)."""
    infos = list_checkpoints(folder)
    for info in infos[: max(0, len(infos) - keep)]:
        if info.step not in protect:
            info.sidecar.unlink(missing_ok=True)
            info.path.unlink(missing_ok=True)
