"""Weights & Biases logging: a RunSink that sends each evaluation's scalars to a wandb run."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from grokkit.config import Config
from grokkit.errors import UsageError
from grokkit.reporting import flatten_record


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """Every number of an evaluation record but its step, named as in the CSV and TensorBoard exports."""
    return {
        name: value
        for name, value in flatten_record(record).items()
        if name != "step" and isinstance(value, int | float) and not isinstance(value, bool)
    }


class WandbSink:
    """A RunSink that logs to one wandb run, started at the first event (or by `start`)."""

    def __init__(self, start: Callable[[], Any], history: Sequence[dict[str, Any]] = ()):
        self._start = start
        self._history = list(history)
        self.run: Any = None
        self.finished = False

    @property
    def url(self) -> str | None:
        """The wandb run's page (None before it starts, and offline)."""
        if self.run is None or getattr(self.run, "offline", False):
            return None  # wandb warns on the terminal when an offline run is asked for its url
        return getattr(self.run, "url", None)

    def start(self) -> Any:
        """Start the wandb run now, if not yet, and log the history it was given (a resumed run's records)."""
        if self.run is None:
            try:
                self.run = self._start()
            except Exception as err:  # wandb's own errors (not logged in, no network, bad project) vary by version
                raise UsageError(
                    f"wandb could not start a run ({err}); run 'wandb login' or set WANDB_MODE=offline"
                ) from None
            for record in self._history:
                self._log(record)
        return self.run

    def on_eval(self, record: dict[str, Any]) -> None:
        self.start()
        self._log(record)

    def on_checkpoint(self, state: Any, elapsed_s: float) -> None:
        pass

    def on_finish(self, reason: str) -> None:
        run = self.start()
        run.summary["finish_reason"] = reason
        self._finish(1 if reason == "diverged" else 0)

    def close(self) -> None:
        """Finish the wandb run as failed if training ended without `on_finish` (an exception)."""
        if self.run is not None:
            self._finish(1)

    def _log(self, record: dict[str, Any]) -> None:
        self.run.log(scalars(record), step=int(record["step"]))

    def _finish(self, exit_code: int) -> None:
        if not self.finished:
            self.finished = True
            self.run.finish(exit_code=exit_code)


def require_wandb() -> Any:
    """The wandb module, or a UsageError naming the extra (check before creating a run directory)."""
    try:
        import wandb
    except ImportError:
        raise UsageError("logging to Weights & Biases needs wandb: pip install 'grokkit[wandb]'") from None
    return wandb


def wandb_sink(
    config: Config, run_dir: Path, project: str | None, *, history: Sequence[dict[str, Any]] = ()
) -> WandbSink:
    """A sink for a new wandb run named after `run_dir`, its files under `run_dir`/wandb (the `wandb` extra).

    `history` (records already on disk, when resuming) is logged first, so each wandb run has the whole curve.
    """
    wandb = require_wandb()

    def start() -> Any:
        return wandb.init(
            project=project,
            name=Path(run_dir).name,
            dir=str(run_dir),
            config=config.to_dict(),
            reinit="create_new",  # one wandb run per sink: a sweep's members log side by side (wandb>=0.19.10)
            settings=wandb.Settings(silent=True, console="off"),  # the CLI owns the terminal
        )

    return WandbSink(start, history)
