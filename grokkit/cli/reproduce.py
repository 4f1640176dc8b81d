"""`grokkit reproduce`: run a preset over seeds as its paper reports it and print ours beside the paper's figures."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from grokkit.cli.app import command, stderr, stdout
from grokkit.errors import UsageError


@command("reproduce")
def reproduce_command(
    preset: Annotated[
        str | None, typer.Argument(help="Preset to reproduce (`grokkit reproduce --list` shows them).")
    ] = None,
    seeds: Annotated[
        int | None,
        typer.Option(
            help="Seeds 0..N-1. \\[default: the preset's, 1 or 3 by what a seed costs here]", show_default=False
        ),
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option(
            help="Step budget per seed. \\[default: the preset's (the paper's where affordable)]", show_default=False
        ),
    ] = None,
    run_dir: Annotated[
        Path | None,
        typer.Option(help="Sweep folder. \\[default: runs/reproduce/PRESET-Nseeds[-Bsteps]]", show_default=False),
    ] = None,
    list_all: Annotated[
        bool, typer.Option("--list", help="List every preset with the paper's figures and its last recorded result.")
    ] = False,
    record: Annotated[
        bool,
        typer.Option(
            "--record", help="Store this result as the preset's last reproduction (grokkit/reproductions.json)."
        ),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")] = False,
) -> None:
    """Run a preset over seeds the way its paper reports it; print ours beside the paper's figures.

    The preset's paper figures (metric, threshold, steps, where in the paper) live with the preset.
    The seeds train as one sweep in RUN_DIR (an ordinary sweep folder: report, compare and inspect
    work on it), so running the same command again after Ctrl-C or kill -9 resumes it, and once it
    is complete only re-reads it. Per figure: our Kaplan–Meier median with the seed range and how
    many seeds got there (k/n; a seed that did not is censored at its budget), the paper's number,
    and a verdict: within spread, faster, slower, or not reproduced within budget.
    """
    import json

    from grokkit.render import reproduction_list_view, reproduction_view
    from grokkit.reproduce import check_seeds, load_records

    console = stdout()
    if list_all:
        if preset is not None or record or seeds is not None or steps is not None or run_dir is not None:
            raise UsageError("--list takes no preset and no other option", option="--list")
        records = load_records()
        if json_out:
            console.out(json.dumps(records), highlight=False)
            return
        console.print(reproduction_list_view(records))
        return
    if preset is None:
        raise UsageError("name a preset to reproduce, or pass --list to see them", option="PRESET")
    from grokkit.presets import get_preset

    try:
        get_preset(preset)
    except UsageError as err:
        raise UsageError(str(err).removeprefix(f"{err.option}: "), option="PRESET") from None
    check_seeds(seeds)
    result = run_reproduction(preset, seeds, steps, run_dir, quiet=json_out)
    if record:
        from grokkit.reproduce import record as store

        store(result)
    if json_out:
        console.out(json.dumps(result), highlight=False)
        return
    console.print(reproduction_view(result))
    if record:
        console.print("recorded in grokkit/reproductions.json (`grokkit reproduce --list` shows it)")


def run_reproduction(preset: str, seeds: int | None, steps: int | None, run_dir: Path | None, quiet: bool) -> dict:
    """Train (or resume) the reproduction sweep, then evaluate every member against the paper's figures."""
    from grokkit.cli.progress import sweep_with_progress
    from grokkit.render import sweep_plan
    from grokkit.reproduce import default_reproduction_dir, reproduction_result, reproduction_spec
    from grokkit.rundir import RunDir
    from grokkit.runner import start_sweep

    spec = reproduction_spec(preset, seeds, steps)
    path = run_dir or default_reproduction_dir(preset, seeds, steps)
    console = stderr() if quiet else stdout()  # --json: only the object on stdout
    console.print(sweep_plan(spec, spec.members(), (0, 1), str(path)))
    sweep_with_progress(console, lambda **kw: start_sweep(spec, path, **kw))
    histories = []
    for member in spec.members():
        read = RunDir.open(path / member.name).read_metrics()
        histories.append(sorted(read.records, key=lambda r: r["step"]))
    return reproduction_result(preset, spec, histories)
