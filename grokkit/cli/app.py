"""The Typer application: one-line errors for every failure, consoles, and the command decorator."""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Sequence
from inspect import cleandoc
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

from grokkit.cli.parsing import check_paths, expand_switches, path_labels
from grokkit.errors import GrokkitError

try:
    from typer._click.exceptions import ClickException
except ImportError:  # typer releases that use click itself
    from click.exceptions import ClickException  # type: ignore[assignment]  # version-dependent fallback

USAGE_EXIT = 2


def stdout() -> Console:
    return Console(highlight=False)


def stderr() -> Console:
    return Console(stderr=True, highlight=False)


def print_error(message: str) -> None:
    """One line on stderr: `error: ...`."""
    stderr().print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)


def _one_line(error: ClickException) -> str:
    message = " ".join(error.format_message().split())
    command = getattr(getattr(error, "ctx", None), "command_path", None)
    hint = f" (see '{command} --help')" if command and getattr(error, "exit_code", 1) == USAGE_EXIT else ""
    return f"{message}{hint}"


class OneLineErrors(TyperGroup):
    """Click's own parse errors (wrong type, unknown option, missing argument) as one line, exit 2."""

    def main(  # type: ignore[override]
        self, args: Sequence[str] | None = None, prog_name: str | None = None, **extra: Any
    ) -> Any:
        standalone = extra.pop("standalone_mode", True)
        try:
            code = super().main(args=args, prog_name=prog_name, standalone_mode=False, **extra)
        except ClickException as error:
            print_error(_one_line(error))
            code = error.exit_code
        except typer.Abort:
            print_error("aborted")
            code = 130
        if not standalone:
            return code
        sys.exit(code if isinstance(code, int) else 0)


class SwitchCommand(TyperCommand):
    """A command whose on/off options also take values: `--orthograd`, `--no-orthograd`, `--orthograd on,off`."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        positionals = any(param.param_type_name == "argument" for param in self.params)
        return super().parse_args(ctx, expand_switches(list(args), positionals))


app = typer.Typer(
    name="grokkit",
    help="Grokking experiments from the command line: datasets, training, resuming, reports.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
    cls=OneLineErrors,
)

F = TypeVar("F", bound=Callable[..., Any])


def reflowed(doc: str | None) -> str | None:
    """Join each paragraph's lines: Rich help keeps single newlines, which breaks lines twice on narrow terminals."""
    if doc is None:
        return None
    paragraphs = cleandoc(doc).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


def command(name: str, switches: bool = False) -> Callable[[F], F]:
    """Register a command: GrokkitErrors become one line on stderr and their exit code, never a traceback."""

    def register(function: F) -> F:
        paths = path_labels(inspect.signature(function, eval_str=True))

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                check_paths(kwargs, paths)
                return function(*args, **kwargs)
            except GrokkitError as err:
                print_error(str(err))
                raise typer.Exit(err.exit_code) from None

        wrapper.__doc__ = reflowed(function.__doc__)
        if hasattr(function, "__signature__"):
            wrapper.__signature__ = function.__signature__  # type: ignore[attr-defined]
        app.command(name, cls=SwitchCommand if switches else None)(wrapper)
        return function

    return register
