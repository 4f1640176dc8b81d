"""Rich renderables for the CLI; pure functions that never print."""

from __future__ import annotations

import bisect
import math
import statistics
from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from grokkit.analysis import (
    CIRCUIT_LOSS,
    GENERALIZED_ACC,
    NOISE_PHASES,
    VERDICTS,
    Ending,
    Milestone,
    Verdict,
    milestones,
    verdict,
)
from grokkit.config import Config, DataConfig, ModelKind
from grokkit.data import TASKS, Dataset, Split, input_space_size, task_parameters
from grokkit.early_warning import (
    ANTI_GROK_ACC,
    HEAVY_TAIL_ALPHA,
    SLINGSHOT_LOSS_FLOOR,
    SLINGSHOT_LOSS_JUMP,
    SLINGSHOT_NORM_JUMP,
    Kind,
)
from grokkit.live import Eta, Event, LiveRun
from grokkit.sweep import shown

VERDICT_STYLE = {
    Verdict.grokked: "bold green",
    Verdict.comprehension: "bold cyan",
    Verdict.memorization_only: "bold red",
    Verdict.not_yet_fit: "bold red",
    Verdict.still_training: "bold blue",
}
MILESTONE_STYLE = {Milestone.memorized: "yellow", Milestone.circuit: "cyan", Milestone.generalized: "green"}


def tasks_table(p: int = 97) -> Table:
    table = Table(title=f"grokkit tasks (input space at p={p})", title_justify="left")
    table.add_column("name", style="bold cyan", no_wrap=True)
    table.add_column("formula")
    table.add_column("examples", justify="right")
    table.add_column("source", style="dim")
    for task in TASKS.values():
        size = "n-samples" if task.family == "parity" else f"{input_space_size(task.name, p):,}"
        table.add_row(task.name, task.formula, size, task.source)
    return table


def dataset_summary(dataset: Dataset, split: Split, out: str, fmt: str) -> Text:
    if dataset.tokens.dtype.kind == "f":  # an image task's features
        inputs = f"{dataset.tokens.shape[1]} real-valued features, "
    else:
        inputs = f"vocab {dataset.vocab_size} (operands 0..{dataset.n_values - 1}, '=' is {dataset.n_values}), "
    return Text.assemble(
        ("wrote ", ""),
        (out, "bold"),
        f" ({fmt}): task {dataset.task}, {len(dataset):,} examples, ",
        f"{len(split.train_idx):,} train / {len(split.val_idx):,} validation, ",
        inputs,
        f"{dataset.n_classes} classes",
    )


def describe_config(config: Config) -> Table:
    d, m, o, t = config.data, config.model, config.optim, config.train
    if ModelKind(m.kind) == ModelKind.transformer:
        model = (
            f"transformer: {m.layers} layer(s), d_model {m.d_model}, {m.heads} heads, d_mlp {m.d_mlp}, "
            f"{m.activation.value}, LayerNorm {'on' if m.layer_norm else 'off'}"
        )
    else:
        model = f"mlp: {m.depth} hidden layer(s) of {m.width}, {m.activation.value}, {m.embed.value} embedding"
    batch = "full batch" if o.batch_size is None else f"batch {o.batch_size}"
    rows = [
        ("task", ", ".join([d.task, *_task_parameters(d), f"train fraction {d.train_frac}", f"seed {config.seed}"])),
        ("model", model),
        (
            "optimizer",
            f"{o.name.value} lr {o.lr:g}, wd {o.wd:g}, betas ({o.beta1}, {o.beta2}), warmup {o.warmup}, {batch}",
        ),
        ("budget", f"{t.steps:,} steps, eval every {t.eval_every}, checkpoint every {t.checkpoint_every}"),
    ]
    extras = []
    if o.grokfast != "none":
        window = f"window {o.grokfast_window}" if o.grokfast == "ma" else f"alpha {o.grokfast_alpha:g}"
        extras.append(f"Grokfast {o.grokfast.value} ({window}, lambda {o.grokfast_lambda:g})")
    if o.orthograd:
        extras.append("⊥Grad")
    if o.decay_to != "zero":
        extras.append("weight decay toward the initial weights")
    if t.loss != "softmax" or t.loss_dtype != "float32":
        extras.append(f"{t.loss.value} loss in {t.loss_dtype.value}")
    if m.init_scale != 1.0:
        extras.append(f"initial weights x{m.init_scale:g}")
    if m.output_scale is not None:
        extras.append(f"output alpha (f - f0), alpha {m.output_scale:g}")
    if extras:
        rows.insert(-1, ("interventions", ", ".join(extras)))
    if config.preset:
        rows.insert(0, ("preset", config.preset))
    table = Table.grid(padding=(0, 1))
    table.add_column(style="bold")
    table.add_column()
    for row in rows:
        table.add_row(*row)
    return table


def _task_parameters(data: DataConfig) -> list[str]:
    """The task's own parameters as "p=97" or "n_bits=12", ..., only those its family uses."""
    return [f"{name}={getattr(data, name)}" for name in task_parameters(data.task)]


def _pct(value: float) -> str:
    return f"{100 * value:5.1f}%"


def _eta(eta: Eta | None) -> str:
    """The ETA as "ETA 35s", or "ETA ≤ 3m35s" when early exit may end the run sooner."""
    if eta is None:
        return "ETA ?"
    return f"ETA {'≤ ' if eta.upper_bound else ''}{_duration(eta.seconds)}"


def eval_line(run: LiveRun) -> str:
    """One plain line per evaluation, for logs and pipes: metrics, speed and ETA."""
    record = run.last
    if record is None:
        return "no evaluation yet"
    speed = run.steps_per_s
    pace = f" {speed:6.1f} steps/s  {_eta(run.eta)}" if speed else ""
    return (
        f"step {record['step']:>7,}/{run.budget:,}  train acc {_pct(record['train_acc'])} "
        f"loss {record['train_loss']:.3g}  val acc {_pct(record['val_acc'])} loss {record['val_loss']:.3g}  "
        f"|w| {record['param_norm']:.1f}{pace}"
    )


def event_line(event: Event) -> Text:
    """The announcement of a settled milestone, at the step `report` gives it."""
    record, step = event.record, f"{event.step:,}"
    style = MILESTONE_STYLE[event.milestone]
    if event.milestone == Milestone.memorized:
        return Text.assemble(("memorized", style), f": train accuracy held >= 99% from step {step}")
    if event.milestone == Milestone.generalized:
        return Text.assemble(("generalized", style), f": validation accuracy held >= 99% from step {step}")
    val_acc = _pct(record["val_acc"]).strip()
    restricted = record.get("restricted_loss", float("inf"))
    if restricted >= CIRCUIT_LOSS:
        return Text.assemble(
            ("circuit formed", style), f" by step {step}, where validation accuracy held >= 99% ({val_acc}) first"
        )
    coming = ": generalization is on its way" if record["val_acc"] < GENERALIZED_ACC else ""
    return Text.assemble(
        ("circuit formed", style),
        f": restricted loss {restricted:.3g} < {CIRCUIT_LOSS:g} at step {step} (validation accuracy {val_acc}){coming}",
    )


SPARK_LEVELS = "▁▂▃▄▅▆▇█"


def log_step_samples(history: list[dict[str, Any]], columns: int) -> list[dict[str, Any]]:
    """The evaluation in effect at each of `columns` points spaced evenly on a log-step axis."""
    if not history or columns < 1:
        return []
    steps = [max(r["step"], 1) for r in history]
    low, high = math.log(steps[0]), math.log(steps[-1])
    points = [low + (high - low) * j / max(columns - 1, 1) for j in range(columns)]
    return [history[max(bisect.bisect_right(steps, math.exp(x) * (1 + 1e-9)) - 1, 0)] for x in points]


def accuracy_sparklines(history: list[dict[str, Any]], width: int) -> Table:
    """Train and validation accuracy so far as two rows of block characters (0 to 100%) on a log-step axis,
    with the latest values; `width` columns in all."""
    columns = max(width - len("train  100.0% "), 8)
    samples = log_step_samples(history, columns)
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(no_wrap=True)
    grid.add_column(no_wrap=True)
    for label, key, style in (("train", "train_acc", "yellow"), ("val", "val_acc", "green")):
        line = "".join(SPARK_LEVELS[round(min(max(r[key], 0.0), 1.0) * (len(SPARK_LEVELS) - 1))] for r in samples)
        grid.add_row(label, Text(line, style=style), _pct(history[-1][key]).strip() if history else "")
    first, last, middle = f"{history[0]['step']:,}" if history else "", f"{history[-1]['step']:,}", "log step"
    gap = columns - len(first) - len(last) - len(middle)
    if history and gap >= 2:
        axis = f"{first}{' ' * (gap // 2)}{middle}{' ' * (gap - gap // 2)}{last}"
        grid.add_row("", Text(axis, style="dim"), "")
    return grid


def progress_panel(run: LiveRun, width: int = 80) -> Panel:
    """The live view: step/budget, speed, ETA, accuracies and losses, mini-curves, milestones, verdict so far."""
    record = run.last
    if record is None:
        return Panel(Text("compiling the training step..."), title="grokkit train", border_style="blue")
    done = min(record["step"] / run.budget, 1.0)
    bar_width = 30
    bar = Text("█" * int(done * bar_width) + "░" * (bar_width - int(done * bar_width)), style="cyan")
    speed = run.steps_per_s
    header = Table.grid(padding=(0, 2))
    header.add_row(bar, f"{record['step']:,}/{run.budget:,}", f"{speed or 0:.1f} steps/s", _eta(run.eta))
    metrics = Table.grid(padding=(0, 2))
    metrics.add_row("train", f"acc {_pct(record['train_acc'])}", f"loss {record['train_loss']:.3g}")
    metrics.add_row("val", f"acc {_pct(record['val_acc'])}", f"loss {record['val_loss']:.3g}")
    metrics.add_row("|w|", f"{record['param_norm']:.2f}", "")
    if run.has_progress_measures:
        metrics.add_row(
            "circuit", f"restricted loss {record['restricted_loss']:.3g}", f"excluded {record['excluded_loss']:.3g}"
        )
    if "relevant_weight_share" in record:  # sparse parity's hidden progress (grokkit.parity)
        metrics.add_row(
            "bits", f"relevant share {record['relevant_weight_share']:.2f}", f"Gini {record['bit_weight_gini']:.2f}"
        )
    found = run.milestones
    marks = Text()
    for milestone in Milestone:
        if milestone == Milestone.circuit and not run.has_progress_measures:
            continue
        step = found[milestone]
        if step is not None:
            state = f"formed at {step:,}" if milestone == Milestone.circuit else f"at {step:,}"
        elif milestone == Milestone.circuit and found[Milestone.memorized] is not None:
            state = "forming"
        else:
            state = "not yet"
        marks.append(f"{milestone} ", style="bold")
        marks.append(state, style=MILESTONE_STYLE[milestone])
        marks.append("   ")
    outcome = run.verdict
    verdict_line = Text.assemble(("verdict so far ", "bold"), (outcome, VERDICT_STYLE[outcome]))
    signals = signals_line(run)
    lines = [marks, *([signals] if signals is not None else []), verdict_line]
    body = Group(header, metrics, accuracy_sparklines(run.history, width - 4), *lines)
    return Panel(body, title="grokkit train", border_style="blue")


def signals_line(run: LiveRun) -> Text | None:
    """Once memorized and not yet generalized: which early-warning signals say generalization is forming and
    which say it will not, of those the run records (`report`'s rules, grokkit/early_warning.py); a will-not
    signal with its current value."""
    watched = run.signals
    if watched is None:
        return None
    text = Text("signals ", style="bold")
    for kind, style in ((Kind.forming, "green"), (Kind.will_not, "red")):
        mine = [w for w in watched if w.signal.kind == kind]
        if not mine:
            continue
        fired = [w for w in mine if w.fired_step is not None]
        if kind == Kind.will_not:
            text.append("; ")
        names = [w.signal.label if kind == Kind.forming else f"{w.signal.label} {w.signal.shown(w.value)}"
                 for w in fired]  # fmt: skip
        text.append(f"{KIND_WORDS[kind][0]} {len(fired)}/{len(mine)}: ")
        text.append(", ".join(names) or ("none yet" if kind == Kind.forming else "none"), style if fired else "dim")
    return text


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


_STOPPED = {
    Ending.budget: "Trained to the end of its budget (step {step})",
    Ending.early_exit: "Stopped early at step {step}: validation accuracy had stayed >= 99% long enough",
    Ending.interrupted: "Interrupted at step {step}; checkpoint saved",
    Ending.diverged: "Diverged by step {step}; the last good checkpoint is kept",
}


def run_outcome(run_dir: str, ending: Ending, history: list[dict[str, Any]], budget: int, elapsed_s: float) -> Text:
    """What happened, in words, when the command returns: `report`'s verdict and milestones, how it stopped."""
    found = milestones(history)
    memorized, generalized = found["memorized_step"], found["generalized_step"]
    outcome = verdict(history, budget)
    text = Text()
    text.append(f"{outcome}: ", style=VERDICT_STYLE[outcome])
    if generalized is not None and memorized is not None:
        text.append(
            f"train accuracy reached 99% at step {memorized:,}, validation accuracy at step {generalized:,} "
            f"({generalized / max(memorized, 1):.1f}x the memorization step). "
        )
    elif generalized is not None:
        text.append(f"validation accuracy reached 99% at step {generalized:,}, before train accuracy held 99%. ")
    elif memorized is not None:
        best = _pct(found["best_val_acc"] or 0.0).strip()
        text.append(f"memorized at step {memorized:,} (train accuracy 99%), best validation accuracy {best}. ")
    else:
        text.append("train accuracy has not reached 99%. ")
    step = f"{history[-1]['step'] if history else 0:,}"
    text.append(f"{_STOPPED[ending].format(step=step)}, {elapsed_s:.1f}s.\nRun directory: {run_dir}")
    if ending == Ending.interrupted:
        text.append(f"\nResume with: grokkit resume {run_dir}", style="bold")
    return text


def _step(step: int | None) -> str:
    return "never" if step is None else f"{step:,}"


def _curve_plot(
    series: list[tuple[str, list[float], list[float]]],
    title: str,
    marks: list[int],
    width: int,
    log_y: bool = False,
    unit_range: bool = False,
) -> Text:
    """A log-step line plot through uniplot, with vertical lines at `marks`."""
    from uniplot import plot_to_string

    series = [(label, xs, ys) for label, xs, ys in series if xs]
    if not series:
        return Text("(no evaluations yet)", style="dim")
    y_range = {"y_min": 0.0, "y_max": 1.0} if unit_range else {}
    plot = plot_to_string(
        [ys for _, _, ys in series],
        [[max(x, 1) for x in xs] for _, xs, _ in series],
        x_as_log=True,
        y_as_log=log_y,
        lines=True,
        title=title,
        legend_labels=[label for label, _, _ in series],
        x_gridlines=[m for m in marks if m] or [],
        y_gridlines=[],
        width=max(20, width - 12),
        height=9,
        color=True,
        **y_range,
    )
    return Text.from_ansi(plot if isinstance(plot, str) else "\n".join(plot))


def report_view(
    run_name: str,
    config: Config,
    report: dict[str, Any],
    history: list[dict[str, Any]],
    width: int = 80,
    plot: bool = True,
) -> Group:
    """The one-screen summary of one run: setup, milestones, verdict, early-stopping lesson, norms, curves."""
    parts: list[Any] = [Text(run_name, style="bold"), describe_config(config)]
    parts.append(Text("first evaluation step at which accuracy held ≥", style="bold"))
    milestones_table = Table(box=None)
    milestones_table.add_column("", style="bold")
    for t in ("50", "95", "99"):
        milestones_table.add_column(f"{t}%", justify="right")
    for split in ("train", "val"):
        milestones_table.add_row(split, *(_step(report["thresholds"][split][t]) for t in ("50", "95", "99")))
    parts.append(milestones_table)

    outcome = Verdict(report["verdict"])
    parts.append(Text.assemble(("verdict: ", "bold"), (outcome, VERDICT_STYLE[outcome]), f" ({VERDICTS[outcome]})"))
    if report["generalized_step"] is not None and report["memorized_step"] is not None:
        parts.append(
            Text(
                f"grokking delay: {report['grokking_delay']:,} steps "
                f"(validation 99% at {report['generalized_step']:,}, train 99% at {report['memorized_step']:,}; "
                f"ratio {report['delay_ratio']:.1f}x)"
            )
        )
    elif report["generalized_step"] is None and report["best_val_acc"] is not None:
        parts.append(
            Text(
                f"never generalized: best validation accuracy {_pct(report['best_val_acc']).strip()} "
                f"at step {report['best_val_step']:,} of {report['steps']:,}",
                style="yellow",
            )
        )
    if report.get("noise_phase"):
        last = history[-1]
        parts.append(
            Text.assemble(
                ("label-noise phase (Doshi et al. 2024): ", "bold"),
                (report["noise_phase"], "magenta"),
                f" ({NOISE_PHASES[report['noise_phase']]}; training accuracy clean "
                f"{_pct(last['train_acc_clean']).strip()}, corrupted {_pct(last['train_acc_corrupted']).strip()}, "
                f"corrupted predicted with their true label {_pct(last['train_acc_corrupted_true']).strip()})",
            )
        )
    parts.append(early_stopping_callout(report))
    if report.get("phases"):
        parts.append(phases_view(report))
    if report.get("early_warning"):
        parts.append(early_warning_view(report))
    if report.get("after_generalization"):
        parts.append(after_generalization_view(report["after_generalization"]))

    parts.append(Text("parameter L2 norm", style="bold"))
    norms = Table(box=None)
    trajectory = report["param_norm"]
    points = [trajectory.get(name) for name in ("initial", "memorized", "peak", "generalized", "final")]
    norms.add_column("", style="bold")
    for name in ("initial", "memorized", "peak", "generalized", "final"):
        norms.add_column(name, justify="right")
    norms.add_row("|w|", *("—" if p is None else f"{p['param_norm']:.1f}" for p in points))
    norms.add_row("step", *("" if p is None else f"{p['step']:,}" for p in points))
    parts.append(norms)
    if not plot:
        return Group(*parts)
    steps = [r["step"] for r in history]
    marks = [report["memorized_step"], report["generalized_step"], report["early_stop_step"]]
    parts.append(
        _curve_plot(
            [
                ("train acc", steps, [r["train_acc"] for r in history]),
                ("val acc", steps, [r["val_acc"] for r in history]),
            ],
            "accuracy vs step (log); vertical lines: memorized, generalized, early stop",
            marks,
            width,
            unit_range=True,
        )
    )
    parts.append(
        _curve_plot(
            [
                ("train loss", steps, [r["train_loss"] for r in history]),
                ("val loss", steps, [r["val_loss"] for r in history]),
            ],
            "loss (log) vs step (log)",
            marks,
            width,
            log_y=True,
        )
    )
    return Group(*parts)


def phases_view(report: dict[str, Any]) -> Group:
    """The three phases of Nanda et al. 2023 with what happened in each, key frequencies, early warning."""
    table = Table(box=None, show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(justify="right", no_wrap=True)
    table.add_column()
    story = report.get("phase_story", {})
    for name, span in report["phases"].items():
        start = "?" if span["start"] is None else f"{span['start']:,}"
        end = "now" if span["end"] is None else f"{span['end']:,}"
        label = name.replace("_", " ")
        table.add_row(label, f"{start}–{end}", story.get(name, "not reached" if span["start"] is None else "ongoing"))
    parts: list[Any] = [Text("phases (Nanda et al. 2023; rule in grokkit/analysis.py)", style="bold"), table]
    if report.get("key_irreps") is not None:
        circuit = "key-irrep"
        parts.append(Text(f"key irreps (Chughtai et al. 2023): {', '.join(report['key_irreps']) or 'none'}"))
    else:
        circuit, keys = "key-frequency", report.get("key_frequencies") or []
        parts.append(Text(f"key frequencies (k, w = 2πk/n in the task's basis): {', '.join(map(str, keys)) or 'none'}"))
    if report.get("warning_steps") is not None:
        parts.append(
            Text(
                f"early warning: the {circuit} circuit alone solved the task at step {report['circuit_step']:,}, "
                f"{report['warning_steps']:,} steps before validation accuracy reached 99%",
                style="cyan",
            )
        )
    return Group(*parts)


KIND_WORDS = {Kind.forming: ("forming", "green"), Kind.will_not: ("will not", "red")}


def _lead(lead: int | None, fired: int | None) -> Text:
    if lead is None:
        return Text("—", style="dim")
    if lead <= 0:
        return Text(f"{lead:,}", style="yellow")  # fired at or after generalization: no warning
    return Text(f"+{lead:,}", style="bold")


def early_warning_view(report: dict[str, Any]) -> Group:
    """Per signal: what it says, its rule, the step it fired and its lead over validation 99%."""
    table = Table(box=None, padding=(0, 1), pad_edge=False)
    table.add_column("signal", no_wrap=True)
    table.add_column("says", no_wrap=True)
    table.add_column("fired", justify="right", no_wrap=True)
    table.add_column("lead", justify="right", no_wrap=True)
    table.add_column("rule (from memorization on)", style="dim", overflow="fold", ratio=1)
    for row in report["early_warning"]:
        words, style = KIND_WORDS[Kind(row["kind"])]
        table.add_row(row["label"], Text(words, style=style), _step(row["fired_step"]),
                      _lead(row["lead_steps"], row["fired_step"]), row["rule"])  # fmt: skip
    generalized = report["generalized_step"]
    where = f"validation 99% at {generalized:,}" if generalized is not None else "the run has not generalized"
    title = f"early warning (grokkit/early_warning.py): lead = validation 99% step − fired step; {where}"
    return Group(Text(title, style="bold"), table)


def after_generalization_view(after: dict[str, Any]) -> Group:
    """The post-generalization section: lowest validation accuracy after it, slingshots, anti-grokking, alpha."""
    parts: list[Any] = [
        Text(
            f"after generalization: validation 99% at {after['generalized_step']:,}, trained to "
            f"{after['last_step']:,} ({after['evaluations_after']} evaluations, "
            f"{after['steps_after'] / max(after['generalized_step'], 1):.1f}x the steps to generalize)",
            style="bold",
        )
    ]
    lowest = f"{_pct(after['lowest_val_acc']).strip()} at step {after['lowest_val_step']:,}"
    held = " (held >= 99% throughout)" if after["held_val_acc"] else ""
    parts.append(Text(f"lowest validation accuracy after generalization: {lowest}{held}"))
    events = after["slingshots"]
    rule = (
        f"train loss >= {SLINGSHOT_LOSS_JUMP:g}x its running minimum since memorization (floor "
        f"{SLINGSHOT_LOSS_FLOOR:g}) with the last layer's norm up >= {100 * SLINGSHOT_NORM_JUMP:g}% in one "
        "evaluation at the one before, at or after it"
    )
    parts.append(Text.assemble(("slingshots (Thilak et al. 2022): ", "bold"), f"{len(events) or 'none'}",
                               (f" — rule: {rule}", "dim")))  # fmt: skip
    if events:
        table = Table(box=None, padding=(0, 1), pad_edge=False)
        for column in ("step", "train loss", "running min", "last-layer norm", "train acc", "val acc"):
            table.add_column(column, justify="right", no_wrap=True)
        table.add_column("")
        for e in events:
            table.add_row(f"{e['step']:,}", f"{e['train_loss']:.3g}", f"{e['running_min']:.3g}",
                          f"+{100 * e['norm_jump']:.1f}%", _pct(e["train_acc"]).strip(), _pct(e["val_acc"]).strip(),
                          "" if e["after_generalization"] else Text("before generalization", style="dim"))  # fmt: skip
        parts.append(table)
    anti = after["anti_grokking"]
    anti_rule = f"validation accuracy < {100 * ANTI_GROK_ACC:g}% after holding 99%, train accuracy >= 99%"
    if anti is None:
        parts.append(Text.assemble(("anti-grokking (Prakash & Martin 2025): ", "bold"), "none",
                                   (f" — rule: {anti_rule}", "dim")))  # fmt: skip
    else:
        parts.append(
            Text.assemble(
                ("anti-grokking (Prakash & Martin 2025): ", "bold"),
                (f"at step {anti['step']:,}", "bold red"),
                f", validation accuracy {_pct(anti['val_acc']).strip()} with train accuracy "
                f"{_pct(anti['train_acc']).strip()}",
                (f" — rule: {anti_rule}", "dim"),
            )
        )
    parts.append(spectra_view(after.get("spectra")))
    return Group(*parts)


def spectra_view(spectra: list[dict[str, Any]] | None) -> Any:
    """alpha per stored checkpoint after generalization: the lowest layer's, and the layers below 2 flagged."""
    head = Text.assemble(
        ("layer spectra: ", "bold"),
        (
            "alpha of each weight matrix's eigenvalues of WᵀW, power-law MLE over the tail above xmin chosen by "
            f"the KS distance (Clauset et al. 2009); alpha < {HEAVY_TAIL_ALPHA:g} flagged (Prakash & Martin 2025); "
            "(before): the newest checkpoint before generalization, for reference",
            "dim",
        ),
    )
    if not spectra or all(row.get("before_generalization") for row in spectra):
        return Group(head, Text("no stored checkpoint after generalization (--keep-checkpoints keeps more)", "dim"))
    table = Table(box=None, padding=(0, 1), pad_edge=False)
    table.add_column("checkpoint", justify="right", no_wrap=True)
    table.add_column("lowest alpha", no_wrap=True)
    table.add_column("median", justify="right", no_wrap=True)
    table.add_column(f"alpha < {HEAVY_TAIL_ALPHA:g}", overflow="fold", ratio=1)
    for row in spectra:
        alphas = row["alphas"]
        step = f"{row['step']:,}" + (" (before)" if row.get("before_generalization") else "")
        if not alphas:
            table.add_row(step, "—", "—", "")
            continue
        name = min(alphas, key=alphas.get)
        low = Text(f"{alphas[name]:.2f} ({name})", style="bold red" if alphas[name] < HEAVY_TAIL_ALPHA else "")
        heavy = row["heavy_tailed"]
        names = ", ".join(heavy) if len(heavy) <= 3 else f"{len(heavy)} of {len(alphas)} layers"
        table.add_row(step, low, f"{statistics.median(alphas.values()):.2f}",
                      Text(names or "none", style="red" if heavy else "dim"))  # fmt: skip
    return Group(head, table)


def sweep_early_warning_view(sweep) -> Table | None:
    """Per grid point and signal, over seeds: fired before validation 99% on the members that generalized (k/n),
    the median [range] of those leads, and fired on the members that memorized and spent their budget without
    generalizing;
    the false alarms (the latter for a forming signal, the former for a will-not signal) in yellow."""
    from grokkit.sweep import swept_point_keys

    rows = [r for r in sweep.aggregates if r.get("early_warning")]
    if not rows:
        return None
    keys = swept_point_keys(sweep.spec)
    table = Table(title="early warning over seeds (rules: grokkit/early_warning.py)", title_justify="left")
    for key in keys:
        table.add_column(key.rsplit(".", 1)[-1], style="bold", overflow="fold")
    table.add_column("signal", overflow="fold")
    table.add_column("says", no_wrap=True)
    table.add_column("grokked:\nfired before", justify="right", no_wrap=True)
    table.add_column(Text("lead median\n[range]"), justify="right", no_wrap=True)
    table.add_column("never did:\nfired", justify="right", no_wrap=True)
    for row in rows:
        for i, entry in enumerate(row["early_warning"]):
            kind = Kind(entry["kind"])
            words, style = KIND_WORDS[kind]
            before = f"{entry['fired_before']}/{entry['generalized_runs']}"
            never = f"{entry['fired_never_generalized']}/{entry['never_generalized_runs']}"
            alarm_style = "yellow" if entry["false_alarms"] else ""
            lead = "—"
            if entry["lead_median"] is not None:
                lead = f"+{entry['lead_median']:,.0f}"
                if entry["lead_min"] != entry["lead_max"]:
                    lead += f"\n[{entry['lead_min']:,}–{entry['lead_max']:,}]"
            table.add_row(*(shown(row["point"][k]) if i == 0 else "" for k in keys), entry["label"],
                          Text(words, style=style),
                          Text(before, style=alarm_style if kind == Kind.will_not else ""), Text(lead),
                          Text(never, style=alarm_style if kind == Kind.forming else ""),
                          end_section=i == len(row["early_warning"]) - 1)  # fmt: skip
    return table


def early_stopping_callout(report: dict[str, Any]) -> Panel:
    """The headline lesson: what early stopping on validation loss would have shipped."""
    patience = report["early_stop_patience"]
    if report["early_stop_step"] is None:
        body = Text(f"Early stopping on validation loss (patience {patience} evaluations) would not have fired.")
        return Panel(body, title="early-stopping counterfactual", border_style="dim")
    body = Text()
    body.append(f"Early stopping on validation loss (patience {patience} evaluations) would have stopped at step ")
    body.append(f"{report['early_stop_step']:,}", style="bold")
    body.append(" and shipped the weights of step ")
    body.append(f"{report['early_stop_best_step']:,}", style="bold")
    body.append(" with validation accuracy ")
    body.append(_pct(report["early_stop_val_acc"]).strip(), style="bold red")
    if report["generalized_step"] is not None and report["generalized_step"] > report["early_stop_step"]:
        body.append(". The model generalized (99%) at step ")
        body.append(f"{report['generalized_step']:,}", style="bold green")
        body.append(f", {report['generalized_step'] / max(report['early_stop_step'], 1):.1f}x later.")
        border = "red"
    else:
        body.append(".")
        border = "yellow"
    return Panel(body, title="early-stopping counterfactual", border_style=border)


def comparison_view(
    rows: list[tuple[str, Config, dict[str, Any], list[dict[str, Any]]]], width: int = 80, plot: bool = True
) -> Group:
    """One row per run (the config values that differ, milestones, delay ratio, verdict) and overlaid val curves."""
    dicts = [_flatten(config.to_dict()) for _, config, _, _ in rows]
    differing = [k for k in dicts[0] if len({repr(d.get(k)) for d in dicts}) > 1 and k != "preset"]
    table = Table(title="runs compared", title_justify="left")
    table.add_column("run (settings that differ)", overflow="fold")
    for column in ("train\n99%", "val\n99%", "ratio", "early stop\n→ val acc"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    for (name, _, report, _), flat in zip(rows, dicts, strict=True):
        settings = ", ".join(f"{k.rsplit('.', 1)[-1]} {shown(flat.get(k))}" for k in differing)
        stop = (
            "—"
            if report["early_stop_step"] is None
            else f"{report['early_stop_step']:,}\n→ {_pct(report['early_stop_val_acc']).strip()}"
        )
        ratio = "—" if report["delay_ratio"] is None else f"{report['delay_ratio']:.1f}x"
        table.add_row(
            Text.assemble((name, "bold"), (f"\n{settings}" if settings else "", "dim")),
            _step(report["memorized_step"]),
            _step(report["generalized_step"]),
            ratio,
            stop,
            report["verdict"],
        )
    if not plot:
        return Group(table)
    series = [(name, [r["step"] for r in h], [r["val_acc"] for r in h]) for name, _, _, h in rows]
    return Group(table, _curve_plot(series, "validation accuracy vs step (log)", [], width, unit_range=True))


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


_BLOCKS = " ▁▂▃▄▅▆▇█"


def spectrum_chart(spectrum: list[float], keys: list[int], height: int = 6) -> Text:
    """A vertical bar per frequency k = 1..p//2 (key frequencies highlighted), k marked every 5."""
    top = max(spectrum) or 1.0
    levels = [value / top * height for value in spectrum]
    text = Text()
    for row in range(height - 1, -1, -1):
        for k, level in enumerate(levels, start=1):
            fill = min(max(level - row, 0.0), 1.0)
            text.append(_BLOCKS[round(fill * 8)], style="bold magenta" if k in keys else "dim")
        text.append("\n")
    text.append("".join("|" if k % 5 == 0 else " " for k in range(1, len(spectrum) + 1)) + "\n", style="dim")
    labels = [" "] * (len(spectrum) + 2)
    for k in range(5, len(spectrum) + 1, 5):
        labels[k - 1 : k - 1 + len(str(k))] = str(k)
    text.append("".join(labels).rstrip(), style="dim")
    return text


def _hbar(value: float, top: float, width: int, style: str = "") -> Text:
    """A horizontal bar, `width` cells for `top`, in eighths of a cell."""
    eighths = min(round(max(value, 0.0) / (top or 1.0) * width * 8), width * 8)
    full, part = divmod(eighths, 8)
    return Text("█" * full + ("▏▎▍▌▋▊▉"[part - 1] if part else ""), style=style)


def _inspect_header(result, detail: str) -> Text:
    return Text.assemble(
        (f"{result.run_name} @ step {result.step:,}", "bold"),
        f": {result.task} ({result.model}), {detail}accuracy on all examples {_pct(result.accuracy).strip()}",
    )


def inspect_view(result, width: int = 80) -> Group:
    """What `grokkit inspect` shows for one checkpoint, by the family of its task (`grokkit.inspection`)."""
    views = {
        "cyclic": _cyclic_view,
        "multiplicative": _multiplicative_view,
        "s5": _s5_view,
        "spectrum": _spectrum_only_view,
        "parity": _parity_view,
    }
    return views[result.family](result, width)


def _cyclic_view(result, width: int) -> Group:
    """mod-add / mod-sub: Nanda et al. 2023's Fourier view."""
    header = Text.assemble(
        (f"{result.run_name} @ step {result.step:,}", "bold"),
        f": p = {result.p}, accuracy on all pairs {_pct(result.accuracy).strip()}",
    )
    table = Table(box=None)
    table.add_column("key frequency k", justify="right", style="bold magenta")
    table.add_column("w = 2πk/p", justify="right")
    table.add_column("embedding norm", justify="right")
    table.add_column(f"MLP neurons (of {result.neurons})", justify="right")
    for k in result.key_frequencies:
        table.add_row(str(k), f"{2 * 3.141592653589793 * k / result.p:.3f}", f"{result.spectrum[k - 1]:.2f}",
                      str(result.neurons_by_frequency[k]))  # fmt: skip
    dominated = sum(result.neurons_by_frequency.values())
    iprs = [float(x) for x in result.ipr_F]
    summary = Text(
        f"{len(result.key_frequencies)} key frequencies of {len(result.spectrum)}; embedding Gini "
        f"{result.embed_gini:.2f}; {dominated} of {result.neurons} neurons dominated by one of them.\n"
        f"Restricted to its key frequencies the model scores {_pct(result.restricted_accuracy).strip()} on all "
        f"pairs (restricted loss {result.restricted_loss:.3g}); without them its train loss is "
        f"{result.excluded_loss:.3g} (excluded loss).\n"
        f"Neuron inverse participation ratio (Doshi et al. 2024; 1 = one frequency): median "
        f"{statistics.median(iprs):.2f}, {sum(x >= 0.5 for x in iprs)} of {len(iprs)} at 0.5 or more."
    )
    return Group(
        header,
        Text("embedding Fourier spectrum (norm per frequency k; key frequencies highlighted)", style="bold"),
        spectrum_chart(result.spectrum, result.key_frequencies),
        table,
        summary,
    )


def _multiplicative_view(result, width: int) -> Group:
    """mod-mul / mod-div (p prime): the discrete-log spectrum beside the additive one."""
    p, g, n = result.p, result.generator, result.p - 1
    sign = "+" if result.task == "mod-mul" else "-"
    symbol = "*" if result.task == "mod-mul" else "/"
    left_out = result.examples - result.examples_in_group
    basis = Text(
        f"Discrete-log basis: g = {g} generates the non-zero residues mod {p}, so residue x ≠ 0 is element "
        f"log_{g}(x) of Z_{n} and x {symbol} y is log x {sign} log y mod {n}. The {left_out:,} pairs involving 0 "
        f"are not in the group and are left out of the measures ({result.examples_in_group:,} of "
        f"{result.examples:,} pairs in)."
    )
    keys = ", ".join(str(k) for k in result.key_frequencies) or "none"
    table = Table(box=None)
    table.add_column(f"key frequency k of log_{g} x", justify="right", style="bold magenta")
    table.add_column("embedding norm", justify="right")
    for k in result.key_frequencies:
        table.add_row(str(k), f"{result.log_spectrum[k - 1]:.2f}")
    summary = Text(
        f"Key frequencies (log basis): {keys}. Restricted to them the model scores "
        f"{_pct(result.restricted_accuracy).strip()} on the pairs in the group (restricted loss "
        f"{result.restricted_loss:.3g}); without them its train loss is {result.excluded_loss:.3g} (excluded loss)."
    )
    return Group(
        _inspect_header(result, f"p = {p}, "),
        basis,
        Text(
            f"embedding spectrum in the discrete-log basis Z_{n} (norm per frequency k of log_{g} x; key "
            f"frequencies highlighted): Gini {result.log_gini:.2f}",
            style="bold",
        ),
        spectrum_chart(result.log_spectrum, result.key_frequencies),
        Text(
            f"embedding spectrum in the additive basis Z_{p} (Fourier of the residue x): Gini "
            f"{result.additive_gini:.2f}",
            style="bold",
        ),
        spectrum_chart(result.additive_spectrum, []),
        Text(
            f"The additive spectrum looks dense because a frequency of the log, cos(2πk·log_{g}(x)/{n}), is not "
            f"periodic in x: it spreads over many frequencies of Z_{p}.",
            style="dim",
        ),
        table,
        summary,
    )


def _s5_view(result, width: int) -> Group:
    """S5 tasks: embedding and logit norm per irrep, key irreps, restricted loss, the coset view."""
    bar = max(6, (width - 58) // 2)
    density = [norm / d for norm, d in zip(result.embed_norms, result.irrep_dims, strict=True)]
    power = [x * x for x in result.logit_norms]
    total = sum(power) or 1.0
    table = Table(box=None, padding=(0, 1), pad_edge=False)
    for column in ("irrep", "d", "embed", "/d", "", "logits", "share", ""):
        table.add_column(column, justify="left" if column in ("irrep", "") else "right", no_wrap=True)
    for r, irrep in enumerate(result.irreps):
        key = irrep in result.key_irreps
        style = "bold magenta" if key else ""
        table.add_row(
            Text(irrep, style=style),
            str(result.irrep_dims[r]),
            f"{result.embed_norms[r]:.2f}",
            f"{density[r]:.2f}",
            _hbar(density[r], max(density), bar, "magenta" if key else "dim"),
            f"{result.logit_norms[r]:.2f}",
            _pct(power[r] / total).strip(),
            _hbar(power[r] / total, 1.0, bar, "cyan" if key else "dim"),
        )
    keys = ", ".join(f"{name} (d={result.irrep_dims[result.irreps.index(name)]})" for name in result.key_irreps)
    parts: list[Any] = [
        _inspect_header(result, ""),
        Text("per irrep of S5 (key irreps highlighted)", style="bold"),
        Text(
            "embed: norm of the operand embedding's projection on the irrep's isotypic component (d² dimensions), "
            "/d: the same per dimension (the key rule); logits: norm of the logits' dependence on the answer in the "
            "irrep, share: its part of all of that dependence (squared norms).",
            style="dim",
        ),
        table,
        Text(
            f"Key irreps: {keys or 'none'}; embedding Gini {result.embed_gini:.2f}.\n"
            f"Restricted to its key irreps the model scores {_pct(result.restricted_accuracy).strip()} on all pairs "
            f"(restricted loss {result.restricted_loss:.3g}); without them its train loss is "
            f"{result.excluded_loss:.3g} (excluded loss)."
        ),
    ]
    if result.composition:
        parts.append(
            Text(
                "Chughtai et al. 2023: a model composing in S5 computes logits(x, y, c) ≈ Σ_ρ w_ρ χ_ρ(x·y·c⁻¹) "
                "over a few key irreps ρ; the restricted loss keeps only their part.",
                style="dim",
            )
        )
    else:
        parts.append(
            Text(
                f"{result.task}'s answer is not the product x·y of its operands: here the logit measure asks only "
                "whether the logits depend on the answer through the key irreps. The group-composition-via-"
                "representations algorithm (Chughtai et al. 2023) is stated for composition (s5-compose).",
                style="yellow",
            )
        )
    cosets = Table(box=None, padding=(0, 1), pad_edge=False)
    cosets.add_column("point i", no_wrap=True)
    for i in range(5):
        cosets.add_column(str(i), justify="right")
    cosets.add_row("s(i): left cosets s·S4_i", *(_pct(x).strip() for x in result.left_coset_share))
    cosets.add_row("s⁻¹(i): right cosets S4_i·s", *(_pct(x).strip() for x in result.right_coset_share))
    standard = result.irreps.index("standard")
    parts += [
        Text("cosets of the point stabilizers S4_i = {h : h(i) = i} (Stander et al. 2024)", style="bold"),
        Text(
            "share of the logits' dependence on the answer s that is a function of the answer's coset, i.e. of "
            f"s(i) or s⁻¹(i); each share is at most the standard irrep's ({_pct(power[standard] / total).strip()}).",
            style="dim",
        ),
        cosets,
    ]
    return Group(*parts)


def _spectrum_only_view(result, width: int) -> Group:
    """Modular tasks whose answer is not a group product: the embedding's Z_p spectrum only."""
    strongest = ", ".join(str(k) for k in result.strongest) or "none"
    return Group(
        _inspect_header(result, f"p = {result.p}, "),
        Text(
            f"embedding Fourier spectrum (Z_{result.p}; norm per frequency k; the strongest highlighted): Gini "
            f"{result.embed_gini:.2f}",
            style="bold",
        ),
        spectrum_chart(result.spectrum, result.strongest),
        Text(f"Strongest frequencies (the key rule on the embedding): {strongest}."),
        Text(f"Restricted and excluded loss are not defined for {result.task}: {result.reason}.", style="yellow"),
    )


def _parity_view(result, width: int) -> Group:
    """Sparse parity: the first layer's weight per input bit (Barak et al. 2022)."""
    n, k = result.n_bits, result.k_bits
    header = _inspect_header(result, f"{n} bits, the first {k} relevant (bits 0..{k - 1}), ")
    if result.weights is None:
        return Group(
            header,
            Text(
                "The per-bit weight does not apply: this MLP sums one embedding table shared by every position "
                "(embed=sum), so the bits cannot be told apart by their weight. Train with --embed concat or "
                "--model transformer to see it.",
                style="yellow",
            ),
        )
    if result.model == "transformer":
        measure = "the first block's attention from the final position to bit i, mean over examples and heads"
    else:
        measure = "||E[i, 1] - E[i, 0]||, the part of the first layer that varies with bit i"
    top = max(result.weights)
    table = Table(box=None, padding=(0, 1), pad_edge=False)
    table.add_column("bit", justify="right")
    table.add_column("weight", justify="right")
    table.add_column("")
    table.add_column("")
    for i, weight in enumerate(result.weights):
        style = "bold magenta" if i < k else "dim"
        table.add_row(Text(str(i), style=style), f"{weight:.3g}", _hbar(weight, top, max(10, width - 30), style),
                      Text("relevant", style="magenta") if i < k else "")  # fmt: skip
    return Group(
        header,
        Text(f"first-layer weight per input bit (Barak et al. 2022): {measure}", style="bold"),
        table,
        Text(
            f"Relevant weight share {result.relevant_weight_share:.2f} (about k/n = {k / n:.2f} at random, 1 once "
            f"only the relevant bits count); bit-weight Gini {result.bit_weight_gini:.2f} (0 even, "
            f"{(n - k) / n:.2f} with all the weight on the {k} relevant bits)."
        ),
    )


def sweep_plan(spec, members, shard: tuple[int, int], sweep_dir: str) -> Group:
    """What a sweep will train: the base setup, the axes, the member count and shard."""
    axes = Table.grid(padding=(0, 1))
    axes.add_column(style="bold")
    axes.add_column()
    for key, values in spec.axes.items():
        axes.add_row(key, ", ".join(shown(v) for v in values))
    index, count = shard
    mine = len(members[index::count])
    where = f"{mine} of {len(members)} members (shard {index}/{count})" if count > 1 else f"{len(members)} members"
    return Group(describe_config(spec.base), axes, Text(f"sweep: {where} -> {sweep_dir}", style="bold"))


def sweep_group_line(group: int, groups: int, step: int, steps: int, lanes: list, elapsed_s: float) -> str:
    """One progress line for a group of members trained together."""
    done = sum(lane.reason is not None for lane in lanes)
    generalized = sum(milestones(lane.history)["generalized_step"] is not None for lane in lanes)
    return (
        f"group {group + 1}/{groups}: {len(lanes)} members  step {step:>7,}/{steps:,}  "
        f"done {done}/{len(lanes)}  generalized {generalized}/{len(lanes)}  {_duration(elapsed_s)}"
    )


def sweep_outcome(result) -> Text:
    """The closing lines of a sweep: how each member ended, and where to look next."""
    counts: dict[str, int] = {}
    for reason in result.reasons.values():
        counts[reason] = counts.get(reason, 0) + 1
    text = Text()
    text.append(f"Sweep {'interrupted' if result.interrupted else 'done'}: ", style="bold")
    text.append(", ".join(f"{n} {reason}" for reason, n in sorted(counts.items())) or "nothing to train")
    text.append(f"; {result.groups} group(s), {_duration(result.elapsed_s)}.\n")
    if result.interrupted:
        text.append(f"Continue with: grokkit resume {result.sweep_dir}\n")
    text.append(f"Sweep folder: {result.sweep_dir}\nSummary: grokkit report {result.sweep_dir}")
    return text


def _median_range(row: dict[str, Any], name: str) -> str:
    """The median step over seeds ("> N" when censored: half or more not there by step N), the range of the seeds
    that got there below it, and how many got there when not all did."""
    median, above = row[f"{name}_median"], row.get(f"{name}_median_above")
    if median is not None:
        head = f"{median:,.0f}"
    elif above is not None:
        head = f"> {above:,.0f}"
    else:
        return "—"
    low, high = row[f"{name}_min"], row[f"{name}_max"]
    spread = ""
    if low is not None and low != high:
        spread = f"\n[{low:,}–{high:,}]"
    elif low is not None and median is None:
        spread = f"\n[{low:,}]"
    reached, runs = row.get(f"{name}_reached"), row.get(f"{name}_runs")
    count = f"\n{reached}/{runs}" if reached is not None and runs and reached < runs else ""
    return f"{head}{spread}{count}"


def sweep_view(sweep, width: int = 80, plot: bool = True) -> Group:
    """The sweep table (one row per grid point, seeds pooled) and a phase diagram of time to grok."""
    from grokkit.sweep import swept_point_keys

    keys = [k for k in sweep.spec.axes if k in {k for r in sweep.aggregates for k in r["point"]}]
    table = Table(title=f"sweep {sweep.path.name}: {len(sweep.members)} members", title_justify="left")
    for key in keys:
        table.add_column(key.rsplit(".", 1)[-1], style="bold", overflow="fold")
    for column in ("runs", "train 99%", "val 99%"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("verdicts", overflow="fold")
    for row in sweep.aggregates:
        verdicts = "\n".join(f"{n} {v}" for v, n in sorted(row["verdicts"].items()))
        table.add_row(
            *(shown(row["point"][k]) for k in keys),
            f"{row['started']}/{row['members']}",
            _median_range(row, "memorized"),
            _median_range(row, "generalized"),
            verdicts or "—",
        )
    legend = (
        "99% columns: first step at which accuracy held 99%, Kaplan–Meier median over seeds (a seed not there yet is "
        "censored at its last step; > N: half or more not there by step N), [range of those there] and k/n there "
        "below"
    )
    parts: list[Any] = [table, Text(legend, style="dim")]
    warnings = sweep_early_warning_view(sweep)
    if warnings is not None:
        parts += [warnings, Text(SWEEP_WARNING_LEGEND, style="dim")]
    swept = swept_point_keys(sweep.spec)
    if plot and len(swept) == 1 and all(isinstance(v, int | float) for v in sweep.spec.axes[swept[0]]):
        rows = [r for r in sweep.aggregates if r["generalized_median"] is not None]
        if rows:
            key = swept[0]
            parts.append(_phase_line(key, rows, width))
    elif plot and len(swept) == 2:
        parts.append(_phase_grid(sweep, swept))
    return Group(*parts)


SWEEP_WARNING_LEGEND = (
    "grokked: fired before validation 99% (k of the n members that generalized); lead: validation 99% step − fired "
    "step over those k; never did: fired on members that memorized, then spent their budget without "
    "generalizing. False alarms "
    "(yellow): a forming signal firing on a member that never generalized, a will-not signal firing before a "
    "member generalized"
)


def _phase_line(key: str, rows: list[dict[str, Any]], width: int) -> Text:
    from uniplot import plot_to_string

    xs = [float(r["point"][key]) for r in rows]
    plot = plot_to_string(
        [[float(r["generalized_median"]) for r in rows], [float(r["generalized_max"]) for r in rows],
         [float(r["generalized_min"]) for r in rows]],
        [xs, xs, xs],
        lines=True,
        y_as_log=True,
        title=f"time to grok (step to 99% validation accuracy, log) vs {key.rsplit('.', 1)[-1]}",
        legend_labels=["median", "slowest seed", "fastest seed"],
        width=max(20, width - 12),
        height=9,
        color=True,
    )  # fmt: skip
    return Text.from_ansi(plot if isinstance(plot, str) else "\n".join(plot))


def _phase_grid(sweep, keys: list[str]) -> Table:
    """Median step to 99% validation accuracy over two swept axes; "> N" where half or more of the seeds had not
    generalized by step N, "—" where no seed has run."""
    rows_axis, cols_axis = keys
    table = Table(title="time to grok (median step to 99% validation accuracy)", title_justify="left")
    table.add_column(f"{rows_axis.rsplit('.', 1)[-1]} \\ {cols_axis.rsplit('.', 1)[-1]}", style="bold")
    columns = [getattr(v, "value", v) for v in sweep.spec.axes[cols_axis]]
    for value in columns:
        table.add_column(shown(value), justify="right")
    found = [r["generalized_median"] for r in sweep.aggregates if r["generalized_median"] is not None]
    low, high = (min(found), max(found)) if found else (0, 1)
    for row_value in (getattr(v, "value", v) for v in sweep.spec.axes[rows_axis]):
        cells = []
        for col_value in columns:
            match = [r for r in sweep.aggregates if r["point"].get(rows_axis) == row_value
                     and r["point"].get(cols_axis) == col_value]  # fmt: skip
            median = match[0]["generalized_median"] if match else None
            above = match[0].get("generalized_median_above") if match else None
            if median is None:
                cells.append(Text("—" if above is None else f"> {above:,.0f}", style="dim"))
                continue
            shade = 0.0 if high == low else (median - low) / (high - low)
            style = "green" if shade < 1 / 3 else "yellow" if shade < 2 / 3 else "red"
            cells.append(Text(f"{median:,.0f}", style=style))
        table.add_row(shown(row_value), *cells)
    return table


def comparison_report(result: dict[str, Any]) -> Group:
    """`grokkit compare`: steps and seconds to each validation threshold on both sides (censored medians), the
    speed-ups (bounds, intervals), the grid point each side contributes, and the warnings."""
    from grokkit.survival import Estimate, Ratio, interval_text, ratio_text, steps_text

    table = Table(title=f"{result['candidate']} vs {result['baseline']}", title_justify="left")
    table.add_column("val acc", justify="right", no_wrap=True)
    for column in ("baseline", "candidate"):
        table.add_column(column, justify="right", overflow="fold")
    for column in ("speed-up\n(steps)", "speed-up\n(time)"):
        table.add_column(column, justify="right")

    def side_cell(side: dict[str, Any]) -> str:
        head = steps_text(Estimate(side["median_step"], side.get("median_step_above")))
        low, high = side["min_step"], side["max_step"]
        spread = ""
        if low is not None and low != high:
            spread = f" [{low:,}–{high:,}]"
        elif low is not None and side["median_step"] is None:
            spread = f" [{low:,}]"
        seconds = ""
        if side["median_s"] is not None:
            seconds = f", {side['median_s']:.1f}s"
        elif side.get("median_s_above") is not None:
            seconds = f", > {side['median_s_above']:.1f}s"
        return f"{head}{spread}\n{side['reached']}/{side['runs']} runs{seconds}"

    def speedup(row: dict[str, Any], name: str) -> str:
        text = ratio_text(Ratio(row[name], row.get(f"{name}_bound")))
        interval = interval_text(row.get(f"{name}_interval"))
        return f"{text}\n{interval}" if interval else text

    for row in result["thresholds"]:
        table.add_row(f"{100 * row['threshold']:g}%", side_cell(row["baseline"]), side_cell(row["candidate"]),
                      speedup(row, "speedup_steps"), speedup(row, "speedup_s"))  # fmt: skip
    parts: list[Any] = [table]
    for role, chosen in result.get("selection", {}).items():
        pinned = ", ".join(f"{k.rpartition('.')[2]}={shown(v)}" for k, v in chosen["pinned"].items())
        words = [f"{role}:"]
        if pinned:
            words.append(f"grid point {pinned} (--{role}-point)")
        if chosen["points_tried"] > 1:
            over = ", ".join(k.rpartition(".")[2] for k in chosen["tuned_over"])
            words.append(f"{'then ' if pinned else ''}the fastest of {chosen['points_tried']} grid points over "
                         f"{over}: {chosen['point']}")  # fmt: skip
        if len(words) > 1:
            parts.append(Text(" ".join(words)))
    legend = (
        "each side: median steps over seeds (Kaplan–Meier: a seed not there is censored at its last step; "
        "> N: half or more not there by step N) [range of those there], runs there / runs, median seconds. "
        "speed-up: baseline median / candidate median, ≥ or ≤ when a median is censored, [95% bootstrap "
        "interval] with 3 or more seeds a side"
    )
    parts.append(Text(legend, style="dim"))
    for warning in result["warnings"]:
        parts.append(Text(f"warning: {warning}", style="yellow"))
    return Group(*parts)


def reproduction_view(result: dict[str, Any]) -> Group:
    """`grokkit reproduce`: per paper figure, ours (censored median, range, k/n) beside the paper's, and the verdict."""
    from grokkit.reproduce import paper_cell, steps_cell, wall_text

    table = Table(title=f"{result['preset']}: ours beside the paper's", title_justify="left")
    for column in ("figure", "paper", "ours: median \\[range] (k/n)", "verdict"):
        table.add_column(column)
    for row in result["claims"]:
        table.add_row(
            f"{row['claim']}\n[dim]{row['where']}[/]", paper_cell(row), steps_cell(row), row["verdict"] or "—"
        )
    footer = Text(
        f"{result['seeds']} seed(s), budget {result['budget']:,} steps, {wall_text(result['wall_s'])} of training in "
        f"all; command: {result['command']}",
        style="dim",
    )
    return Group(table, footer)


def reproduction_list_view(records: dict[str, Any]) -> Table:
    """`grokkit reproduce --list`: every preset's paper figures with its last recorded result on this machine kind."""
    from grokkit.presets import PRESETS
    from grokkit.reproduce import NO_FIGURE, paper_cell, steps_cell, wall_text

    table = Table(
        title="presets: the paper's figure and the last recorded reproduction (steps to the threshold)",
        title_justify="left",
        caption="`grokkit reproduce PRESET` shows where each figure is in its paper; --json gives every field",
    )
    for column in ("preset", "threshold", "paper", "ours (k/n)", "verdict", "recorded"):
        table.add_column(column)
    for name, preset in PRESETS.items():
        found = records.get(name)
        for claim in preset.claims or (NO_FIGURE,):
            row = next((r for r in (found or {}).get("claims", []) if r["claim"] == claim.label), None)
            if found is None or row is None:
                paper = paper_cell(
                    {"paper_steps": claim.steps, "paper_budget": claim.budget if preset.claims else None}
                )
                table.add_row(name, claim.short, paper, "not recorded", "", "")
                continue
            recorded = f"{found['date']}, budget {found['budget']:,}, {wall_text(found['wall_s'])}"
            table.add_row(name, claim.short, paper_cell(row), steps_cell(row), row["verdict"] or "—", recorded)
    return table
