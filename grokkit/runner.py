"""Starting and resuming runs on disk: the Python API behind `grokkit train` and `grokkit resume`."""

from __future__ import annotations

import dataclasses
import errno
import os
import platform
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from grokkit import __version__
from grokkit.analysis import Ending, RunStatus, milestones
from grokkit.checkpoint import (
    CheckpointError,
    CheckpointInfo,
    hyperparameter_changes,
    identity_meta,
    identity_mismatch,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    read_sidecar,
    remove_temp_files,
    save_checkpoint,
)
from grokkit.config import Config, option_name
from grokkit.errors import StorageError, UsageError
from grokkit.jax_setup import configure_jax, one_device_per_core
from grokkit.rundir import RunDir, default_run_dir, point_latest

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
    """Human-readable differences in the environment keys that can change a run's numbers. The device count
    cannot on a CPU: there a run, and each sweep member, trains on one device whatever the count
    (`grokkit.group.vectorize_members`), and a sweep makes one device per core (`jax_setup.one_device_per_core`)."""
    on_cpu = saved.get("backend") == now.get("backend") == "cpu"
    return [
        f"{key} {saved.get(key)} -> {now.get(key)}"
        for key in ENV_KEYS_THAT_MATTER
        if key in saved and saved.get(key) != now.get(key) and not (on_cpu and key == "device_count")
    ]


@dataclass
class RunResult:
    run_dir: Path
    reason: Ending  # never diverged: that raises TrainingDiverged
    history: list[dict[str, Any]]
    summary: dict[str, Any]


STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def _say(message: str) -> None:
    """One line on stderr from a signal handler: a raw write, so it never re-enters a half-done print."""
    with suppress(OSError):  # stderr closed or its terminal gone
        os.write(2, f"\n{message}\n".encode())


def _is_terminal(fd: int) -> bool:
    """A terminal, live or hung up (a hung-up terminal answers EIO rather than ENOTTY)."""
    import termios

    try:
        termios.tcgetattr(fd)
        return True
    except termios.error as err:
        return bool(err.args) and err.args[0] == errno.EIO
    except OSError:
        return False


def _detach_from_terminal() -> None:
    """After SIGHUP: send what stdout and stderr still print to /dev/null where they were the (closed) terminal."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    for fd in (1, 2):
        if _is_terminal(fd):
            with suppress(OSError):
                os.dup2(null, fd)
    os.close(null)


class StopRequest:
    """Set by SIGINT, SIGTERM or SIGHUP; the loop checks it between chunks, then saves and returns.

    Only the first signal counts. Later ones (a second Ctrl-C while the checkpoint is being
    written, say) are acknowledged on stderr and change nothing, so a run, and every member of a
    sweep, stops at a consistent point: a complete checkpoint at the step it stopped and its summary
    `interrupted`. SIGHUP (the terminal closed) also drops further output to that terminal.
    `kill -9` still quits at once; the newest complete checkpoint stays valid.
    """

    def __init__(self) -> None:
        self.signal: int | None = None
        self.repeats = 0  # signals after the first

    def __call__(self) -> bool:
        return self.signal is not None

    def _handle(self, signum: int, _frame: Any) -> None:
        if signum == getattr(signal, "SIGHUP", None):
            _detach_from_terminal()
        name = signal.Signals(signum).name
        if self.signal is None:
            self.signal = signum
            _say(f"{name}: stopping after the current chunk, then saving a checkpoint")
        else:
            self.repeats += 1
            _say(
                f"{name} again: already stopping; the checkpoint is being saved so the run stays resumable. "
                f"Wait a moment (kill -9 {os.getpid()} quits at once: the newest complete checkpoint stays valid)"
            )

    @contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """Turn SIGINT, SIGTERM and SIGHUP into a stop request while the block runs."""
        previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
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
            meta = {"elapsed_s": round(elapsed_s, 3), **identity_meta(self.config)}
            save_checkpoint(self.run.checkpoints, step, state_to_arrays(state), meta)
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
    extra: list[Any],
) -> RunResult:
    from grokkit.train import fit

    sink = _Tee([_DiskSink(run, config, history, on_eval), *extra])
    result = fit(exp, state, history, sink=sink, should_stop=stop, elapsed_before=elapsed_before)
    return RunResult(run.path, result.reason, result.history, run.summary())


@contextmanager
def _closing(extra: list[Any]) -> Iterator[list[Any]]:
    """Close the extra sinks however training ends (wandb marks a run that ends without on_finish as failed)."""
    try:
        yield extra
    finally:
        for other in extra:
            getattr(other, "close", lambda: None)()


def _start_sinks_in_new_run(
    extra_sinks: ExtraSinks, run: RunDir, config: Config, history: list[dict[str, Any]], made_folder: bool
) -> list[Any]:
    """Start the extra sinks of a run just created; if one cannot start (wandb not logged in), take the run
    back out again (the folder too, where the run made it) so the same command can simply be run again."""
    import shutil

    try:
        return list(extra_sinks(run, config, history))
    except BaseException:
        if made_folder:
            shutil.rmtree(run.path, ignore_errors=True)
        else:  # a folder the user made beforehand (it was empty): emptied again
            for entry in list(run.path.iterdir()):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
        raise


def start_run(
    config: Config,
    run_dir: Path | None = None,
    *,
    on_eval: OnEval | None = None,
    notify: Notify = lambda message: None,
    stop: StopRequest | None = None,
    extra_sinks: ExtraSinks = no_extra_sinks,
) -> RunResult:
    """Create a run directory for `config` and train it from step 0 (or, with --init-from and
    --init-optimizer, from the source checkpoint's step; see grokkit.lineage)."""
    configure_jax()
    from grokkit.lineage import initial_state, pin_sources, write_noise_file
    from grokkit.train import make_experiment

    config = pin_sources(config)
    exp = make_experiment(config)
    state = initial_state(exp)
    path = Path(run_dir) if run_dir else default_run_dir(config)
    made_folder = not path.is_dir()
    run = RunDir.create(path, config, current_env(), exp.split, link_latest=False, notify=notify)
    extra = _start_sinks_in_new_run(extra_sinks, run, config, [], made_folder)
    if why := point_latest(run.path):  # only once the run is sure to start
        notify(why)
    notify(f"run directory: {run.path}")
    with _closing(extra), run.lock():
        write_noise_file(run.path, exp)
        sink = _DiskSink(run, config, [], None)
        if config.train.init_from or config.optim.mask_from:  # from now on the run starts from its own checkpoints
            sink.on_checkpoint(state, 0.0)
        return _fit_and_record(run, config, exp, state, [], on_eval, stop or StopRequest(), 0.0, extra)


def _check_env(run: RunDir, force: bool, notify: Notify) -> None:
    try:
        saved = run.env()
    except UsageError:
        if not force:
            raise
        notify(f"{run.path.name}/env.json is damaged (--force: resuming without the environment check)")
        return
    differences = env_differences(saved, current_env())
    if differences:
        message = f"environment differs from {run.path.name}/env.json: " + "; ".join(differences)
        if not force:
            raise UsageError(message + " (numbers may not match the original run; pass --force to resume anyway)")
        notify(message + " (--force: resuming anyway)")


RESTART_HINT = "'grokkit resume --restart' starts over from step 0 with the old files moved aside"


@dataclass
class _Plan:
    """What resuming a run starts from, decided by reading its folder without changing anything."""

    exp: Any
    state: Any  # None: no checkpoint was ever completed, so training starts from step 0
    history: list[dict[str, Any]]
    elapsed: float
    messages: list[str]


def _plan_restore(run: RunDir, config: Config) -> _Plan:
    """Read and check everything a resume needs; refuse (UsageError, nothing changed) rather than lose progress.

    The newest checkpoint that loads is used (a damaged newer one is named and skipped). A checkpoint
    made for another config (config.json edited, or one copied in from another run) is refused by name.
    Starting from step 0 is allowed only when no checkpoint was ever completed.
    """
    from grokkit.train import abstract_state, make_experiment, state_from_arrays, with_config_hyperparameters

    folder = run.checkpoints
    if folder.exists() and not folder.is_dir():
        raise UsageError(
            f"{folder} is not a folder, so the run's checkpoints cannot be read; put the checkpoints folder back, "
            f"or {RESTART_HINT}",
            option="RUN_DIR",
        )
    infos = list_checkpoints(folder)
    for info in reversed(infos):  # any foreign checkpoint is refused, not only the one that would be loaded
        try:
            meta = read_sidecar(info)
        except CheckpointError:
            continue
        mismatch = identity_mismatch(meta, config)
        if mismatch:
            raise UsageError(
                f"{info.path} is not this run's checkpoint ({mismatch}): config.json was edited after training "
                f"began or the checkpoint comes from another run; restore config.json or move the checkpoint out, "
                f"or {RESTART_HINT}",
                option="RUN_DIR",
            )
    exp = make_experiment(config, split=run.split())
    read = run.read_metrics()
    torn = [read.bad_lines[-1]] if read.torn_last else []
    damaged = [number for number in read.bad_lines if number not in torn]
    if damaged:
        raise UsageError(
            f"{run.metrics_path} line {damaged[0]}: {read.problems[damaged[0]]} (bad lines: {damaged}); resume "
            "rewrites metrics.jsonl and would drop them: fix or delete those lines first",
            option="RUN_DIR",
        )
    messages = [f"{run.path.name}/metrics.jsonl: skipped unreadable line(s) {torn} (cut short)"] if torn else []
    template = abstract_state(exp)
    failures: list[str] = []
    for info in reversed(infos):
        try:
            arrays, meta = load_checkpoint(info)
            state = state_from_arrays(template, arrays)
            if int(state.step) != info.step:
                raise ValueError(f"its step array says {int(state.step)}")
        except (CheckpointError, ValueError) as err:
            failures.append(str(err) if isinstance(err, CheckpointError) else f"{info.path.name}: {err}")
            messages.append(f"checkpoint {info.path.name} failed to load ({err}); falling back to the previous one")
            continue
        if "config_hash" not in meta:
            messages.append(
                f"checkpoint {info.path.name} predates run identities in checkpoints; accepted because its arrays "
                "have the shapes config.json gives"
            )
        changes = hyperparameter_changes(meta, config)
        if changes:
            messages.append(f"config.json changes {changes} from step {info.step:,} on")
        step = info.step
        if config.train.steps < step:
            raise UsageError(
                f"the run is already at step {step}; pass a total of at least {step}", option=option_name("train.steps")
            )
        state = with_config_hyperparameters(state, config)
        history = [r for r in read.records if r["step"] <= step]
        return _Plan(exp, state, history, float(meta.get("elapsed_s", 0.0)), messages)
    lost = _progress_without_checkpoint(run, config, infos, read.records)
    if lost:
        tried = "; ".join(failures) if failures else "none found"
        raise UsageError(
            f"{run.path}: no checkpoint can be loaded ({tried}), yet {lost}: starting from step 0 would overwrite "
            f"that progress. Restore the checkpoints (each .npz with its .json sidecar), or {RESTART_HINT}",
            option="RUN_DIR",
        )
    messages.append(f"{run.path.name}: no checkpoint was completed yet: starting again from step 0")
    return _Plan(exp, None, [], 0.0, messages)


def _progress_without_checkpoint(
    run: RunDir, config: Config, infos: list[CheckpointInfo], records: list[dict[str, Any]]
) -> str:
    """Evidence that the run once completed a checkpoint that no longer loads ("" if it never did).

    A run stopped before its first checkpoint has no sidecar at all, at most the one `.npz` whose
    sidecar a kill prevented (at or before the first checkpoint step), and no metrics past that step.
    """
    first = config.train.checkpoint_every
    reached = max((r["step"] for r in records), default=0)
    sidecars = sorted(run.checkpoints.glob("step_*.json")) if run.checkpoints.is_dir() else []
    if sidecars:
        return f"{len(sidecars)} checkpoint sidecar(s) show completed checkpoints"
    if len(infos) > 1:
        return f"{len(infos)} checkpoint files show completed checkpoints"
    if infos and (infos[0].step < reached or infos[0].step > first):
        return f"{infos[0].path.name} lost its sidecar after the run had moved past it"
    if reached > first:
        return f"metrics.jsonl reaches step {reached:,}, past the first checkpoint (step {first:,})"
    return ""


def _restore(run: RunDir, config: Config, notify: Notify):
    """A locked run's experiment, newest valid checkpoint (or a fresh state), history trimmed to it, elapsed time."""
    from grokkit.lineage import initial_state

    plan = _plan_restore(run, config)
    for message in plan.messages:
        notify(message)
    try:
        for leftover in remove_temp_files(run.checkpoints) + remove_temp_files(run.path):
            notify(f"removed {leftover.name}, left by an interrupted write")
        if plan.state is None:
            run.checkpoints.mkdir(exist_ok=True)
        run.rewrite_metrics(plan.history)
        run.save_config(config)
    except OSError as err:
        raise StorageError(f"cannot write in {run.path}: {err.strerror}; make the run folder writable") from None
    state = initial_state(plan.exp) if plan.state is None else plan.state
    return plan.exp, state, plan.history, plan.elapsed


def _config_describes_checkpoints(run: RunDir, config: Config) -> bool:
    """Whether every readable checkpoint sidecar of the run was made under `config`'s identity."""
    for info in list_checkpoints(run.checkpoints):
        try:
            if identity_mismatch(read_sidecar(info), config):
                return False
        except CheckpointError:
            continue
    return True


ASIDE = "previous-"
"""--restart moves a run's old progress into RUN/previous-<time>/."""


def _start_over(run: RunDir, config: Config, notify: Notify):
    """`resume --restart`: move checkpoints, metrics, summary, split, env and label noise aside; train from step 0."""
    import io
    import shutil

    import numpy as np

    from grokkit.atomic import atomic_write_bytes, atomic_write_json
    from grokkit.lineage import NOISE_FILE, initial_state, write_noise_file
    from grokkit.train import make_experiment

    exp = make_experiment(config)  # the split config.json gives (the old split.npz is kept aside)
    state = initial_state(exp)  # before anything moves: a source that is gone is refused with nothing changed
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside, suffix = run.path / f"{ASIDE}{stamp}", 1
    while aside.exists() or aside.is_symlink():
        suffix += 1
        aside = run.path / f"{ASIDE}{stamp}-{suffix}"
    moved = []
    try:
        aside.mkdir()
        if _config_describes_checkpoints(run, config):  # then the folder aside is a run report can read
            shutil.copy2(run.path / "config.json", aside / "config.json")
        for name in ("checkpoints", "metrics.jsonl", "summary.json", "split.npz", "env.json", NOISE_FILE):
            source = run.path / name
            if source.exists() or source.is_symlink():
                os.rename(source, aside / name)
                moved.append(name)
        buffer = io.BytesIO()
        np.savez(buffer, train_idx=exp.split.train_idx, val_idx=exp.split.val_idx)
        atomic_write_bytes(run.path / "split.npz", buffer.getvalue())
        atomic_write_json(run.path / "env.json", current_env())
        write_noise_file(run.path, exp)  # config.json's label noise (none: no file)
        run.checkpoints.mkdir()
        run.rewrite_metrics([])
        run.save_config(config)
    except OSError as err:
        raise StorageError(
            f"cannot start {run.path} over ({err.strerror}); what was moved so far is in {aside}"
        ) from None
    notify(f"--restart: moved {', '.join(moved) or 'nothing'} to {aside}; starting again from step 0")
    if config.train.init_from or config.optim.mask_from:  # as in start_run: its own first checkpoint
        _DiskSink(run, config, [], None).on_checkpoint(state, 0.0)
    return exp, state, [], 0.0


def _newest_loadable_step(run: RunDir) -> int | None:
    for info in reversed(list_checkpoints(run.checkpoints)):
        try:
            load_checkpoint(info)
        except (CheckpointError, ValueError):
            continue
        return info.step
    return None


def nothing_to_resume(run: RunDir, config: Config) -> str | None:
    """Why resuming `run` under `config` (its budget and early-exit rule) would train no step, or None."""
    summary = run.summary()
    status, step = summary.get("status"), int(summary.get("step", 0) or 0)
    if status == RunStatus.diverged:
        return f"it diverged at step {step:,}; start a new run with a lower learning rate"
    if _newest_loadable_step(run) != step:
        return None  # its last checkpoint is damaged or missing: resuming redoes those steps
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
    restart: bool = False,
    on_eval: OnEval | None = None,
    notify: Notify = lambda message: None,
    stop: StopRequest | None = None,
    on_history: Callable[[list[dict[str, Any]]], None] = lambda history: None,
    extra_sinks: ExtraSinks = no_extra_sinks,
) -> RunResult:
    """Continue a run from its newest valid checkpoint (or from step 0 if it never completed one).

    Whatever keeps the run's progress from being restored (checkpoints that do not load, a checkpoint of
    another config, damaged files) is refused with one line and nothing changed; `restart` starts over
    from step 0 instead, with the old checkpoints, metrics, summary, split and env moved to RUN/previous-<time>/.
    """
    run = RunDir.open(run_dir)
    config = run.config()
    train_cfg = config.train
    if steps is not None:
        train_cfg = dataclasses.replace(train_cfg, steps=steps)
    if early_exit is not None:
        train_cfg = dataclasses.replace(train_cfg, early_exit=early_exit)
    if train_cfg.steps < 1:
        raise UsageError(f"must be >= 1, got {train_cfg.steps}", option=option_name("train.steps"))
    config = dataclasses.replace(config, train=train_cfg)
    configure_jax()
    before: list[dict[str, Any]] = []  # the history the run continues from (--restart: none)
    if not restart:
        _check_env(run, force, notify)
        run.refuse_if_in_use()  # a run being trained changes under a reader: the owner is the news
        before = _plan_restore(run, config).history  # refuse before touching anything, the lock file included
    extra = list(extra_sinks(run, config, before))  # before anything changes: a sink that cannot start changes nothing
    with _closing(extra), run.lock():
        exp, state, history, elapsed = (_start_over if restart else _restore)(run, config, notify)
        on_history(history)
        notify(f"resuming {run.path} from step {int(state.step):,} of {config.train.steps:,}")
        return _fit_and_record(run, config, exp, state, history, on_eval, stop or StopRequest(), elapsed, extra)


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
    extra_sinks: ExtraSinks = no_extra_sinks,
) -> SweepResult:
    """Create the sweep folder (or join it, for another shard) and train this shard's members."""
    from grokkit.sweep import create_sweep_dir, shard_members

    one_device_per_core(len(shard_members(spec.members(), shard)))
    configure_jax()
    _check_member_sources(spec)
    create_sweep_dir(sweep_dir, spec, notify)
    _refuse_before_writing(Path(sweep_dir), spec, shard, force=False, steps=None)
    return _run_sweep(
        Path(sweep_dir), spec, shard, notify, on_group, stop or StopRequest(), force=False, extra_sinks=extra_sinks
    )


def _check_member_sources(spec) -> None:
    """Check every member's --init-from/--mask-from (another seed or data seed per member, say) before the sweep
    folder is made, so a member the source does not fit is refused up front rather than after others started."""
    from grokkit.lineage import Source, pin_sources

    members = spec.members()
    cache: dict[tuple[str, bool], Source] = {}  # each source run read once
    for grid_member in members:
        try:
            pin_sources(grid_member.config, cache)
        except UsageError as err:
            if len(members) == 1:
                raise
            message = str(err).removeprefix(f"{err.option}: ") if err.option else str(err)
            raise UsageError(f"sweep member {grid_member.name}: {message}", option=err.option) from None


def resume_sweep(
    sweep_dir: Path,
    *,
    shard: tuple[int, int] = (0, 1),
    force: bool = False,
    notify: Notify = lambda message: None,
    on_group: OnGroup = lambda group, groups, step, steps, lanes: None,
    stop: StopRequest | None = None,
    steps: int | None = None,
    extra_sinks: ExtraSinks = no_extra_sinks,
) -> SweepResult:
    """Continue every unfinished member of a sweep (of this shard); `steps` extends every member's budget."""
    from grokkit.sweep import extend_sweep, open_sweep, shard_members

    path, spec = open_sweep(sweep_dir)
    one_device_per_core(len(shard_members(spec.members(), shard)))
    configure_jax()
    _refuse_before_writing(path, spec, shard, force=force, steps=steps)
    if steps is not None:
        spec = extend_sweep(path, spec, steps)
    return _run_sweep(
        path, spec, shard, notify, on_group, stop or StopRequest(), force=force, steps=steps, extra_sinks=extra_sinks
    )


def _refuse_before_writing(path: Path, spec, shard: tuple[int, int], force: bool, steps: int | None) -> None:
    """Raise, before any member is created or restored, what `_run_sweep` would refuse for one of this
    shard's members part way through (an environment that differs from a member's env.json), so a
    refused command leaves the sweep folder as it was."""
    from grokkit.sweep import shard_members

    for grid_member in shard_members(spec.members(), shard):
        if not (path / grid_member.name / "config.json").exists():
            continue
        run = RunDir.open(path / grid_member.name)
        config = run.config()
        if steps is not None:
            config = dataclasses.replace(config, train=dataclasses.replace(config.train, steps=steps))
        if nothing_to_resume(run, config) is None:
            _check_env(run, force, lambda message: None)


def _run_sweep(
    path: Path,
    spec,
    shard,
    notify: Notify,
    on_group: OnGroup,
    stop: StopRequest,
    force: bool,
    steps: int | None = None,
    extra_sinks: ExtraSinks = no_extra_sinks,
):
    from contextlib import ExitStack

    from grokkit.group import Member, group_key, train_group
    from grokkit.lineage import apply_lineage, pin_sources, write_noise_file
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
            made_folder = None  # for a member created now: whether its folder was made by it
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
                config = pin_sources(grid_member.config)
                exp = make_experiment(config)
                made_folder = not member_path.is_dir()
                run = RunDir.create(member_path, config, env, exp.split, link_latest=False, notify=notify)
                locks.enter_context(run.lock())
                write_noise_file(run.path, exp)
                key = group_key(config)
                init_fns.setdefault(key, make_init_fn(exp))
                state, history, elapsed = apply_lineage(exp, init_fns[key](config)), [], 0.0
                if config.train.init_from or config.optim.mask_from:
                    _DiskSink(run, config, [], None).on_checkpoint(state, 0.0)
            step = int(state.step)
            if made_folder is None:
                extra = list(extra_sinks(run, config, history))
            else:
                extra = _start_sinks_in_new_run(extra_sinks, run, config, history, made_folder)
            for other in extra:
                locks.callback(getattr(other, "close", lambda: None))
            lane = Lane(_Tee([_DiskSink(run, config, history, None), *extra]), list(history), step, elapsed,
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
