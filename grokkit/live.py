"""A run being trained, as the live display sees it: settled milestones, verdict so far, speed and ETA (pure)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from grokkit.analysis import (
    GENERALIZED_ACC,
    Milestone,
    Verdict,
    circuit_step,
    first_step_at,
    generalized_streak_start,
    milestones,
    verdict,
)
from grokkit.config import TrainConfig
from grokkit.early_warning import Watched, live_signals

SPEED_WINDOW_EVALS = 5
"""Speed is measured over up to this many of the latest evaluation intervals of this session."""


@dataclass(frozen=True)
class Event:
    """A milestone newly settled, at the step `report` gives it, with the evaluation of that step."""

    milestone: Milestone
    step: int
    record: dict[str, Any]


@dataclass(frozen=True)
class Eta:
    """Seconds until training stops at `stop_step`; `upper_bound` when early exit may stop it sooner."""

    seconds: float
    stop_step: int
    upper_bound: bool


def milestone_steps(history: list[dict[str, Any]], *, settled: bool) -> dict[Milestone, int | None]:
    """Each milestone's step by `report`'s rules; with `settled`, only steps no later evaluation can change."""
    found = milestones(history, settled=settled)
    return {
        Milestone.memorized: found["memorized_step"],
        Milestone.circuit: circuit_step(history, settled=settled),
        Milestone.generalized: found["generalized_step"],
    }


def next_evaluation(step: int, train: TrainConfig) -> int:
    """The first evaluation at or after `step`: evaluations fall on multiples of eval_every and on the budget."""
    return min(math.ceil(step / train.eval_every) * train.eval_every, train.steps)


def exit_step(generalized: int, streak_start: int, train: TrainConfig) -> int:
    """Where the early exit falls (`analysis.early_exit_due`) for a streak at >= 99% from `streak_start` that
    holds, after generalizing at `generalized`: the window's end, and with --watch-after N, (1 + N)x that step."""
    stop = streak_start + train.early_exit_window
    if train.watch_after > 0:
        stop = max(stop, math.ceil(generalized * (1 + train.watch_after)))
    return next_evaluation(stop, train)


def projected_stop(history: list[dict[str, Any]], train: TrainConfig) -> tuple[int, bool]:
    """The step training stops at if validation accuracy keeps its current side of 99%, and whether early exit
    could still stop it sooner (a streak at >= 99% that has not started yet)."""
    step = history[-1]["step"] if history else 0
    if not train.early_exit:
        return train.steps, False
    streak_start = generalized_streak_start(history)
    if streak_start is not None:
        generalized = first_step_at(history, "val_acc", GENERALIZED_ACC)
        return max(step, exit_step(generalized or streak_start, streak_start, train)), False
    earliest = next_evaluation(step + 1, train)  # a streak could start at the next evaluation
    earliest_exit = exit_step(earliest, earliest, train)
    return train.steps, earliest_exit < train.steps


def estimate_eta(history: list[dict[str, Any]], train: TrainConfig, steps_per_s: float | None) -> Eta | None:
    """Time left at `steps_per_s`: to the early exit when validation accuracy is >= 99%, else to the budget."""
    if not steps_per_s:
        return None
    step = history[-1]["step"] if history else 0
    stop_step, upper_bound = projected_stop(history, train)
    return Eta((stop_step - step) / steps_per_s, stop_step, upper_bound)


def measure_speed(records: list[dict[str, Any]]) -> float | None:
    """Steps per second over the latest SPEED_WINDOW_EVALS intervals between `records` (None: too few)."""
    window = records[-(SPEED_WINDOW_EVALS + 1) :]
    if len(window) < 2:
        return None
    steps = window[-1]["step"] - window[0]["step"]
    seconds = window[-1]["elapsed_s"] - window[0]["elapsed_s"]
    return steps / seconds if steps > 0 and seconds > 0 else None


class LiveRun:
    """A run in training: fed the history so far (on resume), then each new evaluation, it says which
    milestones have newly settled, and holds the verdict so far, the speed and the ETA."""

    def __init__(self, train: TrainConfig, history: Iterable[dict[str, Any]] = ()) -> None:
        self.train = train
        self.history: list[dict[str, Any]] = list(history)
        self.session: list[dict[str, Any]] = []  # evaluations of this session, for the speed
        self.finished = False
        self.milestones = milestone_steps(self.history, settled=True)
        self._signals: tuple[int, list[Watched]] | None = None  # (history length, live_signals) cache

    @property
    def budget(self) -> int:
        return self.train.steps

    @property
    def last(self) -> dict[str, Any] | None:
        return self.history[-1] if self.history else None

    @property
    def verdict(self) -> Verdict:
        """The verdict so far: from settled milestones while training, `report`'s own once finished."""
        return verdict(self.history, self.budget, settled=not self.finished)

    @property
    def steps_per_s(self) -> float | None:
        return measure_speed(self.session)

    @property
    def eta(self) -> Eta | None:
        return None if self.finished else estimate_eta(self.history, self.train, self.steps_per_s)

    @property
    def signals(self) -> list[Watched] | None:
        """Once memorized and not yet generalized (settled milestones), the early-warning signals the run records
        and whether each has fired (`early_warning.live_signals`, `report`'s rules); None before memorization and
        after generalization."""
        memorized = self.milestones[Milestone.memorized]
        if memorized is None or self.milestones[Milestone.generalized] is not None or self.finished:
            return None
        if self._signals is None or self._signals[0] != len(self.history):
            self._signals = (len(self.history), live_signals(self.history, memorized))
        return self._signals[1]

    @property
    def has_progress_measures(self) -> bool:
        """Whether the run records the restricted loss, so the circuit milestone can happen."""
        return self.last is not None and "restricted_loss" in self.last

    def update(self, record: dict[str, Any]) -> list[Event]:
        """Take one new evaluation; the milestones it settles, in order."""
        self.history.append(record)
        self.session.append(record)
        return self._newly(milestone_steps(self.history, settled=True))

    def finish(self) -> list[Event]:
        """The run has stopped: the milestones its final history gives (those at its last evaluations too)."""
        self.finished = True
        return self._newly(milestone_steps(self.history, settled=False))

    def _newly(self, found: dict[Milestone, int | None]) -> list[Event]:
        by_step = {r["step"]: r for r in self.history}
        events = [
            Event(milestone, step, by_step[step])
            for milestone, step in found.items()
            if step is not None and self.milestones[milestone] is None
        ]
        self.milestones = {m: self.milestones[m] if self.milestones[m] is not None else found[m] for m in found}
        return sorted(events, key=lambda e: (e.step, list(Milestone).index(e.milestone)))
