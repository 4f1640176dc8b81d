"""`grokkit compare`: speed-ups to validation-accuracy thresholds, pooled over seeds, and fairness warnings (pure)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from grokkit.analysis import THRESHOLDS, first_step_at
from grokkit.config import Config, Grokfast


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a run, or the members of a sweep (with each member's grid point, seeds aside)."""

    label: str
    runs: list[tuple[Config, list[dict[str, Any]]]]
    is_sweep: bool
    points: list[str] | None = None  # per run, e.g. "lr=0.001"; None: all one point


def _time_to(history: list[dict[str, Any]], threshold: float) -> tuple[int | None, float | None]:
    step = first_step_at(history, "val_acc", threshold)
    if step is None:
        return None, None
    elapsed = next((r.get("elapsed_s") for r in history if r["step"] == step), None)
    return step, elapsed


def _pooled_runs(runs: list[tuple[Config, list[dict[str, Any]]]], threshold: float) -> dict[str, Any]:
    steps, seconds, budgets = [], [], []
    for _, history in runs:
        step, elapsed = _time_to(history, threshold)
        budgets.append(history[-1]["step"] if history else 0)
        if step is not None:
            steps.append(step)
            if elapsed is not None:
                seconds.append(elapsed)
    return {
        "runs": len(runs),
        "reached": len(steps),
        "median_step": statistics.median(steps) if steps else None,
        "min_step": min(steps, default=None),
        "max_step": max(steps, default=None),
        "median_s": statistics.median(seconds) if seconds else None,
        "trained_steps": min(budgets, default=0),
    }


def _pooled(side: Side, threshold: float) -> dict[str, Any]:
    """Seeds pooled; for a sweep over several grid points, the best point (most seeds there, then fastest)."""
    points = side.points or [""] * len(side.runs)
    by_point: dict[str, list] = {}
    for point, run in zip(points, side.runs, strict=True):
        by_point.setdefault(point, []).append(run)
    pooled = {point: _pooled_runs(runs, threshold) for point, runs in by_point.items()}
    best = min(pooled, key=lambda p: (-pooled[p]["reached"], pooled[p]["median_step"] or float("inf")))
    return {**pooled[best], "point": best or None, "points": len(pooled)}


def effective_lr(config: Config) -> float:
    """The learning rate times Grokfast's gain: the optimizer sees g + lambda*mu, which "raises the effective
    learning rate by about (1 + lambda)x" (the caveat users raised against Lee et al. 2024)."""
    o = config.optim
    return o.lr * (1.0 + o.grokfast_lambda if o.grokfast != Grokfast.none else 1.0)


def fairness_warnings(baseline: Side, candidate: Side) -> list[str]:
    """What we can detect that makes a speed-up claim unfair or fragile."""
    warnings = []
    base_cfgs, cand_cfgs = [c for c, _ in baseline.runs], [c for c, _ in candidate.runs]

    def values(cfgs, get):
        return sorted({get(c) for c in cfgs}, key=str)

    for what, get in [
        ("task", lambda c: (c.data.task, c.data.p)),
        ("train fraction", lambda c: c.data.train_frac),
        ("model", lambda c: (c.model.kind.value, c.model.layers, c.model.d_model, c.model.width, c.model.depth)),
    ]:
        if values(base_cfgs, get) != values(cand_cfgs, get):
            warnings.append(f"different {what}: {values(base_cfgs, get)} vs {values(cand_cfgs, get)}; "
                            "this compares different problems")  # fmt: skip
    for what, get in [
        ("optimizer", lambda c: c.optim.name.value),
        ("learning rate", lambda c: c.optim.lr),
        ("weight decay", lambda c: (c.optim.wd, c.optim.decay_to.value)),
        ("loss", lambda c: (c.train.loss.value, c.train.loss_dtype.value)),
    ]:
        if values(base_cfgs, get) != values(cand_cfgs, get):
            warnings.append(f"different {what}: baseline {values(base_cfgs, get)}, candidate {values(cand_cfgs, get)}")
    base_lr, cand_lr = values(base_cfgs, effective_lr), values(cand_cfgs, effective_lr)
    if base_lr != cand_lr:
        why = (
            " (Grokfast's g + lambda*mu scales the step by about 1 + lambda)"
            if any(c.optim.grokfast != Grokfast.none for c in base_cfgs + cand_cfgs)
            else ""
        )
        warnings.append(f"different effective learning rate: {base_lr} vs {cand_lr}{why}; tune the baseline's "
                        "learning rate and weight decay too (see the README's fair-comparison recipe)")  # fmt: skip
    for side in (baseline, candidate):
        seeds = {c.seed for c in (cfg for cfg, _ in side.runs)}
        if len(seeds) < 2:
            warnings.append(f"{side.label} has a single seed; seed-to-seed spread in grokking time is often 2x or more")
    tuned = {(c.optim.lr, c.optim.wd) for c in base_cfgs}
    if len(tuned) < 2:
        warnings.append("the baseline's learning rate and weight decay were not swept (an untuned baseline)")
    if baseline.is_sweep or candidate.is_sweep:
        warnings.append("wall-clock inside a sweep is the whole group's time, shared by its members")
    return warnings


def compare(baseline: Side, candidate: Side) -> dict[str, Any]:
    """Per threshold: both sides pooled over seeds (a sweep over other hyperparameters contributes its best grid
    point: a tuned baseline), the speed-up in steps and wall-clock (a lower bound when the baseline never got
    there), and the fairness warnings."""
    rows = []
    for threshold in THRESHOLDS:
        base, cand = _pooled(baseline, threshold), _pooled(candidate, threshold)
        speedup_steps = speedup_s = None
        bound = False
        if cand["median_step"]:
            if base["median_step"]:
                speedup_steps = base["median_step"] / cand["median_step"]
                if base["median_s"] and cand["median_s"]:
                    speedup_s = base["median_s"] / cand["median_s"]
            elif base["reached"] == 0 and base["trained_steps"]:
                speedup_steps, bound = base["trained_steps"] / cand["median_step"], True
        rows.append({"threshold": threshold, "baseline": base, "candidate": cand, "speedup_steps": speedup_steps,
                     "speedup_s": speedup_s, "lower_bound": bound})  # fmt: skip
    return {
        "baseline": baseline.label,
        "candidate": candidate.label,
        "thresholds": rows,
        "warnings": fairness_warnings(baseline, candidate),
    }
