"""Steps to a threshold over seeds, with the seeds that never got there: right censoring and Kaplan–Meier.

A seed that has not reached a threshold when its run ended (its budget spent, stopped, or still
training) is right-censored at its last trained step: all we know is that its time is later. Dropping
it, as a median over the seeds that got there does, makes a threshold look reached sooner the fewer
seeds reach it (1 of 2 seeds at 2,300 is not "a median of 2,300").

The survival curve S(t) (the share of seeds not there yet after t) is the Kaplan–Meier estimate, the
one `scipy.stats.ecdf` computes on `scipy.stats.CensoredData` (computed in numpy here, see
`survival_curve`). Ties: several seeds at one step lower S by their count at once, and a seed
censored at the step another one reached is counted as still at risk there.

Quantiles (the median is q = 1/2) follow R survival's convention (`quantile.survfit`): the first
time at which S drops below 1 - q; where S sits exactly at 1 - q from t_i until it drops below at a
later time t_j, the midpoint (t_i + t_j) / 2. Without censoring this is the ordinary sample median
(numpy's, for odd and even n alike); the convention "the smallest t with S(t) <= 1/2" would give the
lower of the two middle values for even n instead. Where S never drops below 1 - q within the longest
follow-up T (fewer than half the seeds got there, or exactly half and the rest never), the quantile is
not determined by the data: it is reported as censored, "> T", never as a number from the seeds that
got there.

Speed-ups are ratios of such medians; a censored median makes the ratio a bound. Their interval is a
percentile bootstrap (`scipy.stats.bootstrap`, two independent samples each resampled with
replacement, the Kaplan–Meier median recomputed on each resample, a fixed seed so the output is
reproducible); see `ratio_interval`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

TOLERANCE = 1e-9
"""How close to 1 - q the survival curve must be to count as exactly there (it is a product of ratios)."""
CONFIDENCE = 0.95
RESAMPLES = 2000
BOOTSTRAP_SEED = 0
MIN_SEEDS_FOR_INTERVAL = 3
INTERVAL_METHOD = (
    f"{CONFIDENCE:.0%} percentile bootstrap of the ratio of Kaplan–Meier medians: each side resampled with "
    f"replacement on its own ({RESAMPLES} resamples, seed {BOOTSTRAP_SEED}), only when both sides have "
    f">= {MIN_SEEDS_FOR_INTERVAL} seeds and neither median is censored"
)


@dataclass(frozen=True)
class Sample:
    """Times to a threshold: those of the seeds that got there, and the last times of those that did not."""

    reached: tuple[float, ...]
    censored: tuple[float, ...]

    @classmethod
    def of(cls, observations: Iterable[tuple[float | None, float | None]]) -> Sample:
        """From (time it got there or None, the time it was followed to) per seed; a seed with neither is left out."""
        reached: list[float] = []
        censored: list[float] = []
        for time, followed in observations:
            if time is not None:
                reached.append(float(time))
            elif followed is not None:
                censored.append(float(followed))
        return cls(tuple(reached), tuple(censored))

    @property
    def n(self) -> int:
        return len(self.reached) + len(self.censored)

    @property
    def follow_up(self) -> float | None:
        """The longest time any seed was followed (the budget, when every seed shares it)."""
        return max(self.reached + self.censored, default=None)


@dataclass(frozen=True)
class Estimate:
    """A quantile: its value, or None with `above` set when it lies beyond the longest follow-up."""

    value: float | None
    above: float | None = None

    @property
    def censored(self) -> bool:
        return self.value is None and self.above is not None


def _scipy_stats() -> Any:
    """scipy.stats, imported only when an interval is computed (see `survival_curve`; it has no type stubs)."""
    from scipy import stats  # type: ignore[import-untyped]

    return stats


def survival_curve(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """The Kaplan–Meier S(t) at each distinct observed time (reached or censored), as `scipy.stats.ecdf` gives it.

    S(t) is the product over times u <= t of (1 - d_u / n_u): d_u seeds got there at u, n_u were still at risk
    (not there, not censored before u; one censored at u is still at risk there). Computed here in numpy:
    the same numbers as `scipy.stats.ecdf(CensoredData(...)).sf` (tests/test_survival.py compares them on
    random censored samples with ties), without importing scipy.stats, which costs 1.2-1.6 s of start-up on
    the 2-core machine (measured), more than the rest of `grokkit report` on a sweep.
    """
    if not sample.n:
        return np.zeros(0), np.zeros(0)
    reached, censored = np.asarray(sample.reached, float), np.asarray(sample.censored, float)
    times = np.unique(np.concatenate([reached, censored]))
    events = np.searchsorted(np.sort(reached), times, side="right") - np.searchsorted(np.sort(reached), times)
    everyone = np.sort(np.concatenate([reached, censored]))
    at_risk = len(everyone) - np.searchsorted(everyone, times, side="left")
    return times, np.cumprod(1.0 - events / at_risk)


def quantile(sample: Sample, q: float) -> Estimate:
    """The time by which a share q of the seeds got there (R survival's convention, see the module docstring)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must be strictly between 0 and 1, got {q}")
    times, surv = survival_curve(sample)
    if not len(times):
        return Estimate(None)
    level = 1.0 - q
    below = np.flatnonzero(surv < level - TOLERANCE)
    at = np.flatnonzero(np.abs(surv - level) <= TOLERANCE)
    if len(at) and (not len(below) or at[0] < below[0]):
        if not len(below):
            return Estimate(None, float(times[-1]))  # S rests at 1 - q to the end: the upper part is never seen
        return Estimate(_plain((times[at[0]] + times[below[0]]) / 2))
    if len(below):
        return Estimate(_plain(times[below[0]]))
    return Estimate(None, float(times[-1]))


def median(sample: Sample) -> Estimate:
    return quantile(sample, 0.5)


def _plain(value: Any) -> float:
    """A number for JSON and tables: an int when it is whole (a step), else the float."""
    value = float(value)
    return int(value) if value.is_integer() else value


def summary(sample: Sample) -> dict[str, Any]:
    """Counts, the censored median and the range of the seeds that got there, as plain data."""
    middle = median(sample)
    return {
        "runs": sample.n,
        "reached": len(sample.reached),
        "median": middle.value,
        "median_above": _plain(middle.above) if middle.above is not None else None,
        "min": _plain(min(sample.reached)) if sample.reached else None,
        "max": _plain(max(sample.reached)) if sample.reached else None,
    }


@dataclass(frozen=True)
class Ratio:
    """numerator / denominator of two medians; `bound` "lower" (the ratio is at least value), "upper" (at most)."""

    value: float | None
    bound: str | None = None


def ratio(numerator: Estimate, denominator: Estimate) -> Ratio:
    """The ratio of two medians, a bound when one of them is censored, None when both are (or one is 0)."""
    if numerator.value is not None and denominator.value is not None:
        if denominator.value <= 0 or numerator.value <= 0:
            return Ratio(None)
        return Ratio(numerator.value / denominator.value)
    if numerator.censored and denominator.value is not None and denominator.value > 0 and numerator.above:
        return Ratio(numerator.above / denominator.value, "lower")
    if denominator.censored and numerator.value is not None and numerator.value > 0 and denominator.above:
        return Ratio(numerator.value / denominator.above, "upper")
    return Ratio(None)


def _median_of(sample: Sample, cache: dict[tuple[int, ...], float], picks: np.ndarray) -> float:
    """The Kaplan–Meier median of the seeds `picks` (indices into reached + censored); inf when censored."""
    key = tuple(sorted(int(i) for i in picks))
    if key not in cache:
        k = len(sample.reached)
        times = sample.reached + sample.censored
        resampled = Sample(tuple(times[i] for i in key if i < k), tuple(times[i] for i in key if i >= k))
        value = median(resampled).value
        cache[key] = math.inf if value is None else float(value)
    return cache[key]


def ratio_interval(
    numerator: Sample,
    denominator: Sample,
    confidence: float = CONFIDENCE,
    n_resamples: int = RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float | None, float | None] | None:
    """A percentile-bootstrap interval for median(numerator) / median(denominator) (INTERVAL_METHOD).

    The two sides are independent samples (different runs), so `scipy.stats.bootstrap` resamples each with
    replacement on its own (paired=False) and the statistic recomputes both Kaplan–Meier medians; a resample
    whose median is censored counts as infinitely slow, so an end of the interval can be unbounded (None); one
    where both are censored counts as 0 for the lower end and infinity for the upper (the widest it could be).
    Without such resamples the interval is scipy's percentile interval (`result.confidence_interval`).
    None when a side has fewer than MIN_SEEDS_FOR_INTERVAL seeds or a median of the whole sample is censored.
    Deterministic: the generator is seeded.
    """
    if min(numerator.n, denominator.n) < MIN_SEEDS_FOR_INTERVAL:
        return None
    if median(numerator).value is None or median(denominator).value is None:
        return None
    stats = _scipy_stats()
    rng = np.random.default_rng(seed)
    caches: tuple[dict, dict] = ({}, {})

    def sample_medians(x: np.ndarray, y: np.ndarray, axis: int = -1) -> Any:
        # nothing censored: the Kaplan–Meier median is the sample median (tested), for all resamples at once
        return np.median(x, axis=axis) / np.median(y, axis=axis)

    def km_medians(x: np.ndarray, y: np.ndarray) -> Any:
        top, bottom = _median_of(numerator, caches[0], x), _median_of(denominator, caches[1], y)
        return np.float64(top) / np.float64(bottom)  # inf / finite, finite / inf, inf / inf = nan: see below

    uncensored = not numerator.censored and not denominator.censored
    if uncensored:
        data = (np.asarray(numerator.reached, float), np.asarray(denominator.reached, float))
    else:  # resample seeds by index, so each resample knows which of its times are censored
        data = (np.arange(numerator.n, dtype=float), np.arange(denominator.n, dtype=float))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        result = stats.bootstrap(
            data,
            sample_medians if uncensored else km_medians,
            paired=False,
            vectorized=uncensored,
            n_resamples=n_resamples,
            confidence_level=confidence,
            method="percentile",
            rng=rng,
        )
    # scipy's percentile interval, except where both medians of a resample are censored (ratio unknown, nan):
    # such a resample counts as 0 for the lower end and as infinity for the upper one, the widest it could be
    draws = np.asarray(result.bootstrap_distribution, float)
    alpha = (1.0 - confidence) / 2
    low = float(np.percentile(np.where(np.isnan(draws), 0.0, draws), 100 * alpha))
    high = float(np.percentile(np.where(np.isnan(draws), math.inf, draws), 100 * (1 - alpha)))
    high = math.inf if math.isnan(high) else high  # interpolating between two infinite draws
    return (low if math.isfinite(low) else None, high if math.isfinite(high) else None)


def number(value: float) -> str:
    """A positive number with 3 significant digits and no exponent in the usual range: 26.4, 2.5, 0.038, 1,234."""
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def ratio_text(result: Ratio) -> str:
    """A speed-up as a reader wants it: "2.5×", "26× slower" (a ratio under 1), "≥ 5×", "≥ 2.5× slower"."""
    if result.value is None:
        return "—"
    slower = result.value < 1
    factor = f"{number(1 / result.value if slower else result.value)}×{' slower' if slower else ''}"
    # an upper bound on the speed-up is a lower bound on how much slower: "≤ 0.4×" reads "≥ 2.5× slower"
    if result.bound == "lower":
        return f"{'≤' if slower else '≥'} {factor}"
    if result.bound == "upper":
        return f"{'≥' if slower else '≤'} {factor}"
    return factor


def interval_text(interval: tuple[float | None, float | None] | None) -> str:
    """A ratio's interval as raw ratios, "[0.67–2.1]" (∞ for an unbounded end); "" for none."""
    if interval is None:
        return ""
    low, high = interval
    return f"[{number(low) if low is not None else '0'}–{number(high) if high is not None else '∞'}]"


def steps_text(estimate: Estimate) -> str:
    """A median step for a table: "2,300", "> 3,000" (censored), "—" (no seeds)."""
    if estimate.value is not None:
        return f"{estimate.value:,.0f}"
    if estimate.above is not None:
        return f"> {estimate.above:,.0f}"
    return "—"
