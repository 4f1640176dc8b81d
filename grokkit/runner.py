"""Starting and resuming runs on disk: the Python API behind `grokkit train` and `grokkit resume`."""

from __future__ import annotations

import dataclasses
import os
import platform
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grokkit import __version__
from grokkit.analysis import milestones
from grokkit.checkpoint import (
    CheckpointError,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    remove_temp_files,
    save_checkpoint,
)
from grokkit.config import Config
from grokkit.errors import StorageError, TrainingDiverged, UsageError
from grokkit.jax_setup import configure_jax
from grokkit.rundir import RunDir, default_run_dir

Notify = Callable[[str], None]
OnEval = Callable[[dict[str, Any]], None]

ENV_KEYS_THAT_MATTER = ("jax", "jaxlib", "flax", "optax", "numpy", "backend", "device_count")


def current_env() -> dict[str, Any]:
    """Versions and devices that a run's numbers depend on."""
    import flax
    import jax
    import jaxlib
    import numpy
    import optax

    devices = jax.devices()
    return {
        "grokkit": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "numpy": numpy.__version__,
        "backend": jax.default_backend(),
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def env_differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Human-readable differences in the environment keys that can change a run's numbers."""
    return [
        f"{key} {saved.get(key)} -> {now.get(key)}"
        for key in ENV_KEYS_THAT_MATTER
        if key in saved and saved.get(key) != now.get(key)
    ]


@dataclass
class RunResult:
    run_dir: Path
    reason: str  # "budget", "early-exit", "interrupted"
    history: list[dict[str, Any]]
    summary: dict[str, Any]


class StopRequest:
    """Set by SIGINT/SIGTERM; the loop checks it between chunks, then saves and returns."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __call__(self) -> bool:
        return self.signal is not None

    @contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """Catch the first SIGINT/SIGTERM gracefully; a second SIGINT interrupts at once."""

        def handler(signum, _frame):
            self.signal = signum
            signal.signal(signal.SIGINT, signal.default_int_handler)

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


class _DiskSink:
    """Writes metrics, checkpoints and the summary of a run as the loop reports them."""

    def __init__(self, run: RunDir, config: Config, history: list[dict[str, Any]], on_eval: OnEval | None):
        self.run, self.config, self.history, self.callback = run, config, list(history), on_eval

    def on_eval(self, record: dict[str, Any]) -> None:
        try:
            self.run.append_metrics(record)
            self.history.append(record)
            self.run.write_summary(build_summary(self.config, self.history, "running"))
        except OSError as err:
            raise StorageError(
                f"cannot write metrics in {self.run.path}: {err.strerror}; checkpoints are intact. "
                f"Free space or fix permissions, then run: grokkit resume {self.run.path}"
            ) from None
        if self.callback:
            self.callback(record)

    def on_checkpoint(self, state, elapsed_s: float) -> None:
        from grokkit.train import state_to_arrays

        step = int(state.step)
        try:
            save_checkpoint(self.run.checkpoints, step, state_to_arrays(state), {"elapsed_s": round(elapsed_s, 3)})
        except OSError as err:
            raise StorageError(
                f"cannot write the checkpoint for step {step} in {self.run.checkpoints}: {err.strerror}; "
                "earlier checkpoints are intact. Free space or fix permissions, then run: "
                f"grokkit resume {self.run.path}"
            ) from None
        prune_checkpoints(self.run.checkpoints, self.config.train.keep_checkpoints)


def build_summary(config: Config, history: list[dict[str, Any]], status: str) -> dict[str, Any]:
    last = history[-1] if history else {}
    return {
        "status": status,
        "task": config.data.task,
        "p": config.data.p,
        "step": last.get("step", 0),
        "steps": config.train.steps,
        **milestones(history),
        "final": last,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _fit_and_record(
    run: RunDir,
    config: Config,
    exp,
    state,
    history: list[dict[str, Any]],
    on_eval: OnEval | None,
    stop: StopRequest,
    elapsed_before: float,
) -> RunResult:
    from grokkit.train import fit

    sink = _DiskSink(run, config, history, on_eval)
    try:
        result = fit(exp, state, history, sink=sink, should_stop=stop, elapsed_before=elapsed_before)
    except TrainingDiverged:
        run.write_summary(build_summary(config, sink.history, "diverged"))
        raise
    status = {"budget": "finished", "early-exit": "generalized", "interrupted": "interrupted"}[result.reason]
    summary = build_summary(config, result.history, status)
    run.write_summary(summary)
    return RunResult(run.path, result.reason, result.history, summary)


def start_run(
    config: Config,
    run_dir: Path | None = None,
    *,
    on_eval: OnEval | None = None,
    notify: Notify = lambda message: None,
    stop: StopRequest | None = None,
) -> RunResult:
    """Create a run directory for `config` and train it from step 0."""
    configure_jax()
    from grokkit.train import init_state, make_experiment

    exp = make_experiment(config)
    run = RunDir.create(Path(run_dir) if run_dir else default_run_dir(config), config, current_env(), exp.split)
    notify(f"run directory: {run.path}")
    with run.lock():
        return _fit_and_record(run, config, exp, init_state(exp), [], on_eval, stop or StopRequest(), 0.0)


def resume_run(
    run_dir: Path,
    *,
    steps: int | None = None,
    early_exit: bool | None = None,
    force: bool = False,
    on_eval: OnEval | None = None,
    notify: Notify = lambda message: None,
    stop: StopRequest | None = None,
    on_history: Callable[[list[dict[str, Any]]], None] = lambda history: None,
) -> RunResult:
    """Continue a run from its newest valid checkpoint (or from step 0 if it has none)."""
    run = RunDir.open(run_dir)
    config = run.config()
    overrides = {"steps": steps, "early_exit": early_exit}
    train_cfg = dataclasses.replace(config.train, **{k: v for k, v in overrides.items() if v is not None})
    if train_cfg.steps < 1:
        raise UsageError(f"must be >= 1, got {train_cfg.steps}", option="--steps")
    config = dataclasses.replace(config, train=train_cfg)
    configure_jax()
    differences = env_differences(run.env(), current_env())
    if differences:
        message = "environment differs from env.json: " + "; ".join(differences)
        if not force:
            raise UsageError(message + " (numbers may not match the original run; pass --force to resume anyway)")
        notify(message + " (--force: resuming anyway)")
    from grokkit.train import abstract_state, init_state, make_experiment, state_from_arrays

    with run.lock():
        for leftover in remove_temp_files(run.checkpoints) + remove_temp_files(run.path):
            notify(f"removed {leftover.name}, left by an interrupted write")
        exp = make_experiment(config, split=run.split())
        state, elapsed = None, 0.0
        template = abstract_state(exp)
        for info in reversed(list_checkpoints(run.checkpoints)):
            try:
                arrays, meta = load_checkpoint(info)
                state = state_from_arrays(template, arrays)
                elapsed = float(meta.get("elapsed_s", 0.0))
                break
            except (CheckpointError, ValueError) as err:
                notify(f"checkpoint {info.path.name} failed to load ({err}); falling back to the previous one")
        if state is None:
            notify("no valid checkpoint: starting again from step 0")
            state = init_state(exp)
        step = int(state.step)
        if config.train.steps < step:
            raise UsageError(f"the run is already at step {step}; pass a total of at least {step}", option="--steps")
        read = run.read_metrics()
        if read.bad_lines:
            notify(f"metrics.jsonl: skipped unreadable line(s) {read.bad_lines}")
        history = [r for r in read.records if r["step"] <= step]
        run.rewrite_metrics(history)
        run.save_config(config)
        on_history(history)
        notify(f"resuming {run.path} from step {step:,} of {config.train.steps:,}")
        return _fit_and_record(run, config, exp, state, history, on_eval, stop or StopRequest(), elapsed)
