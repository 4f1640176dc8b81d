"""`grokkit llc`: the local learning coefficient at every checkpoint of a run, or a calibration grid."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from grokkit.cli.app import command, stderr, stdout
from grokkit.errors import UsageError
from grokkit.llc_store import (
    DEFAULT_BURN_IN,
    DEFAULT_CHAINS,
    DEFAULT_DRAWS,
    DEFAULT_EPSILON,
    DEFAULT_GAMMA,
    DEFAULT_MAX_BATCH,
    MAX_DRIFT,
    RECOMMENDATION_RULE,
)


@command("llc")
def llc_command(
    run_dir: Annotated[Path, typer.Argument(help="Run directory.")] = Path("runs/latest"),
    chains: Annotated[int, typer.Option(help="SGLD chains (vmapped).")] = DEFAULT_CHAINS,
    draws: Annotated[int, typer.Option(help="Draws per chain, after the burn-in.")] = DEFAULT_DRAWS,
    burn_in: Annotated[int, typer.Option(help="SGLD steps per chain before the first draw.")] = DEFAULT_BURN_IN,
    epsilon: Annotated[float, typer.Option(help="SGLD step size ε (devinterp's lr).")] = DEFAULT_EPSILON,
    nbeta: Annotated[
        float | None,
        typer.Option(help="Inverse temperature nβ. \\[default: m / log m, m the SGLD batch size]", show_default=False),
    ] = None,
    gamma: Annotated[float, typer.Option(help="Localization γ: pull toward the checkpoint.")] = DEFAULT_GAMMA,
    batch_size: Annotated[
        int | None,
        typer.Option(
            help=f"Training examples per SGLD step. \\[default: the run's batch size, at most {DEFAULT_MAX_BATCH}]",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Sampler seed (the same at every checkpoint).")] = 0,
    calibrate: Annotated[
        bool, typer.Option("--calibrate", help="Sample a grid of ε × nβ at one checkpoint instead.")
    ] = False,
    step: Annotated[
        int | None, typer.Option(help="--calibrate: the checkpoint step. \\[default: the newest]", show_default=False)
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")] = False,
) -> None:
    """Estimate the local learning coefficient λ̂ at every checkpoint of a run (Lau et al. 2023).

    λ̂ = nβ (E[L_n(w)] − L_n(w*)): SGLD chains localized at the checkpoint w*
    (w ← w − ε/2 (nβ ∇L_batch(w) + γ (w − w*)) + N(0, ε)) sample the tempered posterior
    around it; λ̂ is how far the training loss rises there, times nβ. A regular minimum in d
    parameters has λ = d/2; a degenerate one (many directions that change nothing) less.
    devinterp reports it rising while a grokking model memorizes and falling as it generalizes.

    Prints the trajectory (λ̂ mean ± sd over chains, the drift of the chains' loss, train and
    validation accuracy at that step) and writes it to RUN/llc.json with the settings and the cost.

    The estimate depends on ε and nβ: --calibrate samples ε × {0.1, 0.3, 1, 3} and nβ × {0.1, 1, 10}
    at one checkpoint (--step) and marks each setting stationary or not: no chain diverged,
    λ̂ > 0, |drift| ≤ 0.1 (the drift: the change of the chains' mean loss from the first to the
    last quarter of the draws, over the mean rise above L_n(w*)), and the chains did not escape
    (a rise above L_n(w*) of more than half the loss of uniform predictions). It recommends, at the nβ
    closest to the default, the largest stationary ε whose λ̂ agrees within 25% with the next
    smaller stationary ε's. Written to RUN/llc_calibration.json.
    """
    import json

    from grokkit.llc import LLCSettings, calibrate_run, estimate_run

    if step is not None and not calibrate:
        raise UsageError("chooses the checkpoint for --calibrate; without it every checkpoint is used", option="--step")
    settings = LLCSettings(
        epsilon=epsilon,
        nbeta=nbeta,
        gamma=gamma,
        chains=chains,
        draws=draws,
        burn_in=burn_in,
        batch_size=batch_size,
        seed=seed,
    )
    settings.check()
    console = stdout()
    with _progress(not json_out) as progress:
        if calibrate:
            document = calibrate_run(run_dir, settings, step, on_setting=progress("settings"))
        else:
            document = estimate_run(run_dir, settings, on_checkpoint=progress("checkpoints"))
    if json_out:
        console.out(json.dumps(document), highlight=False)
        return
    console.print(calibration_view(document) if calibrate else trajectory_view(document))


class _progress:
    """A transient progress line on stderr while sampling (nothing with --json or off a terminal)."""

    def __init__(self, show: bool):
        self.show = show and stderr().is_terminal
        self.bar: Any = None

    def __enter__(self) -> _progress:
        if self.show:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn("llc"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=stderr(), transient=True,
            )  # fmt: skip
            self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def __call__(self, what: str) -> Any:
        task = None

        def update(done: int, total: int) -> None:
            nonlocal task
            if self.bar is None:
                return
            if task is None:
                task = self.bar.add_task(what, total=total)
            self.bar.update(task, completed=done)

        return update


# --- renderers (pure: they return renderables) ------------------------------------------------------


def _num(value: float | None, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _settings_line(s: dict[str, Any]) -> str:
    return (
        f"ε {s['epsilon']:g}, nβ {s['nbeta']:.4g} (default m/log m = {s['nbeta_default']:.4g}), γ {s['gamma']:g}, "
        f"{s['chains']} chains × {s['draws']} draws after {s['burn_in']} burn-in, "
        f"batch {s['batch_size']} of {s['n_train']} training examples, seed {s['seed']}"
    )


def _cost_line(cost: dict[str, Any], unit: str) -> Text:
    return Text(
        f"cost: {cost['seconds']:.1f} s in all ({cost['compile_seconds']:.1f} s compiling, "
        f"{cost['seconds_per_checkpoint']:.2f} s per {unit}, "
        f"{cost['microseconds_per_sgld_step']:,.0f} µs per SGLD step of one chain) on {cost['device']}",
        style="dim",
    )


def _bar(value: float | None, top: float, width: int = 12) -> Text:
    if value is None or top <= 0 or value <= 0:
        return Text("")
    return Text("█" * max(1, round(width * min(value, top) / top)), style="green")


def _flags(row: dict[str, Any], chains: int) -> Text:
    """What is wrong with a checkpoint's chains, if anything (the calibration's stationarity rule)."""
    if row["diverged"]:
        return Text(f"{row['diverged']}/{chains} diverged", style="bold red")
    problem = _problem(row)
    return Text(problem, style="yellow") if problem else Text("ok", style="green")


def _problem(row: dict[str, Any]) -> str:
    """Why a setting is not stationary ("" if it is)."""
    if row["diverged"]:
        return "diverged"
    if row.get("escaped"):
        return "escaped"
    if row["llc_mean"] is None or row["llc_mean"] <= 0:
        return "λ̂ ≤ 0"
    if row.get("drift") is None or abs(row["drift"]) > MAX_DRIFT:
        return "drifting"
    return ""


def trajectory_view(document: dict[str, Any]) -> Group:
    """The λ̂ trajectory: one row per checkpoint, the run's milestones marked, settings and cost below."""
    settings, rows = document["settings"], document["trajectory"]
    marks = document.get("milestones") or {}
    top = max((r["llc_mean"] for r in rows if r["llc_mean"] is not None), default=0.0)
    table = Table(
        title="Local learning coefficient λ̂ per checkpoint",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
    )
    for name in ("step", "λ̂", "± sd", "", "drift", "train acc", "val acc", "chains"):
        table.add_column(name, justify="left" if name in ("", "chains") else "right", no_wrap=True)
    for row in rows:
        table.add_row(
            f"{row['step']:,}",
            _num(row["llc_mean"]),
            _num(row["llc_sd"], 2),
            _bar(row["llc_mean"], top),
            _num(row.get("drift"), 2),
            _pct(row.get("train_acc")),
            _pct(row.get("val_acc")),
            _flags(row, settings["chains"]),
        )
    memorized, generalized = marks.get("memorized"), marks.get("generalized")
    lines: list[Any] = [table, Text(_settings_line(settings), style="dim")]
    milestone = (
        f"run: memorized (train 99%) at step {_step(memorized)}, generalized (validation 99%) at step "
        f"{_step(generalized)}"
    )
    peak = document.get("peak")
    if peak:
        milestone += f"; λ̂ peaks at step {peak['step']:,} ({_num(peak['llc_mean'])})"
    lines.append(Text(milestone))
    if document.get("skipped_steps"):
        lines.append(Text(f"skipped unreadable checkpoints at steps {document['skipped_steps']}", style="yellow"))
    lines.append(_cost_line(document["cost"], "checkpoint"))
    lines.append(Text("written to llc.json in the run directory", style="dim"))
    return Group(*lines)


def _step(step: int | None) -> str:
    return "—" if step is None else f"{step:,}"


def _stationary(row: dict[str, Any], chosen: bool, chains: int) -> Text:
    if chosen:
        return Text("yes ◀", style="bold green")
    if row["stationary"]:
        return Text("yes", style="green")
    problem = f"{row['diverged']}/{chains} diverged" if row["diverged"] else _problem(row)
    return Text(f"no: {problem}", style="red")


def _no_stationary_hint(grid: list[dict[str, Any]]) -> str:
    """What to change when no setting passed: diverging chains want a smaller ε, climbing ones more steps."""
    hints = []
    if any(row["diverged"] for row in grid):
        hints.append("chains diverged: a smaller --epsilon or a larger --gamma")
    if any(row.get("escaped") for row in grid):
        hints.append("chains escaped the checkpoint's basin: a larger --gamma or a smaller --epsilon")
    if any((row.get("drift") or 0) > MAX_DRIFT for row in grid):
        hints.append("chains still climbing from the checkpoint: more --burn-in and --draws, or a larger --epsilon")
    return "no stationary setting; " + ("; ".join(hints) or "try more --draws")


def calibration_view(document: dict[str, Any]) -> Group:
    """The ε × nβ grid: λ̂, drift, divergence and stationarity per setting, and the recommendation."""
    settings, grid = document["settings"], document["grid"]
    title = (
        f"LLC calibration at step {document['step']:,} "
        f"(train {_pct(document.get('train_acc'))}, val {_pct(document.get('val_acc'))})"
    )
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name in ("nβ", "ε", "λ̂", "± sd", "drift", "stationary", "loss q1 → q4"):
        table.add_column(name, justify="left" if name.startswith("loss") else "right", no_wrap=True)
    recommended = document.get("recommendation")
    pick = (recommended["epsilon"], recommended["nbeta"]) if recommended else None
    for row in grid:
        chosen = (row["epsilon"], row["nbeta"]) == pick
        table.add_row(
            f"{row['nbeta']:.4g}",
            f"{row['epsilon']:g}",
            _num(row["llc_mean"]),
            _num(row["llc_sd"], 2),
            _num(row.get("drift"), 2),
            _stationary(row, chosen, settings["chains"]),
            f"{_num(row['mean_trace'][0], 3)} → {_num(row['mean_trace'][-1], 3)}",
            style="bold" if chosen else None,
        )
    init = grid[0]["init_loss"] if grid else None
    lines: list[Any] = [
        table,
        Text(
            f"L_n(w*) = {_num(init, 4)}; loss q1 → q4: the chains' mean loss in the first and last quarter of "
            "the draws; " + _settings_line(settings),
            style="dim",
        ),
        Text(f"rule: {RECOMMENDATION_RULE}", style="dim"),
    ]
    if recommended:
        lines.append(
            Text(
                f"recommended (◀): --epsilon {recommended['epsilon']:g} --nbeta {recommended['nbeta']:.4g} "
                f"(λ̂ {_num(recommended['llc_mean'])} here)",
                style="bold",
            )
        )
    else:
        lines.append(Text(_no_stationary_hint(grid), style="bold yellow"))
    lines.append(_cost_line(document["cost"], "setting"))
    return Group(*lines)
