"""The run directory: a self-describing folder holding one run (no JAX needed to read it).

Layout: config.json, env.json, split.npz, metrics.jsonl, summary.json, checkpoints/.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from grokkit.atomic import append_line_durably, atomic_symlink, atomic_write_bytes, atomic_write_json, umask
from grokkit.config import Config
from grokkit.data import Split, task_label
from grokkit.errors import UsageError

LATEST = "latest"


def default_run_dir(config: Config, root: Path = Path("runs"), prefix: str = "") -> Path:
    """runs/<prefix><task and its settings>-<timestamp>, numbered if that exists."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    d = config.data
    name = f"{prefix}{task_label(d.task, d.p, d.n_bits, d.k_bits, d.n_samples)}-{stamp}"
    path = root / name
    suffix = 1
    while path.exists():
        suffix += 1
        path = root / f"{name}-{suffix}"
    return path


@dataclass(frozen=True)
class MetricsRead:
    records: list[dict[str, Any]]
    bad_lines: list[int]  # 1-based line numbers that could not be parsed


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @classmethod
    def create(cls, path: Path, config: Config, env: dict[str, Any], split: Split, link_latest: bool = True) -> RunDir:
        """Make a new run directory; refuse one that already holds a run or other files."""
        path = Path(path)
        if (path / "config.json").exists():
            raise UsageError(
                f"{path} already holds a run; use 'grokkit resume {path}' or choose another --run-dir",
                option="--run-dir",
            )
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise UsageError(f"{path} exists and is not an empty folder; choose another --run-dir", option="--run-dir")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # built in a hidden sibling and renamed into place: a crash leaves no half-made run
            staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.creating-", dir=path.parent))
            (staging / "checkpoints").mkdir()
            atomic_write_json(staging / "env.json", env)
            buffer = io.BytesIO()
            np.savez(buffer, train_idx=split.train_idx, val_idx=split.val_idx)
            atomic_write_bytes(staging / "split.npz", buffer.getvalue())
            (staging / "metrics.jsonl").touch()
            atomic_write_json(staging / "config.json", config.to_dict())
            os.chmod(staging, 0o777 & ~umask())
            try:
                os.rename(staging, path)
            except OSError:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            run = cls(path)
            latest = path.parent / LATEST
            if link_latest and (latest.is_symlink() or not latest.exists()):
                atomic_symlink(path.name, latest)
        except OSError as err:
            raise UsageError(f"cannot write run directory {path}: {err.strerror}", option="--run-dir") from None
        return run

    @classmethod
    def open(cls, path: Path) -> RunDir:
        """Open an existing run directory (a `latest` link is followed)."""
        path = Path(path)
        if not path.exists():
            raise UsageError(f"{path} does not exist; pass a run directory (e.g. runs/latest)", option="RUN_DIR")
        if not (path / "config.json").is_file():
            raise UsageError(f"{path} is not a grokkit run directory (no config.json)", option="RUN_DIR")
        return cls(path.resolve())

    def config(self) -> Config:
        try:
            return Config.from_dict(json.loads((self.path / "config.json").read_text()))
        except (ValueError, TypeError) as err:
            raise UsageError(f"{self.path / 'config.json'} is unreadable: {err}", option="RUN_DIR") from None

    def save_config(self, config: Config) -> None:
        atomic_write_json(self.path / "config.json", config.to_dict())

    def env(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / "env.json").read_text())
        except (OSError, ValueError):
            return {}

    def split(self) -> Split:
        try:
            with np.load(self.path / "split.npz", allow_pickle=False) as npz:
                return Split(train_idx=npz["train_idx"], val_idx=npz["val_idx"])
        except (OSError, ValueError, KeyError) as err:
            raise UsageError(f"{self.path / 'split.npz'} is unreadable: {err}", option="RUN_DIR") from None

    def read_metrics(self) -> MetricsRead:
        """All parseable records; a torn last line (a crash mid-write) is reported, not fatal."""
        if not self.metrics_path.exists():
            return MetricsRead([], [])
        records, bad = [], []
        for number, line in enumerate(self.metrics_path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict) or "step" not in record:
                    raise ValueError
                records.append(record)
            except ValueError:
                bad.append(number)
        return MetricsRead(records, bad)

    def append_metrics(self, record: dict[str, Any]) -> None:
        append_line_durably(self.metrics_path, json.dumps(record))

    def rewrite_metrics(self, records: list[dict[str, Any]]) -> None:
        atomic_write_bytes(self.metrics_path, "".join(json.dumps(r) + "\n" for r in records).encode())

    def summary(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / "summary.json").read_text())
        except (OSError, ValueError):
            return {}

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_json(self.path / "summary.json", summary)

    @contextmanager
    def lock(self):
        """Hold an exclusive lock on the run for the duration; a second process is refused.

        The kernel drops the lock when its process dies, so a stale lock never blocks.
        """
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
                raise UsageError(f"{self.path} is in use by pid {owner}; wait for it or stop it") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield self
        finally:
            os.close(fd)
