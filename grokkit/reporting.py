"""Reading runs for `report` and `export`: analysis of what is on disk, figures, CSV and TensorBoard."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grokkit.analysis import DEFAULT_PATIENCE, run_report
from grokkit.atomic import atomic_write_bytes
from grokkit.config import Config
from grokkit.errors import UsageError
from grokkit.rundir import RunDir


@dataclass(frozen=True)
class LoadedRun:
    path: Path
    name: str
    config: Config
    history: list[dict[str, Any]]
    bad_lines: list[int]
    status: str
    report: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        """The `report --json` object: stable names, null for steps that never happened."""
        return {
            "run_dir": str(self.path),
            "task": self.config.data.task,
            "p": self.config.data.p,
            "status": self.status,
            **self.report,
            "bad_metrics_lines": self.bad_lines,
        }


def load_run(path: Path, patience: int = DEFAULT_PATIENCE) -> LoadedRun:
    """Open a run (finished, interrupted or still training) and analyse the metrics it has so far."""
    if patience < 1:
        raise UsageError(f"must be >= 1, got {patience}", option="--patience")
    run = RunDir.open(path)
    config = run.config()
    read = run.read_metrics()
    history = sorted(read.records, key=lambda r: r["step"])
    status = run.summary().get("status", "unknown")
    name = Path(path).name if Path(path).name != "latest" else run.path.name
    return LoadedRun(
        run.path, name, config, history, read.bad_lines, status, run_report(history, config.train.steps, patience)
    )


def _write(path: Path, payload: bytes, option: str) -> None:
    if path.is_dir():
        raise UsageError(f"{path} is a folder; give a file name", option=option)
    try:
        atomic_write_bytes(path, payload)
    except OSError as err:
        raise UsageError(f"cannot write {path}: {err.strerror}", option=option) from None


def export_csv(run: LoadedRun, out: Path) -> int:
    """Write metrics.jsonl as CSV (one row per evaluation); returns the row count."""
    columns: list[str] = []
    for record in run.history:
        columns += [k for k in record if k not in columns]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(run.history)
    _write(out, text.getvalue().encode(), "--csv")
    return len(run.history)


def export_tensorboard(run: LoadedRun, out: Path) -> int:
    """Write TensorBoard event files with tensorboardX (the `tensorboard` extra); returns scalars written."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise UsageError(
            "TensorBoard export needs tensorboardX: pip install 'grokkit[tensorboard]'", option="--tensorboard"
        ) from None
    try:
        out.mkdir(parents=True, exist_ok=True)
        writer = SummaryWriter(logdir=str(out))
    except OSError as err:
        raise UsageError(f"cannot write {out}: {err.strerror}", option="--tensorboard") from None
    count = 0
    with writer:
        for record in run.history:
            for key, value in record.items():
                if key != "step" and isinstance(value, int | float):
                    writer.add_scalar(key.replace("_", "/", 1), value, global_step=record["step"])
                    count += 1
    return count


def write_figure(run: LoadedRun, out: Path) -> None:
    """Accuracy and loss vs log step, milestones and the early-stopping point marked, norm on a twin axis."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("figures need matplotlib: pip install 'grokkit[plot]'", option="--png") from None
    history, report = run.history, run.report
    steps = [max(r["step"], 1) for r in history]
    fig, (ax_acc, ax_loss) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, constrained_layout=True)
    ax_acc.plot(steps, [r["train_acc"] for r in history], label="train accuracy", color="tab:blue")
    ax_acc.plot(steps, [r["val_acc"] for r in history], label="validation accuracy", color="tab:orange")
    ax_acc.set_ylabel("accuracy")
    ax_norm = ax_acc.twinx()
    ax_norm.plot(steps, [r["param_norm"] for r in history], color="tab:gray", linestyle=":", label="parameter norm")
    ax_norm.set_ylabel("parameter L2 norm")
    ax_loss.plot(steps, [r["train_loss"] for r in history], label="train loss", color="tab:blue")
    ax_loss.plot(steps, [r["val_loss"] for r in history], label="validation loss", color="tab:orange")
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel("cross-entropy")
    ax_loss.set_xlabel("step")
    ax_loss.set_xscale("log")
    marks = [
        (report["memorized_step"], "train 99%", "tab:blue"),
        (report["generalized_step"], "validation 99%", "tab:orange"),
        (report["early_stop_step"], "early stopping", "tab:red"),
    ]
    for step, label, color in marks:
        if step:
            for ax in (ax_acc, ax_loss):
                ax.axvline(step, color=color, linestyle="--", linewidth=1, label=label if ax is ax_acc else None)
    handles = ax_acc.get_legend_handles_labels()[0] + ax_norm.get_legend_handles_labels()[0]
    ax_acc.legend(handles=handles, loc="center left", fontsize=8)
    ax_loss.legend(loc="lower left", fontsize=8)
    ax_acc.set_title(f"{run.name}: {run.config.data.task} p={run.config.data.p} ({report['verdict']})")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=150)
    plt.close(fig)
    _write(out, buffer.getvalue(), "--png")
