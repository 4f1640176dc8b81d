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
import stat
import tempfile
import time
import zipfile
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from grokkit.analysis import RunStatus
from grokkit.atomic import append_line_durably, atomic_symlink, atomic_write_bytes, atomic_write_json, umask
from grokkit.bases import MEASURE_NAMES, SIGNAL_NAMES
from grokkit.config import Config, config_keys, option_name, validate
from grokkit.data import Split, input_space_size, task_label
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
    problems: dict[int, str] = field(default_factory=dict)  # line number -> what is wrong with it
    torn_last: bool = False  # the last line is cut short, as a write interrupted by a crash leaves it

    def describe(self) -> str:
        """The bad lines and what is wrong with the first of them, e.g. "[3, 7] (line 3: val_acc must be a number)"."""
        if not self.bad_lines:
            return ""
        first = self.bad_lines[0]
        return f"{self.bad_lines} (line {first}: {self.problems.get(first, 'unreadable')})"


METRIC_NUMBERS = ("train_loss", "train_acc", "val_loss", "val_acc", "param_norm")
"""Numbers every metrics record has (besides its step)."""
OPTIONAL_NUMBERS = (
    "elapsed_s",
    *MEASURE_NAMES,
    *SIGNAL_NAMES,
    "train_acc_clean",
    "train_acc_corrupted",
    "train_acc_corrupted_true",
)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def metrics_record_problem(record: Any) -> str:
    """What is wrong with one parsed metrics.jsonl record, naming the field ("" if nothing)."""
    if not isinstance(record, dict):
        return f"must be a JSON object, got {_json_type(record)}"
    if "step" not in record:
        return "has no step"
    if not _is_count(record["step"]):
        return f"step must be an integer >= 0, got {record['step']!r}"
    for name in METRIC_NUMBERS:
        if name not in record:
            return f"has no {name}"
    for name in METRIC_NUMBERS + OPTIONAL_NUMBERS:
        if name in record and not _is_number(record[name]):
            return f"{name} must be a number, got {record[name]!r}"
    norms = record.get("param_norms", {})
    if not isinstance(norms, dict) or not all(_is_number(v) for v in norms.values()):
        return "param_norms must be an object of numbers"
    keys = record.get("key_frequencies", [])
    if not isinstance(keys, list) or not all(_is_count(k) for k in keys):
        return "key_frequencies must be a list of integers"
    irreps = record.get("key_irreps", [])
    if not isinstance(irreps, list) or not all(isinstance(k, str) for k in irreps):
        return "key_irreps must be a list of names"
    return ""


def read_regular_file(path: Path, binary: bool = False) -> Any:
    """A file's contents, refusing anything but a regular file (a FIFO would block, a device never end)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path.name} is not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            payload = f.read()
    finally:
        os.close(fd)
    return payload if binary else payload.decode()


def field_message(err: UsageError) -> str:
    """A config error as "train.eval_every must be >= 1, got 0": the config key instead of its command-line flag."""
    text = str(err)
    if err.option:
        keys = {option_name(key): key for key in config_keys()}
        text = f"{keys.get(err.option, err.option)} {text.removeprefix(f'{err.option}: ')}"
    return text


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

    def _damaged(self, name: str, detail: str, fix: str = "") -> UsageError:
        """The one-line error for a file of this run whose contents are not what grokkit wrote."""
        return UsageError(f"{self.path / name}: {detail}{'; ' + fix if fix else ''}", option="RUN_DIR")

    def _read_json(self, name: str, fix: str = "") -> Any:
        """A JSON file of the run, parsed; anything unreadable is a one-line error naming the file."""
        try:
            return json.loads(read_regular_file(self.path / name))
        except OSError as err:
            raise self._damaged(name, f"cannot be read ({err.strerror or err})", fix) from None
        except UnicodeDecodeError:
            raise self._damaged(name, "is not UTF-8 text", fix) from None
        except (ValueError, RecursionError) as err:
            raise self._damaged(name, f"is not valid JSON ({err})", fix) from None

    def config(self) -> Config:
        """config.json, converted and validated exactly like a new run's settings."""
        raw = self._read_json("config.json")
        if not isinstance(raw, dict):
            raise self._damaged("config.json", f"must be a JSON object of settings, got {_json_type(raw)}")
        try:
            config = Config.from_dict(raw, label="")
            validate(config)
        except UsageError as err:
            raise self._damaged("config.json", field_message(err)) from None
        return config

    def save_config(self, config: Config) -> None:
        atomic_write_json(self.path / "config.json", config.to_dict())

    def env(self) -> dict[str, Any]:
        """env.json ({} if it is missing); a damaged one is an error naming the file."""
        if not (self.path / "env.json").exists():
            return {}
        raw = self._read_json("env.json", fix="restore it, or pass --force to resume without the environment check")
        if not isinstance(raw, dict):
            raise self._damaged(
                "env.json",
                f"must be a JSON object, got {_json_type(raw)}",
                "restore it, or pass --force to resume without the environment check",
            )
        return raw

    def split(self) -> Split:
        """split.npz, checked: two integer index arrays that partition the examples config.json describes."""
        split = self._read_split()
        config = self.config()
        d = config.data
        n_examples = input_space_size(d.task, d.p, d.n_bits, d.n_samples)
        n_train = round(d.train_frac * n_examples)
        stored = len(split.train_idx) + len(split.val_idx)
        label = task_label(d.task, d.p, d.n_bits, d.k_bits, d.n_samples)
        if stored != n_examples or len(split.train_idx) != n_train:
            raise self._damaged(
                "split.npz",
                f"holds {len(split.train_idx)} train + {len(split.val_idx)} validation examples, but config.json "
                f"describes {n_train} + {n_examples - n_train} ({label}, train_frac {d.train_frac:g})",
                "config.json was edited or split.npz comes from another run; restore it, "
                "or start over with 'grokkit resume --restart'",
            )
        every = np.concatenate([split.train_idx, split.val_idx])
        if every.min() < 0 or every.max() >= n_examples or len(np.unique(every)) != n_examples:
            raise self._damaged(
                "split.npz",
                f"train_idx and val_idx must share out each of the {n_examples} examples once",
                "restore it, or start over with 'grokkit resume --restart'",
            )
        return split

    def _read_split(self) -> Split:
        fix = "restore it, or start over with 'grokkit resume --restart'"
        try:
            payload = read_regular_file(self.path / "split.npz", binary=True)
        except OSError as err:
            raise self._damaged("split.npz", f"cannot be read ({err.strerror or err})", fix) from None
        arrays = {}
        try:
            with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
                for key in ("train_idx", "val_idx"):
                    if key not in npz.files:
                        raise self._damaged("split.npz", f"has no {key} array", fix)
                    arrays[key] = npz[key]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, AttributeError, TypeError) as err:
            raise self._damaged("split.npz", f"is not a valid .npz archive ({err})", fix) from None
        for key, value in arrays.items():
            if value.ndim != 1 or not np.issubdtype(value.dtype, np.integer) or len(value) == 0:
                raise self._damaged(
                    "split.npz",
                    f"{key} must be a non-empty 1-D array of integers, got {value.dtype}{list(value.shape)}",
                    fix,
                )
        return Split(train_idx=arrays["train_idx"], val_idx=arrays["val_idx"])

    def read_metrics(self) -> MetricsRead:
        """All valid records; a line that is not one (a torn last line, a wrong type) is reported, not fatal."""
        if not self.metrics_path.exists():
            return MetricsRead([], [])
        try:
            payload = read_regular_file(self.metrics_path, binary=True)
        except OSError as err:
            raise self._damaged("metrics.jsonl", f"cannot be read ({err.strerror or err})") from None
        records: list[dict[str, Any]] = []
        problems: dict[int, str] = {}
        lines = payload.split(b"\n")
        last = max((n for n, line in enumerate(lines, start=1) if line.strip()), default=0)
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line.decode())
            except UnicodeDecodeError:
                problems[number] = "not UTF-8 text"
                continue
            except (ValueError, RecursionError):
                problems[number] = "cut short (an interrupted write)" if number == last else "not valid JSON"
                continue
            problem = metrics_record_problem(record)
            if problem:
                problems[number] = problem
            else:
                records.append(record)
        return MetricsRead(
            records, sorted(problems), problems, torn_last=problems.get(last, "").startswith("cut short")
        )

    def append_metrics(self, record: dict[str, Any]) -> None:
        append_line_durably(self.metrics_path, json.dumps(record))

    def rewrite_metrics(self, records: list[dict[str, Any]]) -> None:
        atomic_write_bytes(self.metrics_path, "".join(json.dumps(r) + "\n" for r in records).encode())

    def summary(self) -> dict[str, Any]:
        """summary.json ({} if there is none yet); a damaged one is an error naming the file and field."""
        if not (self.path / "summary.json").exists():
            return {}
        fix = "delete it: resume writes it again"
        raw = self._read_json("summary.json", fix)
        if not isinstance(raw, dict):
            raise self._damaged("summary.json", f"must be a JSON object, got {_json_type(raw)}", fix)
        statuses = [s.value for s in RunStatus]
        if "status" in raw and raw["status"] not in statuses:
            raise self._damaged(
                "summary.json", f"status must be one of {', '.join(statuses)}, got {raw['status']!r}", fix
            )
        if "step" in raw and not _is_count(raw["step"]):
            raise self._damaged("summary.json", f"step must be an integer >= 0, got {raw['step']!r}", fix)
        return raw

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_json(self.path / "summary.json", summary)

    @contextmanager
    def lock(self):
        """Hold an exclusive lock on the run for the duration; a second process is refused.

        The kernel drops the lock when its process dies, so a stale lock never blocks.
        """
        try:
            fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise UsageError(
                f"cannot lock {self.path} ({err.strerror}): training writes into the run folder; "
                "make it writable (chmod -R u+w) or copy it somewhere writable"
            ) from None
        try:
            self._take_lock(fd)
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield self
        finally:
            os.close(fd)

    def _take_lock(self, fd: int) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            raise UsageError(f"{self.path} is in use by pid {owner}; wait for it or stop it") from None

    def refuse_if_in_use(self) -> None:
        """Raise `lock`'s error if another process holds the run, without writing anything (not even the lock file)."""
        try:
            fd = os.open(self.path / ".lock", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return  # no lock file (nobody has locked it yet) or unreadable: `lock` decides
        try:
            self._take_lock(fd)
        finally:
            os.close(fd)  # closing drops the probe's lock
