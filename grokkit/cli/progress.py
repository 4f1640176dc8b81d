"""Live progress for `train`, `resume` and `sweep`: a panel on a terminal, plain lines in logs."""

from __future__ import annotations

import time
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape


def run_with_progress(console: Console, steps: int, launch, resuming: bool = False) -> None:
    """Run `launch` with a live panel on a terminal, or one plain line per evaluation otherwise."""
    from rich.live import Live

    from grokkit.analysis import CIRCUIT_LOSS, GENERALIZED_ACC, MEMORIZED_ACC, milestones
    from grokkit.render import eval_line, progress_panel, run_outcome
    from grokkit.runner import StopRequest

    state: dict[str, Any] = {"memorized": None, "generalized": None, "circuit": None, "last": None, "speed": None}
    live = (
        Live(progress_panel(None, 1, None, None, None), console=console, refresh_per_second=4, transient=False)
        if console.is_terminal
        else None
    )

    def notify(message: str) -> None:
        console.print(f"[dim]{escape(message)}[/]")

    def on_history(history: list[dict[str, Any]]) -> None:
        found = milestones(history)
        state.update(memorized=found["memorized_step"], generalized=found["generalized_step"])
        state["circuit"] = next((r["step"] for r in history if r.get("restricted_loss", 1.0) < CIRCUIT_LOSS), None)
        state["last"] = history[-1] if history else None

    def on_eval(record: dict[str, Any]) -> None:
        last = state["last"]
        if last is not None and record["elapsed_s"] > last["elapsed_s"] and record["step"] > last["step"]:
            state["speed"] = (record["step"] - last["step"]) / (record["elapsed_s"] - last["elapsed_s"])
        state["last"] = record
        if state["memorized"] is None and record["train_acc"] >= MEMORIZED_ACC:
            state["memorized"] = record["step"]
            console.print(f"[yellow]memorized[/]: train accuracy >= 99% at step {record['step']:,}")
        circuit_formed = record.get("restricted_loss", float("inf")) < CIRCUIT_LOSS
        if state["memorized"] is not None and state["circuit"] is None and circuit_formed:
            state["circuit"] = record["step"]
            if state["generalized"] is None:
                console.print(
                    f"[cyan]circuit forming[/]: restricted loss {record['restricted_loss']:.3g} < {CIRCUIT_LOSS} at "
                    f"step {record['step']:,} (validation accuracy {100 * record['val_acc']:.1f}%): "
                    "generalization is on its way"
                )
        if state["generalized"] is None and record["val_acc"] >= GENERALIZED_ACC:
            state["generalized"] = record["step"]
            console.print(f"[green]generalized[/]: validation accuracy >= 99% at step {record['step']:,}")
        if live is not None:
            live.update(
                progress_panel(
                    record, steps, state["speed"], state["memorized"], state["generalized"], state["circuit"]
                )
            )
        else:
            console.print(eval_line(record, steps, state["speed"]), soft_wrap=True)

    start = time.perf_counter()
    stop = StopRequest()
    callbacks = {"on_eval": on_eval, "notify": notify, "stop": stop}
    if resuming:
        callbacks["on_history"] = on_history
    with stop.installed():
        if live is not None:
            with live:
                result = launch(**callbacks)
        else:
            result = launch(**callbacks)
    console.print(run_outcome(str(result.run_dir), result.reason, result.summary, time.perf_counter() - start))
    if result.reason == "interrupted":
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
