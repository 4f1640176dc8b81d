"""Reading runs for `report` and `export`: analysis of what is on disk, figures, CSV, JSON lines and TensorBoard."""

from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
from collections.abc import Iterable, Mapping
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
    bad_detail: str = ""  # the bad metrics lines and what is wrong with the first, for the warning

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
    from grokkit.early_warning import run_folder_signals

    report = run_report(history, config.train.steps, patience, **run_folder_signals(run.path, history))
    return LoadedRun(run.path, name, config, history, read.bad_lines, status, report, read.describe())


def _write(path: Path, payload: bytes, option: str) -> None:
    if path.is_dir():
        raise UsageError(f"{path} is a folder; give a file name", option=option)
    try:
        atomic_write_bytes(path, payload, follow=True)  # a link is followed; a device or FIFO written as it is
    except OSError as err:
        raise UsageError(f"cannot write {path}: {err.strerror}", option=option) from None


def flatten_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """One metrics record with nested dicts and lists spread into flat columns ("param_norms.blocks/0")."""
    flat: dict[str, Any] = {}

    def spread(name: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, inner in value.items():
                spread(f"{name}.{key}", inner)
        elif isinstance(value, list | tuple):
            for index, inner in enumerate(value):
                spread(f"{name}.{index}", inner)
        else:
            flat[name] = value

    for key, value in record.items():
        spread(str(key), value)
    return flat


def flat_columns(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every flat column of `records`, in first-seen order, each kept beside its siblings of the same field."""
    by_field: dict[str, dict[str, None]] = {}
    for record in records:
        for key, value in record.items():
            columns = by_field.setdefault(str(key), {})
            for column in flatten_record({key: value}):
                columns.setdefault(column)
    return [column for columns in by_field.values() for column in columns]


def _require_records(run: LoadedRun, out: Path, option: str) -> None:
    if out.is_dir() and option != "--tensorboard":
        raise UsageError(f"{out} is a folder; give a file name", option=option)
    if not run.history:
        raise UsageError(f"{run.path} has no evaluations yet; nothing to export", option=option)


def export_csv(run: LoadedRun, out: Path) -> int:
    """Write the metrics as CSV, one row per evaluation and one number per cell; returns the row count.

    Nested fields are spread by `flatten_record`: dict keys are joined to their field with "." (keys kept as
    they are: `param_norms.blocks/0`), list items get their index (`key_frequencies.0`, `key_frequencies.1`, ...);
    a cell a record lacks (a shorter list) is empty, so pandas.read_csv reads every column as numbers (NaN there).
    """
    _require_records(run, out, "--csv")
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=flat_columns(run.history), lineterminator="\n")
    writer.writeheader()
    writer.writerows(flatten_record(record) for record in run.history)
    _write(out, text.getvalue().encode(), "--csv")
    return len(run.history)


def export_jsonl(run: LoadedRun, out: Path) -> int:
    """Write every metrics record, nested as in metrics.jsonl, as one JSON object per line; returns the count."""
    _require_records(run, out, "--jsonl")
    payload = "".join(json.dumps(record) + "\n" for record in run.history)
    _write(out, payload.encode(), "--jsonl")
    return len(run.history)


def export_tensorboard(run: LoadedRun, out: Path) -> int:
    """Write every numeric metric as a TensorBoard scalar (tensorboardX, the `tensorboard` extra); returns the count.

    Tags are the metric names of metrics.jsonl, nested ones flattened as in `export_csv` (`param_norms.blocks/0`);
    the record's step is the global step.
    """
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise UsageError(
            "TensorBoard export needs tensorboardX: pip install 'grokkit[tensorboard]'", option="--tensorboard"
        ) from None
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file; give a folder for the event files", option="--tensorboard")
    _require_records(run, out, "--tensorboard")
    count = 0
    try:
        out.mkdir(parents=True, exist_ok=True)
        # tensorboardX writes as it goes; it writes into a hidden folder, and each finished file is moved in atomically
        staging = Path(tempfile.mkdtemp(prefix=".tensorboard-", dir=out))
        try:
            with SummaryWriter(logdir=str(staging)) as writer:
                for record in run.history:
                    for tag, value in flatten_record(record).items():
                        if tag != "step" and isinstance(value, int | float):
                            writer.add_scalar(tag, value, global_step=record["step"])
                            count += 1
            # one fixed name per run, so exporting again replaces its events instead of doubling every point
            for index, written in enumerate(sorted(staging.iterdir())):
                suffix = f".{index}" if index else ""
                atomic_write_bytes(out / f"events.out.tfevents.grokkit.{run.name}{suffix}", written.read_bytes())
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except OSError as err:
        raise UsageError(f"cannot write {out}: {err.strerror}", option="--tensorboard") from None
    return count


def write_figure(run: LoadedRun, out: Path) -> None:
    """Accuracy and loss vs log step, milestones and the early-stopping point marked, norm on a twin axis."""
    plt = _pyplot()
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


@dataclass(frozen=True)
class SweepReport:
    path: Path
    spec: Any  # grokkit.sweep.SweepSpec
    members: list[dict[str, Any]]  # per member: name, grid values, status, the run report (None: no run yet)
    aggregates: list[dict[str, Any]]  # per grid point, seeds pooled

    def as_json(self) -> dict[str, Any]:
        axes = {k: [getattr(v, "value", v) for v in vs] for k, vs in self.spec.axes.items()}
        return {"sweep_dir": str(self.path), "axes": axes, "members": self.members, "aggregates": self.aggregates}


def load_sweep(path: Path, patience: int = DEFAULT_PATIENCE) -> SweepReport:
    """Every member run of a sweep folder that exists so far (all shards), analysed and pooled over seeds."""
    from grokkit.sweep import aggregate, open_sweep

    path, spec = open_sweep(path)
    members, reports = [], {}
    for member in spec.members():
        values = {k: getattr(v, "value", v) for k, v in member.values.items()}
        if not (path / member.name / "config.json").is_file():
            members.append({"name": member.name, "values": values, "status": "not started", "report": None})
            continue
        run = load_run(path / member.name, patience)
        reports[member.name] = run.report
        members.append({"name": member.name, "values": values, "status": run.status, "report": run.report})
    return SweepReport(path, spec, members, aggregate(spec, reports))


def write_sweep_figure(sweep: SweepReport, out: Path) -> None:
    """Time to grok against the swept hyperparameter (line with seed range) or two of them (heatmap)."""
    from grokkit.sweep import swept_point_keys

    plt = _pyplot()
    keys = swept_point_keys(sweep.spec)
    fig, ax = plt.subplots(figsize=(6.5, 4.5), constrained_layout=True)
    rows = sweep.aggregates
    if len(keys) == 2:
        xs, ys = sweep.spec.axes[keys[1]], sweep.spec.axes[keys[0]]
        grid = [[float("nan")] * len(xs) for _ in ys]
        for row in rows:
            value = row["generalized_median"]
            i = [getattr(v, "value", v) for v in ys].index(row["point"][keys[0]])
            j = [getattr(v, "value", v) for v in xs].index(row["point"][keys[1]])
            grid[i][j] = value if value is not None else float("nan")
            if value is None and row.get("generalized_median_above") is not None:  # censored: "> budget", no colour
                ax.text(j, i, f"> {row['generalized_median_above']:,.0f}", ha="center", va="center", fontsize=8)
        image = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis")
        ax.set_xticks(range(len(xs)), [str(getattr(v, "value", v)) for v in xs])
        ax.set_yticks(range(len(ys)), [str(getattr(v, "value", v)) for v in ys])
        ax.set_xlabel(keys[1])
        ax.set_ylabel(keys[0])
        fig.colorbar(image, ax=ax, label="median step to 99% validation accuracy (Kaplan–Meier)")
    else:
        key = keys[0] if keys else None
        done = [r for r in rows if r["generalized_median"] is not None]
        xs = [r["point"][key] if key else 0 for r in done]
        medians = [r["generalized_median"] for r in done]
        low = [m - r["generalized_min"] for m, r in zip(medians, done, strict=True)]
        high = [r["generalized_max"] - m for m, r in zip(medians, done, strict=True)]
        ax.errorbar(xs, medians, yerr=[low, high], marker="o", capsize=3)
        censored = [r for r in rows if r["generalized_median"] is None and r.get("generalized_median_above")]
        if censored:  # half or more of the seeds not there by the budget: the median lies above it
            ax.scatter([r["point"][key] if key else 0 for r in censored],
                       [r["generalized_median_above"] for r in censored], marker="^", color="tab:red",
                       label="median > budget (censored)")  # fmt: skip
            ax.legend(fontsize=8)
        ax.set_yscale("log")
        ax.set_xlabel(key or "")
        ax.set_ylabel("step to 99% validation accuracy (Kaplan–Meier median, seed range)")
    ax.set_title(f"{sweep.path.name}: time to grok")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=150)
    plt.close(fig)
    _write(out, buffer.getvalue(), "--png")


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("figures need matplotlib: pip install 'grokkit[plot]'", option="--png") from None
    return plt


def load_side(path: Path, label: str):
    """A run or a sweep folder as one side of `grokkit compare` (sweep members that have not started are skipped)."""
    from grokkit.comparison import Side
    from grokkit.sweep import SEED_KEYS, is_sweep, open_sweep, point_name

    if is_sweep(path):
        root, spec = open_sweep(path)
        members = [m for m in spec.members() if (root / m.name / "config.json").is_file()]
        if not members:
            raise UsageError(f"{path}: no member has started yet", option=label.upper())
        runs = [load_run(root / m.name) for m in members]
        points = [point_name({k: v for k, v in m.values.items() if k not in SEED_KEYS}) for m in members]
        name = f"{label} ({Path(path).name}, {len(runs)} runs)"
        return Side(name, [(r.config, r.history) for r in runs], True, points)
    run = load_run(path)
    return Side(f"{label} ({run.name})", [(run.config, run.history)], False)
