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
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from grokkit.atomic import atomic_write, atomic_write_json

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


def load_checkpoint(info: CheckpointInfo) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Strictly load one checkpoint: sidecar present, checksum matching, every array readable."""
    try:
        meta = json.loads(info.sidecar.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{info.sidecar.name}: missing or unreadable sidecar ({err})") from None
    try:
        payload = info.path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"{info.path.name}: unreadable ({err})") from None
    if hashlib.sha256(payload).hexdigest() != meta.get("sha256"):
        raise CheckpointError(f"{info.path.name}: checksum mismatch (truncated or corrupted)")
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, KeyError) as err:
        raise CheckpointError(f"{info.path.name}: not a valid .npz ({err})") from None
    return arrays, meta


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
