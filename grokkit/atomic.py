"""Durable writes that touch only what they name.

A regular file (or a new name) is written atomically: a temp file in the same folder, flush,
fsync, `os.replace`, fsync of the folder; the replaced file's permission bits (and, where
allowed, its owner and group) carry over. What else a path can be depends on who chose it:

- a path the user named (`follow=True`: `--out`, `--csv`, `--png FILE`): a symlink is followed
  to its target; a character device or FIFO (`/dev/null`, `/dev/stdout`, a named pipe) is
  written directly, never replaced; a socket or block device is refused;
- a name grokkit chose inside a folder (`follow=False`, the default: run files, checkpoints,
  figures inside `--png DIR`): never followed out of the folder. Every operation is relative
  to the folder's descriptor; a symlink there is replaced by the new file, not written
  through; a device, FIFO or socket there is refused.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

NOT_REGULAR = "exists and is not a regular file"


def umask() -> int:
    """The process umask (read without changing it for good)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = umask()


def _open_folder(folder: Path) -> int:
    return os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def _create_temp(dir_fd: int, name: str) -> tuple[int, str]:
    """A new, empty temp file `.NAME.XXXXXXXX.tmp` in the folder (created, never opened through a link)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(100):
        tmp = f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, flags, 0o600, dir_fd=dir_fd), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temp file name", name)


def _carry_over(fd: int, old: os.stat_result | None) -> None:
    """Give the new file the old one's owner and group (where allowed) and permission bits, else the default."""
    if old is None:
        os.fchmod(fd, 0o666 & ~_UMASK)
        return
    if (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
        for uid, gid in ((old.st_uid, old.st_gid), (-1, old.st_gid)):
            try:
                os.fchown(fd, uid, gid)
                break
            except OSError:
                continue
    os.fchmod(fd, stat.S_IMODE(old.st_mode) & 0o777)  # after chown, which may clear bits


def _replace_in(folder: Path, name: str, write: Callable[[IO[bytes]], Any]) -> None:
    """Atomically replace (or create) `name` in `folder`, never following a link at `name`."""
    dir_fd = _open_folder(folder)
    try:
        try:
            old: os.stat_result | None = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            old = None
        if old is not None and stat.S_ISDIR(old.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(folder / name))
        if old is not None and stat.S_ISLNK(old.st_mode):
            old = None  # the link itself is replaced: its target is never touched
        elif old is not None and not stat.S_ISREG(old.st_mode):
            raise OSError(errno.EEXIST, NOT_REGULAR, str(folder / name))
        fd, tmp = _create_temp(dir_fd, name)
        try:
            _carry_over(fd, old)
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _write_directly(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Write into an existing device or FIFO as it is (no create, no truncate, no rename)."""
    fd = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC)
    with os.fdopen(fd, "wb") as f:
        write(f)
        f.flush()


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any], *, follow: bool = False) -> None:
    """Call `write(file)` and put what it wrote at `path` atomically (see the module's rules).

    `follow=True` for a path the user named: a symlink is followed, a character device or FIFO is
    written directly, a socket or block device refused. `follow=False` for a name grokkit chose:
    the final component is never followed (a link there is replaced), a special file there refused.
    """
    path = Path(path)
    if not follow:
        _replace_in(path.parent, path.name, write)
        return
    try:
        st: os.stat_result | None = os.stat(path)  # through any links: what the name finally is
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if st is not None and (stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
        _write_directly(path, write)
        return
    if st is not None and not stat.S_ISREG(st.st_mode):
        kind = "a socket" if stat.S_ISSOCK(st.st_mode) else "a block device" if stat.S_ISBLK(st.st_mode) else "special"
        raise OSError(errno.EEXIST, f"it is {kind}, not a file; give a file name", str(path))
    target = Path(os.path.realpath(path))  # a link (or a dangling one) is written at its target
    _replace_in(target.parent, target.name, write)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, follow: bool = False) -> None:
    atomic_write(path, lambda f: f.write(data), follow=follow)


def atomic_write_json(path: str | os.PathLike, obj: Any, *, follow: bool = False) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode(), follow=follow)


def append_line_durably(path: str | os.PathLike, line: str) -> None:
    """Append one line and fsync it; a crash mid-write can only truncate this last line. A link is not followed."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(line.rstrip("\n") + "\n")
        f.flush()
        os.fsync(f.fileno())


def atomic_symlink(target: str, link: str | os.PathLike) -> None:
    """Point `link` at `target` (relative), replacing any old link atomically."""
    link = Path(link)
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)
