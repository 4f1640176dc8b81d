"""The `grokkit` command line: parse options into a config, call the library, print what it returns."""

from __future__ import annotations

from typing import Annotated

import typer

from grokkit import __version__
from grokkit.cli import datasets, llc, reports, reproduce, training  # noqa: F401  (registers the commands)
from grokkit.cli.app import app, stdout


def _version(value: bool) -> None:
    if value:
        stdout().print(f"grokkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Grokking experiments from the command line: datasets, training, resuming, reports."""


def main() -> None:
    app(prog_name="grokkit")


__all__ = ["app", "main"]
