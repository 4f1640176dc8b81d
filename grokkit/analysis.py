"""Pure functions from metrics records to milestones, verdicts, run endings and counterfactuals (no JAX, no I/O)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

MEMORIZED_ACC = 0.99
GENERALIZED_ACC = 0.99
THRESHOLDS = (0.5, 0.95, 0.99)
CONFIRM_EVALS = 2
"""A milestone must hold at the next CONFIRM_EVALS evaluations too (or to the end), so a one-eval spike is ignored."""
GROKKED_RATIO = 2.0
"""Validation 99% at least this many times later than train 99% counts as delayed generalization."""
CIRCUIT_LOSS = 0.1
"""Circuit formation ends when the restricted loss (key components only) first falls below this."""
DEFAULT_PATIENCE = 5
"""Evaluations without a new best validation loss before early stopping fires (PyTorch Lightning uses 3)."""


class Milestone(StrEnum):
    """What a run reaches, in the order it usually does (the names `report` and the live display share)."""

    memorized = "memorized"
    circuit = "circuit"
    generalized = "generalized"


class Verdict(StrEnum):
    """What a run's curves say, after Liu et al. 2022's four regimes (plus runs not over yet)."""

    grokked = "grokked"
    comprehension = "comprehension"
    memorization_only = "memorization only"
    not_yet_fit = "not yet fit"
    still_training = "still training"


VERDICTS: dict[Verdict, str] = {
    Verdict.grokked: "delayed generalization: validation accuracy reached 99% at least "
    f"{GROKKED_RATIO:g}x later than train accuracy",
    Verdict.comprehension: f"generalized with no real delay (less than {GROKKED_RATIO:g}x after memorizing)",
    Verdict.memorization_only: "train accuracy reached 99%, validation accuracy never did, and the budget is spent",
    Verdict.not_yet_fit: "train accuracy never reached 99% within the budget",
    Verdict.still_training: "stopped before its budget without generalizing (running or interrupted)",
}


class RunStatus(StrEnum):
    """A run's `status` in summary.json."""

    running = "running"
    finished = "finished"
    generalized = "generalized"
    interrupted = "interrupted"
    diverged = "diverged"


class Ending(StrEnum):
    """How the training loop stopped; the values are the ones older run folders and sweeps recorded."""

    budget = "budget"
    early_exit = "early-exit"
    interrupted = "interrupted"
    diverged = "diverged"

    @property
    def status(self) -> RunStatus:
        """The summary.json status a run that ended this way gets."""
        return _STATUS_OF_ENDING[self]


_STATUS_OF_ENDING = {
    Ending.budget: RunStatus.finished,
    Ending.early_exit: RunStatus.generalized,
    Ending.interrupted: RunStatus.interrupted,
    Ending.diverged: RunStatus.diverged,
}


def first_step_at(
    history: list[dict[str, Any]],
    key: str,
    threshold: float,
    confirm: int = CONFIRM_EVALS,
    *,
    settled: bool = False,
) -> int | None:
    """The first evaluation step from which `key` stays >= threshold for `confirm` more evaluations.

    Fewer than `confirm` evaluations after it (the newest ones) count as held; with `settled`, they
    do not, so the answer is one that no later evaluation can change.
    """
    values = [r.get(key) for r in history]
    for i, value in enumerate(values):
        if value is None or value < threshold:
            continue
        following = values[i + 1 : i + 1 + confirm]
        if settled and len(following) < confirm:
            return None
        if all(v is not None and v >= threshold for v in following):
            return history[i]["step"]
    return None


def milestones(history: list[dict[str, Any]], *, settled: bool = False) -> dict[str, Any]:
    """Memorization (train acc >= 99%) and generalization (val acc >= 99%) steps, and the gap (see first_step_at)."""
    memorized = first_step_at(history, "train_acc", MEMORIZED_ACC, settled=settled)
    generalized = first_step_at(history, "val_acc", GENERALIZED_ACC, settled=settled)
    best = max(history, key=lambda r: r["val_acc"], default=None)
    delay, ratio = None, None
    if memorized is not None and generalized is not None:
        delay = generalized - memorized
        ratio = round(generalized / memorized, 3) if memorized > 0 else None
    return {
        "memorized_step": memorized,
        "generalized_step": generalized,
        "grokking_delay": delay,
        "delay_ratio": ratio,
        "best_val_acc": best["val_acc"] if best else None,
        "best_val_step": best["step"] if best else None,
    }


def threshold_steps(history: list[dict[str, Any]]) -> dict[str, dict[str, int | None]]:
    """First steps at which train and validation accuracy reached 50/95/99%."""
    return {
        split: {f"{round(100 * t)}": first_step_at(history, f"{split}_acc", t) for t in THRESHOLDS}
        for split in ("train", "val")
    }


def verdict(history: list[dict[str, Any]], budget: int, *, settled: bool = False) -> Verdict:
    """The verdict by the rule each entry of VERDICTS states (settled: from settled milestones only)."""
    found = milestones(history, settled=settled)
    memorized, generalized = found["memorized_step"], found["generalized_step"]
    if generalized is not None:
        if memorized is not None and generalized >= GROKKED_RATIO * max(memorized, 1):
            return Verdict.grokked
        return Verdict.comprehension
    finished = bool(history) and history[-1]["step"] >= budget
    if not finished:
        return Verdict.still_training
    return Verdict.memorization_only if memorized is not None else Verdict.not_yet_fit


def early_stopping(history: list[dict[str, Any]], patience: int = DEFAULT_PATIENCE) -> dict[str, Any]:
    """Where early stopping on validation loss would have stopped, and what it would have shipped.

    The rule: stop after `patience` evaluations in a row without a new lowest validation loss,
    and ship the weights of the best evaluation (restore-best, as most frameworks do).
    """
    best_loss, waited = float("inf"), 0
    best_record: dict[str, Any] | None = None
    for record in history:
        if record["val_loss"] < best_loss:
            best_loss, best_record, waited = record["val_loss"], record, 0
            continue
        waited += 1
        if waited >= patience and best_record is not None:
            return {
                "patience": patience,
                "stop_step": record["step"],
                "best_step": best_record["step"],
                "shipped_val_acc": best_record["val_acc"],
            }
    return {"patience": patience, "stop_step": None, "best_step": None, "shipped_val_acc": None}


def norm_trajectory(history: list[dict[str, Any]]) -> dict[str, dict[str, float] | None]:
    """Parameter norm at the first evaluation, at memorization, at its peak, at generalization, last."""
    if not history:
        return {}
    by_step = {r["step"]: r for r in history}
    found = milestones(history)
    peak = max(history, key=lambda r: r["param_norm"])

    def at(step: int | None) -> dict[str, float] | None:
        return None if step is None else {"step": step, "param_norm": by_step[step]["param_norm"]}

    return {
        "initial": at(history[0]["step"]),
        "memorized": at(found["memorized_step"]),
        "peak": at(peak["step"]),
        "generalized": at(found["generalized_step"]),
        "final": at(history[-1]["step"]),
    }


def generalized_streak_start(history: list[dict[str, Any]]) -> int | None:
    """The first step of the newest unbroken run of evaluations at >= 99% validation accuracy (None: below now)."""
    start = None
    for record in reversed(history):
        if record["val_acc"] < GENERALIZED_ACC:
            break
        start = record["step"]
    return start


def early_exit_due(history: list[dict[str, Any]], window: int, watch_after: float = 0.0) -> bool:
    """True once validation accuracy has stayed >= 99% at every evaluation over `window` steps and, with
    `watch_after` N > 0 (--watch-after), training has reached (1 + N)x the generalized step: it went on for N
    times the steps it took to generalize."""
    start = generalized_streak_start(history)
    if start is None or history[-1]["step"] - start < window:
        return False
    if watch_after <= 0:
        return True
    generalized = first_step_at(history, "val_acc", GENERALIZED_ACC)
    return generalized is not None and history[-1]["step"] >= generalized * (1 + watch_after)


def circuit_step(history: list[dict[str, Any]], *, settled: bool = False) -> int | None:
    """Where circuit formation ends: the first evaluation from memorization on at which the restricted loss
    (key components only) is below CIRCUIT_LOSS, or generalization if that comes first.

    With `settled`, only a step that no later evaluation can change (else None).
    """
    memorized = first_step_at(history, "train_acc", MEMORIZED_ACC, settled=settled)
    if memorized is None:
        return None
    after = (r for r in history if r["step"] >= memorized)
    formed = next((r["step"] for r in after if r.get("restricted_loss", float("inf")) < CIRCUIT_LOSS), None)
    if formed is None:
        return None
    generalized = first_step_at(history, "val_acc", GENERALIZED_ACC)
    if generalized is None or generalized >= formed:
        return formed
    if settled and first_step_at(history, "val_acc", GENERALIZED_ACC, settled=True) is None:
        return None  # generalization before `formed` is not settled yet
    return generalized


def phases(history: list[dict[str, Any]]) -> dict[str, dict[str, int | None]] | None:
    """Nanda et al. 2023's three phases, by a rule (the paper draws them by eye).

    memorization: from the start to the memorized step (train accuracy >= 99%, held);
    circuit formation: to `circuit_step` (the key components alone solve the task);
    cleanup: to the generalized step (validation accuracy >= 99%, held).
    None for runs without progress measures; a phase not finished has end None.
    """
    if not history or "restricted_loss" not in history[-1]:
        return None
    found = milestones(history)
    memorized, generalized = found["memorized_step"], found["generalized_step"]
    circuit = circuit_step(history)
    return {
        "memorization": {"start": 0, "end": memorized},
        "circuit_formation": {"start": memorized, "end": circuit},
        "cleanup": {"start": circuit, "end": generalized if circuit is not None else None},
    }


def phase_story(history: list[dict[str, Any]], found: dict[str, dict[str, int | None]]) -> dict[str, str]:
    """What happened in each finished phase, in numbers."""
    by_step = {r["step"]: r for r in history}

    def at(step: int | None) -> dict[str, Any]:
        return by_step.get(step, history[0]) if step else history[0]

    story = {}
    mem = found["memorization"]
    if mem["end"] is not None:
        r = at(mem["end"])
        story["memorization"] = (
            f"train accuracy reached {100 * r['train_acc']:.1f}% "
            f"while validation accuracy was {100 * r['val_acc']:.1f}%"
        )
    circuit = found["circuit_formation"]
    if circuit["end"] is not None:
        a, b = at(circuit["start"]), at(circuit["end"])
        story["circuit_formation"] = (
            f"restricted loss fell from {a['restricted_loss']:.3g} to {b['restricted_loss']:.3g} and excluded "
            f"loss rose from {a['excluded_loss']:.3g} to {b['excluded_loss']:.3g} while validation accuracy "
            f"was {100 * b['val_acc']:.1f}%"
        )
    cleanup = found["cleanup"]
    if cleanup["end"] is not None:
        a, b = at(cleanup["start"]), at(cleanup["end"])
        story["cleanup"] = (
            f"embedding Gini rose from {a['embed_gini']:.2f} to {b['embed_gini']:.2f} and the parameter norm "
            f"went from {a['param_norm']:.1f} to {b['param_norm']:.1f} as validation accuracy reached "
            f"{100 * b['val_acc']:.1f}%"
        )
    return story


HIGH = 0.9
"""An accuracy counts as high (fitted, generalized) from here on, in `noise_phase`."""
NOISE_PHASES = {
    "coexistence": "generalizes while still fitting the corrupted labels",
    "partial inversion": "generalizes and predicts the true label for part of the corrupted examples",
    "full inversion": "generalizes and predicts the true label for the corrupted examples",
    "memorization": "fits the clean and the corrupted labels without generalizing",
    "forgetting": "fits the clean labels but no longer the corrupted ones, without generalizing",
    "confusion": "fits neither the clean training labels nor the validation set",
}
"""Doshi et al. 2024's phases under label noise, as `noise_phase` tells them apart (our reading of their
definitions, with HIGH as the threshold; their phase diagram uses the same accuracies)."""


def noise_phase(record: dict[str, Any]) -> str | None:
    """The label-noise phase of one metrics record (None without --label-noise), by NOISE_PHASES' rules:
    validation accuracy, accuracy on the clean training examples, and on the corrupted ones against the labels
    trained on and against their true labels."""
    if "train_acc_corrupted" not in record:
        return None
    corrupted, inverted = record["train_acc_corrupted"], record.get("train_acc_corrupted_true", 0.0)
    if record["val_acc"] >= HIGH:
        if corrupted >= HIGH:
            return "coexistence"
        return "full inversion" if inverted >= HIGH else "partial inversion"
    if record.get("train_acc_clean", 0.0) < HIGH:
        return "confusion"
    return "memorization" if corrupted >= HIGH else "forgetting"


def run_report(
    history: list[dict[str, Any]],
    budget: int,
    patience: int = DEFAULT_PATIENCE,
    *,
    llc: list[dict[str, Any]] | None = None,
    spectra: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Everything `grokkit report` says about one run, as plain data (stable key names).

    `llc` (the run's llc.json trajectory) and `spectra` (alpha at checkpoints after generalization) come from
    the run folder (`early_warning.run_folder_signals`); without them the LLC signal and alpha are left out.
    """
    from grokkit.early_warning import after_generalization, early_warning

    found = milestones(history)
    stop = early_stopping(history, patience)
    last = history[-1] if history else {}
    return {
        "steps": last.get("step", 0),
        "budget": budget,
        **found,
        "verdict": verdict(history, budget),
        "early_stop_step": stop["stop_step"],
        "early_stop_best_step": stop["best_step"],
        "early_stop_val_acc": stop["shipped_val_acc"],
        "early_stop_patience": patience,
        "thresholds": threshold_steps(history),
        "param_norm": norm_trajectory(history),
        "final_train_acc": last.get("train_acc"),
        "final_val_acc": last.get("val_acc"),
        "final_param_norm": last.get("param_norm"),
        "noise_phase": noise_phase(last) if last else None,
        **_progress_report(history, found),
        "early_warning": early_warning(history, llc),
        "after_generalization": after_generalization(history, spectra),
    }


def _progress_report(history: list[dict[str, Any]], found: dict[str, Any]) -> dict[str, Any]:
    """Phases, key frequencies and the early warning, for runs that record progress measures."""
    found_phases = phases(history)
    if found_phases is None:
        return {"phases": None, "key_frequencies": None, "key_irreps": None, "circuit_step": None,
                "warning_steps": None}  # fmt: skip
    circuit = found_phases["circuit_formation"]["end"]
    generalized = found["generalized_step"]
    return {
        "phases": found_phases,
        "phase_story": phase_story(history, found_phases),
        "key_frequencies": history[-1].get("key_frequencies"),
        "key_irreps": history[-1].get("key_irreps"),
        "circuit_step": circuit,
        "warning_steps": generalized - circuit if circuit is not None and generalized is not None else None,
    }
