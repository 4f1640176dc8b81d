"""Live progress for `train`, `resume` and `sweep`: a panel on a terminal, plain lines in logs."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from grokkit.config import TrainConfig


def run_with_progress(console: Console, train: TrainConfig, launch: Callable[..., Any], resuming: bool = False) -> None:
    """Run `launch` with a live panel on a terminal, or one plain line per evaluation otherwise.

    Milestones are announced once settled, by the same rules `grokkit report` uses (grokkit.live).
    """
    from rich.live import Live

    from grokkit.analysis import Ending
    from grokkit.live import LiveRun
    from grokkit.render import eval_line, event_line, progress_panel, run_outcome
    from grokkit.runner import StopRequest

    run = LiveRun(train)
    live = (
        Live(progress_panel(run, console.width), console=console, refresh_per_second=4, transient=False)
        if console.is_terminal
        else None
    )

    def notify(message: str) -> None:
        console.print(f"[dim]{escape(message)}[/]")

    def on_history(history: list[dict[str, Any]]) -> None:
        nonlocal run
        run = LiveRun(train, history)  # milestones already on disk are not announced again

    def on_eval(record: dict[str, Any]) -> None:
        for event in run.update(record):
            console.print(event_line(event))
        if live is not None:
            live.update(progress_panel(run, console.width))
        else:
            console.print(eval_line(run), soft_wrap=True)

    start = time.perf_counter()
    stop = StopRequest()
    callbacks: dict[str, Any] = {"on_eval": on_eval, "notify": notify, "stop": stop}
    if resuming:
        callbacks["on_history"] = on_history
    with stop.installed():
        if live is not None:
            with live:
                result = launch(**callbacks)
        else:
            result = launch(**callbacks)
    for event in run.finish():
        console.print(event_line(event))
    elapsed = time.perf_counter() - start
    console.print(run_outcome(str(result.run_dir), result.reason, result.history, train.steps, elapsed))
    if result.reason == Ending.interrupted:
        raise typer.Exit(130)


PLAIN_PROGRESS_EVERY_S = 20.0
"""Without a terminal, a sweep prints a group's line when a member finishes, or after this many seconds."""


def sweep_with_progress(console: Console, launch) -> None:
    """Run a sweep with one line per group (members done and generalized), live on a terminal."""
    from rich.live import Live

    from grokkit.render import sweep_group_line, sweep_outcome
    from grokkit.runner import StopRequest

    lines: dict[int, str] = {}
    last_printed: dict[int, tuple[int, float]] = {}
    clock = {"start": time.perf_counter()}
    live = Live("", console=console, refresh_per_second=4, transient=False) if console.is_terminal else None

    def notify(message: str) -> None:
        console.print(f"[dim]{escape(message)}[/]")

    def on_group(group: int, groups: int, step: int, steps: int, lanes: list) -> None:
        line = sweep_group_line(group, groups, step, steps, lanes, time.perf_counter() - clock["start"])
        lines[group] = line
        if live is not None:
            live.update("\n".join(lines[g] for g in sorted(lines)))
            return
        done = sum(lane.reason is not None for lane in lanes)
        previous_done, previous_time = last_printed.get(group, (-1, 0.0))
        now = time.perf_counter()
        if done != previous_done or now - previous_time >= PLAIN_PROGRESS_EVERY_S:
            last_printed[group] = (done, now)
            console.print(line, soft_wrap=True)

    stop = StopRequest()
    with stop.installed():
        if live is not None:
            with live:
                result = launch(notify=notify, on_group=on_group, stop=stop)
        else:
            result = launch(notify=notify, on_group=on_group, stop=stop)
    console.print(sweep_outcome(result))
    if result.interrupted:
        raise typer.Exit(130)
