"""The run directory: a self-describing folder holding one run (no JAX needed to read it).

Layout: config.json, env.json, split.npz, metrics.jsonl, summary.json, checkpoints/.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
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
STAGING = re.compile(r"^\.(?P<name>.+)\.creating-[a-z0-9_]{8}$")
"""The hidden sibling a new run directory is assembled in (`tempfile.mkdtemp` names) before it is renamed into place."""
RUN_MARKERS = ("config.json", "sweep.json")
"""A folder holding one of these is a grokkit run or sweep folder."""


def is_grokkit_latest(latest: Path) -> bool:
    """Whether `latest` is a link grokkit made: relative, one name, naming a sibling run or sweep folder."""
    if not latest.is_symlink():
        return False
    target = os.readlink(latest)
    if not target or "/" in target or target in (".", ".."):
        return False
    folder = latest.parent / target
    return folder.is_dir() and not folder.is_symlink() and any((folder / m).is_file() for m in RUN_MARKERS)


def point_latest(path: Path) -> str | None:
    """Point `latest` beside `path` at it, when `latest` is absent or a link grokkit made; else say why not.

    A `latest` that is anything else (the user's own link, a file, a folder) is left as it is.
    """
    latest = path.parent / LATEST
    if path.name == LATEST:
        return None
    if os.path.lexists(latest) and not is_grokkit_latest(latest):
        return f"{latest} is not a link grokkit made, so it is left as it is (remove it to have it point to new runs)"
    try:
        atomic_symlink(path.name, latest)
    except OSError as err:
        return f"could not point {latest} to {path.name}: {err.strerror}"
    return None


def remove_stale_staging(parent: Path) -> list[Path]:
    """Delete hidden `.NAME.creating-*` folders left in `parent` by a start that was killed; returns them.

    Only grokkit's own staging names, and only when no live process holds the folder's lock (its
    creator holds it until the run is renamed into place; the kernel drops it when a process dies).
    """
    removed = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return []
    for entry in entries:
        if not STAGING.match(entry.name) or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held by a live creator (or a file system without locks): not ours to remove
            os.close(fd)
            continue
        try:
            shutil.rmtree(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def _make_staging(path: Path) -> tuple[Path, int]:
    """A new hidden sibling of `path` and a descriptor holding its lock (so no other start removes it)."""
    while True:
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.creating-", dir=path.parent))
        fd = os.open(staging, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # waits only while a cleaner that got there first removes it
        except OSError:
            return staging, fd  # no locks on this file system: go on unlocked
        try:
            mine = os.stat(staging).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            mine = False
        if mine:
            return staging, fd
        os.close(fd)


RUN_FILES = ("checkpoints", "env.json", "split.npz", "metrics.jsonl", "config.json")


def _remove_run_files(folder: Path) -> None:
    """Undo a `_fill_run_folder` that failed part way: its files and temp files, nothing else."""
    for name in os.listdir(folder):
        if name in RUN_FILES or (name.startswith(".") and name.endswith(".tmp")):
            target = folder / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)


def _fill_run_folder(folder: Path, config: Config, env: dict[str, Any], split: Split) -> None:
    """Write a new run's files into an empty folder; config.json goes last (it marks the run as made)."""
    os.mkdir(folder / "checkpoints")
    atomic_write_json(folder / "env.json", env)
    buffer = io.BytesIO()
    np.savez(buffer, train_idx=split.train_idx, val_idx=split.val_idx)
    atomic_write_bytes(folder / "split.npz", buffer.getvalue())
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    os.close(os.open(folder / "metrics.jsonl", flags, 0o666))
    atomic_write_json(folder / "config.json", config.to_dict())


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
    def create(
        cls,
        path: Path,
        config: Config,
        env: dict[str, Any],
        split: Split,
        link_latest: bool = True,
        notify: Callable[[str], None] = lambda message: None,
    ) -> RunDir:
        """Make a new run directory; refuse one that already holds a run or other files.

        A new folder is assembled in a hidden sibling and renamed into place (a crash leaves no
        half-made run; the sibling is removed by the next start in that folder). A folder the user
        made beforehand (empty) is filled in place, so it keeps its mode, owner and group.
        `latest` beside it is pointed at it only where grokkit manages that link (`point_latest`).
        """
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
            for stale in remove_stale_staging(path.parent):
                notify(f"removed {stale.name}, left by a start that was interrupted")
            if path.is_dir():
                try:
                    _fill_run_folder(path, config, env, split)
                except BaseException:
                    _remove_run_files(path)
                    raise
            else:
                staging, lock = _make_staging(path)
                try:
                    _fill_run_folder(staging, config, env, split)
                    os.chmod(staging, 0o777 & ~umask())
                    os.rename(staging, path)
                except BaseException:
                    shutil.rmtree(staging, ignore_errors=True)
                    raise
                finally:
                    os.close(lock)
        except OSError as err:
            raise UsageError(f"cannot write run directory {path}: {err.strerror}", option="--run-dir") from None
        if link_latest and (why := point_latest(path)):
            notify(why)
        return cls(path)

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
