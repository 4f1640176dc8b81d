"""Rich renderables for the CLI; pure functions that never print."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from grokkit.config import Config, ModelKind
from grokkit.data import TASKS, Dataset, Split, input_space_size


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
    return Text.assemble(
        ("wrote ", ""),
        (out, "bold"),
        f" ({fmt}): task {dataset.task}, {len(dataset):,} examples, ",
        f"{len(split.train_idx):,} train / {len(split.val_idx):,} validation, ",
        f"vocab {dataset.vocab_size} (operands 0..{dataset.n_values - 1}, '=' is {dataset.n_values}), ",
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
        ("task", f"{d.task}, p={d.p}, train fraction {d.train_frac}, seed {config.seed}"),
        ("model", model),
        (
            "optimizer",
            f"{o.name.value} lr {o.lr:g}, wd {o.wd:g}, betas ({o.beta1}, {o.beta2}), warmup {o.warmup}, {batch}",
        ),
        ("budget", f"{t.steps:,} steps, eval every {t.eval_every}, checkpoint every {t.checkpoint_every}"),
    ]
    if config.preset:
        rows.insert(0, ("preset", config.preset))
    table = Table.grid(padding=(0, 1))
    table.add_column(style="bold")
    table.add_column()
    for row in rows:
        table.add_row(*row)
    return table


def _pct(value: float) -> str:
    return f"{100 * value:5.1f}%"


def eval_line(record: dict[str, Any], steps: int, steps_per_s: float | None) -> str:
    """One plain line per evaluation, for logs and pipes."""
    speed = f" {steps_per_s:6.1f} steps/s" if steps_per_s else ""
    return (
        f"step {record['step']:>7,}/{steps:,}  train acc {_pct(record['train_acc'])} loss {record['train_loss']:.3g}  "
        f"val acc {_pct(record['val_acc'])} loss {record['val_loss']:.3g}  |w| {record['param_norm']:.1f}{speed}"
    )


def progress_panel(
    record: dict[str, Any] | None,
    steps: int,
    steps_per_s: float | None,
    memorized_step: int | None,
    generalized_step: int | None,
) -> Panel:
    """The live view: step/budget, accuracies, losses, speed, ETA and the two milestones."""
    if record is None:
        return Panel(Text("compiling the training step..."), title="grokkit train", border_style="blue")
    done = record["step"] / steps
    width = 30
    bar = Text("█" * int(done * width) + "░" * (width - int(done * width)), style="cyan")
    eta = (steps - record["step"]) / steps_per_s if steps_per_s else None
    grid = Table.grid(padding=(0, 2))
    grid.add_row(bar, f"{record['step']:,}/{steps:,}", f"{steps_per_s or 0:.1f} steps/s", f"ETA {_duration(eta)}")
    metrics = Table.grid(padding=(0, 2))
    metrics.add_row("train", f"acc {_pct(record['train_acc'])}", f"loss {record['train_loss']:.3g}")
    metrics.add_row("val", f"acc {_pct(record['val_acc'])}", f"loss {record['val_loss']:.3g}")
    metrics.add_row("|w|", f"{record['param_norm']:.2f}", "")
    marks = Text()
    marks.append("memorized ", style="bold")
    marks.append(f"at step {memorized_step:,}" if memorized_step is not None else "not yet", style="yellow")
    marks.append("   generalized ", style="bold")
    marks.append(f"at step {generalized_step:,}" if generalized_step is not None else "not yet", style="green")
    return Panel(Group(grid, metrics, marks), title="grokkit train", border_style="blue")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def run_outcome(run_dir: str, reason: str, summary: dict[str, Any], elapsed_s: float) -> Text:
    """What happened, in words, when the command returns."""
    memorized, generalized = summary.get("memorized_step"), summary.get("generalized_step")
    text = Text()
    if generalized is not None and memorized is not None:
        text.append("grokked: ", style="bold green")
        text.append(
            f"train accuracy reached 99% at step {memorized:,}, validation accuracy at step {generalized:,} "
            f"({generalized / max(memorized, 1):.1f}x later). "
        )
    elif memorized is not None:
        best = summary.get("best_val_acc") or 0.0
        text.append("memorized, not yet generalized: ", style="bold yellow")
        text.append(f"train accuracy 99% at step {memorized:,}; best validation accuracy {_pct(best).strip()}. ")
    else:
        text.append("not yet fit: ", style="bold red")
        text.append("train accuracy has not reached 99%. ")
    step = f"{summary.get('step', 0):,}"
    stopped = {
        "budget": f"Trained the whole budget ({step} steps)",
        "early-exit": f"Stopped early at step {step}: validation accuracy had stayed >= 99% long enough",
        "interrupted": f"Interrupted at step {step}; checkpoint saved",
    }[reason]
    text.append(f"{stopped}, {elapsed_s:.1f}s.\nRun directory: {run_dir}")
    if reason == "interrupted":
        text.append(f"\nResume with: grokkit resume {run_dir}", style="bold")
    return text
