"""`grokkit compare`: speed-ups to validation-accuracy thresholds over seeds, on one problem, and fairness warnings.

Both sides must solve the same problem (PROBLEM_KEYS: the task and its parameters, the data, the model's
shape); a sweep over such a setting is narrowed to one grid point with `--baseline-point KEY=VALUE` /
`--candidate-point KEY=VALUE` (`select_point`), never pooled or picked. Over the other swept settings
(optimizer, regularization, interventions) each side contributes its best grid point, named in the output
with the number of points tried. Seeds are pooled with the censored statistics of `grokkit.survival`.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any

from grokkit.analysis import THRESHOLDS, first_step_at
from grokkit.config import Config, Grokfast, ModelKind, config_keys, field_values, option_name, parse_text
from grokkit.data import brief, task_parameters
from grokkit.errors import UsageError
from grokkit.survival import INTERVAL_METHOD, Sample, median, ratio, ratio_interval, summary
from grokkit.sweep import SEED_KEYS, point_name, shown

PROBLEM_KEYS = (
    "data.task", "data.p", "data.n_bits", "data.k_bits", "data.n_samples", "data.train_frac", "data.label_noise",
    "data.train_subset", "model.kind", "model.layers", "model.d_model", "model.heads", "model.d_mlp", "model.width",
    "model.depth", "model.embed",
)  # fmt: skip
"""Settings that change the problem: never pooled over or tuned, and the same on both sides."""

STATISTICS = (
    "steps to each threshold pooled over seeds by Kaplan–Meier: a seed that never got there is censored at its "
    "last step; a median is '> N' when half or more of the seeds never got there within N steps. Speed-up: "
    f"baseline median / candidate median, a bound when one is censored; interval: {INTERVAL_METHOD}"
)


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a run, or the members of a sweep that have started.

    `points` (per run, e.g. "lr=0.001") is informational: grid points are read from the runs' configs.
    `pinned` holds the settings chosen with --baseline-point/--candidate-point.
    """

    label: str
    runs: list[tuple[Config, list[dict[str, Any]]]]
    is_sweep: bool
    points: list[str] | None = None
    pinned: dict[str, Any] = field(default_factory=dict)


def _plain(value: Any) -> Any:
    return getattr(value, "value", value)


def _short(key: str) -> str:
    return key.rpartition(".")[2]


def _listed(values: list[Any]) -> str:
    return ", ".join(shown(v) if v is not None else "none" for v in values)


def problem(config: Config) -> dict[str, Any]:
    """The problem a run solves: its task with the task's own parameters, its data, and its model's shape."""
    values = field_values(config)
    keys = ["data.task", *(f"data.{name}" for name in task_parameters(config.data.task)), "data.train_frac",
            "data.label_noise", "data.train_subset", "model.kind"]  # fmt: skip
    if ModelKind(config.model.kind) == ModelKind.transformer:
        keys += ["model.layers", "model.d_model", "model.heads", "model.d_mlp"]
    else:
        keys += ["model.width", "model.depth", "model.embed"]
    return {key: _plain(values[key]) for key in keys}


# ---------------------------------------------------------------------------------------------- grid points


def point_key(name: str, option: str) -> str:
    """A setting's config key from how a user may write it: "data.train_frac", "train_frac", "train-frac"."""
    text = name.strip().removeprefix("--")
    keys = config_keys()
    if text in keys:
        return text
    by_name = {_short(key): key for key in keys} | {option_name(key)[2:]: key for key in keys}
    for candidate in (text, text.replace("-", "_"), text.replace("_", "-")):
        if candidate in by_name:
            return by_name[candidate]
    close = difflib.get_close_matches(text, list(by_name), n=1)
    hint = f"; did you mean {close[0]}?" if close and len(text) <= 100 else ""
    raise UsageError(f"unknown setting {brief(text)} (write a config key such as train_frac=0.3){hint}", option=option)


def parse_point(items: list[str] | None, option: str) -> dict[str, Any]:
    """KEY=VALUE items (repeatable option) -> {config key: typed value}, each value checked as the sweep does."""
    point: dict[str, Any] = {}
    for item in items or []:
        name, sep, text = item.partition("=")
        if not sep or not name.strip() or not text.strip():
            raise UsageError(f"expected KEY=VALUE (e.g. train_frac=0.3), got {brief(item)}", option=option)
        key = point_key(name, option)
        if key in point:
            raise UsageError(f"{_short(key)} is given twice", option=option)
        point[key] = parse_text(key, text, label=option)
    return point


def select_point(side: Side, point: dict[str, Any], option: str) -> Side:
    """The runs of `side` at the grid point `point` (settings pinned); a value no run has is a one-line error."""
    role = option.removeprefix("--").removesuffix("-point")
    runs, labels = list(side.runs), list(side.points or [""] * len(side.runs))
    for key, value in point.items():
        keep = [i for i, (config, _) in enumerate(runs) if field_values(config)[key] == value]
        if not keep:
            have = sorted({_plain(field_values(config)[key]) for config, _ in runs}, key=lambda v: (str(type(v)), v))
            where = "its runs have" if len(side.runs) > 1 else "its run has"
            raise UsageError(f"{_short(key)}={shown(value)} is not a point of the {role}; {where} "
                             f"{_short(key)} {_listed(have)}", option=option)  # fmt: skip
        runs, labels = [runs[i] for i in keep], [labels[i] for i in keep]
    points = None if side.points is None else labels
    return dataclasses.replace(side, runs=runs, points=points, pinned={**side.pinned, **point})


def check_same_problem(baseline: Side, candidate: Side) -> dict[str, Any]:
    """The one problem both sides solve, or a one-line error naming the setting that differs and the fix."""
    problems = {
        "baseline": [problem(c) for c, _ in baseline.runs],
        "candidate": [problem(c) for c, _ in candidate.runs],
    }
    for key in PROBLEM_KEYS:
        found = {role: _distinct([p[key] for p in ps if key in p]) for role, ps in problems.items()}
        base, cand = found["baseline"], found["candidate"]
        if not base and not cand:
            continue
        if len(base) == 1 and base == cand:
            continue
        name = _short(key)
        if len(base) > 1 and len(cand) == 1 and cand[0] in base:
            fix = f"choose the matching grid point with --baseline-point {name}={shown(cand[0])}"
        elif len(cand) > 1 and len(base) == 1 and base[0] in cand:
            fix = f"choose the matching grid point with --candidate-point {name}={shown(base[0])}"
        elif len(base) > 1 or len(cand) > 1:
            fix = f"choose one grid point per side with --baseline-point {name}=VALUE --candidate-point {name}=VALUE"
        else:
            fix = f"compare runs of the same {name} (or pick grid points with --baseline-point/--candidate-point)"
        raise UsageError(
            f"compare needs one problem on both sides and never pools or picks over {name}: the baseline has "
            f"{name} {_listed(base) or 'none'}, the candidate {_listed(cand) or 'none'}; {fix}"
        )
    return problems["baseline"][0] if problems["baseline"] else {}


def _distinct(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for value in values:
        if value not in out:
            out.append(value)
    return out


# ------------------------------------------------------------------------------------------- seeds pooled


def _time_to(history: list[dict[str, Any]], threshold: float) -> tuple[int | None, float | None]:
    step = first_step_at(history, "val_acc", threshold)
    if step is None:
        return None, None
    elapsed = next((r.get("elapsed_s") for r in history if r["step"] == step), None)
    return step, elapsed


def _samples(runs: list[tuple[Config, list[dict[str, Any]]]], threshold: float) -> tuple[Sample, Sample]:
    """Steps and seconds to `threshold`, one observation per run: the time it got there, or censored at its end."""
    steps, seconds = [], []
    for _, history in runs:
        step, elapsed = _time_to(history, threshold)
        last = history[-1] if history else {}
        steps.append((step, last.get("step", 0)))
        if step is not None:
            seconds.append((elapsed, None) if elapsed is not None else (None, None))
        else:
            seconds.append((None, last.get("elapsed_s")))
    return Sample.of(steps), Sample.of(seconds)


def _pooled_runs(runs: list[tuple[Config, list[dict[str, Any]]]], threshold: float) -> dict[str, Any]:
    """One side at one threshold: counts, the censored median steps and seconds, the range of those that got there."""
    steps, seconds = _samples(runs, threshold)
    by_steps, by_seconds = summary(steps), summary(seconds)
    return {
        "runs": by_steps["runs"],
        "reached": by_steps["reached"],
        "median_step": by_steps["median"],
        "median_step_above": by_steps["median_above"],
        "min_step": by_steps["min"],
        "max_step": by_steps["max"],
        "median_s": by_seconds["median"],
        "median_s_above": by_seconds["median_above"],
        "trained_steps": min((h[-1]["step"] if h else 0 for _, h in runs), default=0),
    }


@dataclass(frozen=True)
class Choice:
    """A side's runs at its chosen grid point: the tuned settings' values, and how many points there were."""

    runs: list[tuple[Config, list[dict[str, Any]]]]
    values: dict[str, Any]
    points: int
    tuned: list[str]

    @property
    def name(self) -> str | None:
        return point_name(self.values) or None


def tuned_keys(side: Side) -> list[str]:
    """The settings that vary among a side's runs, other than seeds and the problem: the ones it was tuned over."""
    values = [field_values(config) for config, _ in side.runs]
    return [key for key in config_keys() if key not in PROBLEM_KEYS and key not in SEED_KEYS
            and len(_distinct([v[key] for v in values])) > 1]  # fmt: skip


def _rank(runs: list[tuple[Config, list[dict[str, Any]]]]) -> tuple:
    """Sort key of a grid point, best first: median steps to the strictest threshold (censored: infinite),
    more seeds there, then the same at the next threshold down."""
    key: list[float] = []
    for threshold in sorted(THRESHOLDS, reverse=True):
        steps, _ = _samples(runs, threshold)
        middle = median(steps).value
        key += [middle if middle is not None else float("inf"), -len(steps.reached)]
    return tuple(key)


def choose(side: Side) -> Choice:
    """The grid point a side contributes: its only one, or the fastest over the settings it was tuned over."""
    keys = tuned_keys(side)
    groups: dict[tuple, list] = {}
    for run in side.runs:
        values = field_values(run[0])
        groups.setdefault(tuple(repr(values[k]) for k in keys), []).append(run)
    best = min(groups.values(), key=_rank)
    chosen = field_values(best[0][0])
    return Choice(best, {key: chosen[key] for key in keys}, len(groups), keys)


# ------------------------------------------------------------------------------------------------ warnings


def effective_lr(config: Config) -> float:
    """The learning rate times Grokfast's gain: the optimizer sees g + lambda*mu, which "raises the effective
    learning rate by about (1 + lambda)x" (the caveat users raised against Lee et al. 2024)."""
    o = config.optim
    return o.lr * (1.0 + o.grokfast_lambda if o.grokfast != Grokfast.none else 1.0)


def fairness_warnings(baseline: Side, candidate: Side, chosen: tuple[Choice, Choice] | None = None) -> list[str]:
    """What we can detect that makes a speed-up claim unfair or fragile (settings compared at the chosen points)."""
    warnings = []
    base_choice, cand_choice = chosen or (choose(baseline), choose(candidate))
    base_cfgs, cand_cfgs = [c for c, _ in base_choice.runs], [c for c, _ in cand_choice.runs]

    def values(cfgs, get) -> str:
        return ", ".join(sorted({get(c) for c in cfgs}))

    for what, get in [
        ("optimizer", lambda c: c.optim.name.value),
        ("learning rate", lambda c: shown(c.optim.lr)),
        ("weight decay", lambda c: f"{shown(c.optim.wd)} toward {c.optim.decay_to.value}"),
        ("loss", lambda c: f"{c.train.loss.value} in {c.train.loss_dtype.value}"),
    ]:
        if values(base_cfgs, get) != values(cand_cfgs, get):
            warnings.append(f"different {what}: baseline {values(base_cfgs, get)}, candidate {values(cand_cfgs, get)}")
    base_lr, cand_lr = (values(cfgs, lambda c: shown(effective_lr(c))) for cfgs in (base_cfgs, cand_cfgs))
    if base_lr != cand_lr:
        why = (
            " (Grokfast's g + lambda*mu scales the step by about 1 + lambda)"
            if any(c.optim.grokfast != Grokfast.none for c in base_cfgs + cand_cfgs)
            else ""
        )
        warnings.append(f"different effective learning rate: {base_lr} vs {cand_lr}{why}; tune the baseline's "
                        "learning rate and weight decay too (see the README's fair-comparison recipe)")  # fmt: skip
    budgets = [values(cfgs, lambda c: f"{c.train.steps:,}") for cfgs in (base_cfgs, cand_cfgs)]
    if budgets[0] != budgets[1]:
        warnings.append(f"different budgets: baseline {budgets[0]} steps, candidate {budgets[1]}; a seed not "
                        "there is censored at its last step, so a shorter budget bounds what it can show")  # fmt: skip
    for side, choice in ((baseline, base_choice), (candidate, cand_choice)):
        seeds = {c.seed for c, _ in choice.runs}
        if len(seeds) < 2:
            warnings.append(f"{side.label} has a single seed; seed-to-seed spread in grokking time is often 2x or more")
    tuned = {(c.optim.lr, c.optim.wd) for c, _ in baseline.runs}
    if len(tuned) < 2:
        warnings.append("the baseline's learning rate and weight decay were not swept (an untuned baseline)")
    few, many = sorted(((base_choice.points, "baseline"), (cand_choice.points, "candidate")))
    if many[0] >= 2 * few[0]:
        warnings.append(f"the {many[1]} is the best of {many[0]} grid points and the {few[1]} of {few[0]}: the best "
                        "of many looks faster by chance alone; tune both sides over the same grid")  # fmt: skip
    if baseline.is_sweep or candidate.is_sweep:
        warnings.append("wall-clock inside a sweep is the whole group's time, shared by its members")
    return warnings


# ----------------------------------------------------------------------------------------------- compare


def _speedup(base: Sample, cand: Sample, interval: bool) -> tuple[float | None, str | None, list | None]:
    result = ratio(median(base), median(cand))
    bounds = ratio_interval(base, cand) if interval and result.value is not None and result.bound is None else None
    return result.value, result.bound, None if bounds is None else list(bounds)


def compare(baseline: Side, candidate: Side) -> dict[str, Any]:
    """Per threshold: both sides' seeds pooled (censored medians), the speed-up in steps and wall-clock (a bound
    when a median is censored, an interval when both sides have enough seeds), the grid point each side
    contributes, and the fairness warnings. Sides that solve different problems are a UsageError."""
    common = check_same_problem(baseline, candidate)
    base_choice, cand_choice = choose(baseline), choose(candidate)
    rows = []
    for threshold in THRESHOLDS:
        base, cand = _pooled_runs(base_choice.runs, threshold), _pooled_runs(cand_choice.runs, threshold)
        base["point"], base["points"] = base_choice.name, base_choice.points
        cand["point"], cand["points"] = cand_choice.name, cand_choice.points
        (base_steps, base_s), (cand_steps, cand_s) = (_samples(c.runs, threshold) for c in (base_choice, cand_choice))
        steps, steps_bound, steps_interval = _speedup(base_steps, cand_steps, interval=True)
        seconds, seconds_bound, _ = _speedup(base_s, cand_s, interval=False)
        rows.append({
            "threshold": threshold, "baseline": base, "candidate": cand,
            "speedup_steps": steps, "speedup_steps_bound": steps_bound, "lower_bound": steps_bound == "lower",
            "speedup_steps_interval": steps_interval,
            "speedup_s": seconds, "speedup_s_bound": seconds_bound,
        })  # fmt: skip
    selection = {
        role: {"point": choice.name, "values": {k: _plain(v) for k, v in choice.values.items()},
               "points_tried": choice.points, "tuned_over": choice.tuned, "runs": len(choice.runs),
               "pinned": {k: _plain(v) for k, v in side.pinned.items()}}
        for role, side, choice in (("baseline", baseline, base_choice), ("candidate", candidate, cand_choice))
    }  # fmt: skip
    return {
        "baseline": baseline.label,
        "candidate": candidate.label,
        "problem": common,
        "selection": selection,
        "statistics": STATISTICS,
        "thresholds": rows,
        "warnings": fairness_warnings(baseline, candidate, (base_choice, cand_choice)),
    }
