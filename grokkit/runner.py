"""Starting and resuming runs on disk: the Python API behind `grokkit train` and `grokkit resume`."""

from __future__ import annotations

import dataclasses
import os
import platform
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from grokkit import __version__
from grokkit.analysis import Ending, RunStatus, milestones
from grokkit.checkpoint import (
    CheckpointError,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    remove_temp_files,
    save_checkpoint,
)
from grokkit.config import Config
from grokkit.errors import StorageError, UsageError
from grokkit.jax_setup import configure_jax
from grokkit.rundir import RunDir, default_run_dir

Notify = Callable[[str], None]
OnEval = Callable[[dict[str, Any]], None]

FINISHED = frozenset({RunStatus.generalized, RunStatus.finished, RunStatus.diverged})
"""summary.json statuses of runs that ended on their own (Ending.status says which ending gives which)."""
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
    reason: Ending  # never diverged: that raises TrainingDiverged
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
            self.run.write_summary(build_summary(self.config, self.history, RunStatus.running))
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

    def on_finish(self, reason: Ending) -> None:
        self.run.write_summary(build_summary(self.config, self.history, reason.status))


ExtraSinks = Callable[[RunDir, Config, list[dict[str, Any]]], Sequence[Any]]
"""More places a run reports to (e.g. wandb), made once the run directory and its history are known."""


def no_extra_sinks(run: RunDir, config: Config, history: list[dict[str, Any]]) -> Sequence[Any]:
    return ()


class _Tee:
    """Reports to several sinks in order; the disk comes first, so what others see is already saved."""

    def __init__(self, sinks: list[Any]):
        self.sinks = sinks

    def on_eval(self, record: dict[str, Any]) -> None:
        for sink in self.sinks:
            sink.on_eval(record)

    def on_checkpoint(self, state: Any, elapsed_s: float) -> None:
        for sink in self.sinks:
            sink.on_checkpoint(state, elapsed_s)

    def on_finish(self, reason: Ending) -> None:
        for sink in self.sinks:
            sink.on_finish(reason)


def build_summary(config: Config, history: list[dict[str, Any]], status: RunStatus) -> dict[str, Any]:
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
    extra_sinks: ExtraSinks,
) -> RunResult:
    from grokkit.train import fit

    extra = list(extra_sinks(run, config, history))
    try:
        sink = _Tee([_DiskSink(run, config, history, on_eval), *extra])
        result = fit(exp, state, history, sink=sink, should_stop=stop, elapsed_before=elapsed_before)
    finally:
        for other in extra:
            getattr(other, "close", lambda: None)()
    return RunResult(run.path, result.reason, result.history, run.summary())


def start_run(
    config: Config,
    run_dir: Path | None = None,
    *,
    on_eval: OnEval | None = None,
    notify: Notify = lambda message: None,
    stop: StopRequest | None = None,
    extra_sinks: ExtraSinks = no_extra_sinks,
) -> RunResult:
    """Create a run directory for `config` and train it from step 0."""
    configure_jax()
    from grokkit.train import init_state, make_experiment

    exp = make_experiment(config)
    run = RunDir.create(Path(run_dir) if run_dir else default_run_dir(config), config, current_env(), exp.split)
    notify(f"run directory: {run.path}")
    with run.lock():
        return _fit_and_record(run, config, exp, init_state(exp), [], on_eval, stop or StopRequest(), 0.0, extra_sinks)


def _check_env(run: RunDir, force: bool, notify: Notify) -> None:
    differences = env_differences(run.env(), current_env())
    if differences:
        message = f"environment differs from {run.path.name}/env.json: " + "; ".join(differences)
        if not force:
            raise UsageError(message + " (numbers may not match the original run; pass --force to resume anyway)")
        notify(message + " (--force: resuming anyway)")


def _restore(run: RunDir, config: Config, notify: Notify):
    """A locked run's experiment, newest valid checkpoint (or a fresh state), history trimmed to it, elapsed time."""
    from grokkit.train import (
        abstract_state,
        init_state,
        make_experiment,
        state_from_arrays,
        with_config_hyperparameters,
    )

    for leftover in remove_temp_files(run.checkpoints) + remove_temp_files(run.path):
        notify(f"removed {leftover.name}, left by an interrupted write")
    exp = make_experiment(config, split=run.split())
    state, elapsed = None, 0.0
    template = abstract_state(exp)
    for info in reversed(list_checkpoints(run.checkpoints)):
        try:
            arrays, meta = load_checkpoint(info)
            state = with_config_hyperparameters(state_from_arrays(template, arrays), config)
            elapsed = float(meta.get("elapsed_s", 0.0))
            break
        except (CheckpointError, ValueError) as err:
            notify(f"checkpoint {info.path.name} failed to load ({err}); falling back to the previous one")
    if state is None:
        notify(f"{run.path.name}: no valid checkpoint: starting again from step 0")
        state = init_state(exp)
    step = int(state.step)
    if config.train.steps < step:
        raise UsageError(f"the run is already at step {step}; pass a total of at least {step}", option="--steps")
    read = run.read_metrics()
    if read.bad_lines:
        notify(f"{run.path.name}/metrics.jsonl: skipped unreadable line(s) {read.bad_lines}")
    history = [r for r in read.records if r["step"] <= step]
    run.rewrite_metrics(history)
    run.save_config(config)
    return exp, state, history, elapsed


def nothing_to_resume(run: RunDir, config: Config) -> str | None:
    """Why resuming `run` under `config` (its budget and early-exit rule) would train no step, or None."""
    summary = run.summary()
    status, step = summary.get("status"), int(summary.get("step", 0) or 0)
    if status == RunStatus.diverged:
        return f"it diverged at step {step:,}; start a new run with a lower learning rate"
    if status == RunStatus.generalized and config.train.early_exit:
        return f"it exited early at step {step:,} with validation accuracy held >= 99%; --no-early-exit trains on"
    if status in FINISHED and step >= config.train.steps:
        return f"its budget of {config.train.steps:,} steps is spent; --steps N (N > {step:,}) trains further"
    return None


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
    extra_sinks: ExtraSinks = no_extra_sinks,
) -> RunResult:
    """Continue a run from its newest valid checkpoint (or from step 0 if it has none)."""
    run = RunDir.open(run_dir)
    config = run.config()
    train_cfg = config.train
    if steps is not None:
        train_cfg = dataclasses.replace(train_cfg, steps=steps)
    if early_exit is not None:
        train_cfg = dataclasses.replace(train_cfg, early_exit=early_exit)
    if train_cfg.steps < 1:
        raise UsageError(f"must be >= 1, got {train_cfg.steps}", option="--steps")
    config = dataclasses.replace(config, train=train_cfg)
    configure_jax()
    _check_env(run, force, notify)
    with run.lock():
        exp, state, history, elapsed = _restore(run, config, notify)
        on_history(history)
        notify(f"resuming {run.path} from step {int(state.step):,} of {config.train.steps:,}")
        return _fit_and_record(run, config, exp, state, history, on_eval, stop or StopRequest(), elapsed, extra_sinks)


OnGroup = Callable[[int, int, int, int, list], None]


class SweepSkip(StrEnum):
    """Why a sweep member was not trained by this invocation."""

    done_before = "done before"


@dataclass
class SweepResult:
    sweep_dir: Path
    reasons: dict[str, Ending | SweepSkip]  # member name -> how its training ended, or why it did not train
    groups: int
    elapsed_s: float

    @property
    def interrupted(self) -> bool:
        return Ending.interrupted in self.reasons.values()


def start_sweep(
    spec,
    sweep_dir: Path,
    *,
    shard: tuple[int, int] = (0, 1),
    notify: Notify = lambda message: None,
    on_group: OnGroup = lambda group, groups, step, steps, lanes: None,
    stop: StopRequest | None = None,
) -> SweepResult:
    """Create the sweep folder (or join it, for another shard) and train this shard's members."""
    from grokkit.sweep import create_sweep_dir

    configure_jax()
    create_sweep_dir(sweep_dir, spec)
    return _run_sweep(Path(sweep_dir), spec, shard, notify, on_group, stop or StopRequest(), force=False)


def resume_sweep(
    sweep_dir: Path,
    *,
    shard: tuple[int, int] = (0, 1),
    force: bool = False,
    notify: Notify = lambda message: None,
    on_group: OnGroup = lambda group, groups, step, steps, lanes: None,
    stop: StopRequest | None = None,
    steps: int | None = None,
) -> SweepResult:
    """Continue every unfinished member of a sweep (of this shard); `steps` extends every member's budget."""
    from grokkit.sweep import extend_sweep, open_sweep

    path, spec = open_sweep(sweep_dir)
    if steps is not None:
        spec = extend_sweep(path, spec, steps)
    configure_jax()
    return _run_sweep(path, spec, shard, notify, on_group, stop or StopRequest(), force=force, steps=steps)


def _run_sweep(
    path: Path, spec, shard, notify: Notify, on_group: OnGroup, stop: StopRequest, force: bool, steps: int | None = None
):
    from contextlib import ExitStack

    from grokkit.group import Member, group_key, train_group
    from grokkit.sweep import shard_members
    from grokkit.train import Lane, make_experiment, make_init_fn

    start = time.perf_counter()
    reasons: dict[str, Ending | SweepSkip] = {}
    groups: dict[tuple[str, int], list] = {}  # by (group key, step): members that train in one program
    init_fns: dict[str, Any] = {}  # one compiled initializer per group key
    env = current_env()
    with ExitStack() as locks:
        for grid_member in shard_members(spec.members(), shard):
            member_path = path / grid_member.name
            if (member_path / "config.json").exists():
                run = RunDir.open(member_path)
                config = run.config()
                if steps is not None:
                    config = dataclasses.replace(config, train=dataclasses.replace(config.train, steps=steps))
                if nothing_to_resume(run, config) is not None:
                    reasons[grid_member.name] = SweepSkip.done_before
                    continue
                _check_env(run, force, notify)
                locks.enter_context(run.lock())
                exp, state, history, elapsed = _restore(run, config, notify)
            else:
                config = grid_member.config
                exp = make_experiment(config)
                run = RunDir.create(member_path, config, env, exp.split, link_latest=False)
                locks.enter_context(run.lock())
                key = group_key(config)
                init_fns.setdefault(key, make_init_fn(exp))
                state, history, elapsed = init_fns[key](config), [], 0.0
            step = int(state.step)
            lane = Lane(_DiskSink(run, config, history, None), list(history), step, elapsed,
                        last_saved=step if step > 0 else None)  # fmt: skip
            groups.setdefault((group_key(config), step), []).append((run, config, Member(exp, state, lane)))
        if groups:
            count = sum(len(members) for members in groups.values())
            notify(f"{count} member(s) in {len(groups)} group(s) of one compiled program each")
        for index, members in enumerate(groups.values()):
            steps = members[0][1].train.steps
            everyone = [m.lane for _, _, m in members]

            def on_chunk(step, _active, index=index, steps=steps, everyone=everyone):
                on_group(index, len(groups), step, steps, everyone)

            try:
                train_group([m for _, _, m in members], should_stop=stop, on_chunk=on_chunk)
            finally:
                for run, _, member in members:
                    if member.lane.reason is not None:
                        reasons[run.path.name] = member.lane.reason
                    if member.lane.reason == Ending.diverged:
                        notify(f"{run.path.name}: {member.lane.error}")
            on_group(index, len(groups), max(lane.step for lane in everyone), steps, everyone)
            if stop():
                for later in list(groups.values())[index + 1 :]:
                    reasons.update({run.path.name: Ending.interrupted for run, _, _ in later})
                break
    return SweepResult(path, reasons, len(groups), time.perf_counter() - start)
