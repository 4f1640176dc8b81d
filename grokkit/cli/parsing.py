"""What happens to the command line before a command runs: on/off options expanded, paths checked for length."""

from __future__ import annotations

import inspect
import os
import typing
from pathlib import Path
from typing import Any

import typer

from grokkit.cli.options import TABLE
from grokkit.config import FALSE_WORDS, TRUE_WORDS
from grokkit.data import brief
from grokkit.errors import UsageError


def switch_flags() -> dict[str, str]:
    """{"--orthograd": "--orthograd", "--no-orthograd": ...}: the table's on/off options and their negations."""
    flags = {}
    for row in TABLE:
        if row.is_switch:
            flags[row.flag] = row.flag
            flags[row.flag.replace("--", "--no-", 1)] = row.flag
    return flags


def expand_switches(args: list[str], positionals: bool = False) -> list[str]:
    """`--x` alone becomes `--x=on`, `--no-x` becomes `--x=off`, `--x on,off` stays a value.

    Without positional arguments any word after `--x` is its value (so a bad one is named);
    with them, only on/off words are.
    """
    flags = switch_flags()
    words = set(TRUE_WORDS + FALSE_WORDS)
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            out += args[i:]
            break
        if arg in flags and arg != flags[arg]:
            out.append(f"{flags[arg]}=off")
        elif arg in flags:
            following = args[i + 1] if i + 1 < len(args) else None
            is_word = following is not None and following.lower().split(",")[0] in words
            if following is not None and (is_word or not (positionals or following.startswith("-"))):
                out.append(f"{arg}={following}")
                i += 1
            else:
                out.append(f"{arg}=on")
        else:
            out.append(arg)
        i += 1
    return out


def _path_limits(path: Path) -> tuple[int, int]:
    """(NAME_MAX, PATH_MAX) of the file system that would hold `path` (its nearest existing folder)."""
    for folder in [*path.parents, Path(".")]:
        try:
            if folder.is_dir():
                return os.pathconf(folder, "PC_NAME_MAX"), os.pathconf(folder, "PC_PATH_MAX")
        except (OSError, ValueError):
            continue
    return 255, 4096


def path_problem(path: Path) -> str | None:
    """Why the system would refuse `path` for its length (ENAMETOOLONG), said before any work; None if it fits."""
    name_max, path_max = _path_limits(path)
    size = len(os.fsencode(path))
    if size >= path_max:
        return f"the path is {size:,} bytes long, over the system's limit of {path_max - 1:,}"
    for part in path.parts:
        length = len(os.fsencode(part))
        if length > name_max:
            return f"the name {brief(part)} is {length} bytes long, over the file system's limit of {name_max}"
    return None


def path_labels(signature: inspect.Signature) -> dict[str, str]:
    """{parameter: how the user wrote it ("--run-dir", "RUN_DIR")} for a command's Path parameters."""
    labels = {}
    for name, param in signature.parameters.items():
        metadata = getattr(param.annotation, "__metadata__", ())
        kind = typing.get_args(param.annotation)[0] if metadata else param.annotation
        if "Path" not in str(kind):
            continue
        info = next((m for m in metadata if isinstance(m, typer.models.ParameterInfo)), None)
        if isinstance(info, typer.models.ArgumentInfo) or info is None:
            labels[name] = name.upper()
            continue
        decls = [*(info.param_decls or ()), info.default]
        flags = [d for d in decls if isinstance(d, str) and d.startswith("--")]
        labels[name] = flags[0] if flags else "--" + name.replace("_", "-")
    return labels


def check_paths(values: dict[str, Any], labels: dict[str, str]) -> None:
    """Refuse a path argument the system cannot use for its length, as one line naming the option."""
    for name, label in labels.items():
        value = values.get(name)
        for path in value if isinstance(value, list | tuple) else [value]:
            if isinstance(path, Path) and (problem := path_problem(path)):
                raise UsageError(problem, option=label)
