"""Censored statistics for "steps to X%" (grokkit.survival) on synthetic samples with known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from scipy import stats

from grokkit.config import resolve
from grokkit.reporting import SweepReport
from grokkit.survival import (
    Estimate,
    Ratio,
    Sample,
    interval_text,
    median,
    number,
    quantile,
    ratio,
    ratio_interval,
    ratio_text,
    steps_text,
    summary,
    survival_curve,
)
from grokkit.sweep import SweepSpec, aggregate


def test_none_censored_odd_n_is_the_sample_median():
    steps = (300, 100, 500, 200, 400)
    assert median(Sample(steps, ())).value == np.median(steps) == 300


def test_none_censored_even_n_is_the_midpoint_as_numpy_and_r_survival_give():
    """S(t) sits at exactly 1/2 from 200 to 300: the convention "smallest t with S(t) <= 1/2" would say 200 (scipy's
    curve is 0.5 there); we take the midpoint, as R's quantile.survfit does, which is numpy's median."""
    steps = (100, 200, 300, 400)
    times, surv = survival_curve(Sample(steps, ()))
    assert list(times) == [100, 200, 300, 400] and surv[1] == pytest.approx(0.5)
    assert stats.ecdf(np.array(steps, float)).sf.evaluate(200) == pytest.approx(0.5)
    assert median(Sample(steps, ())).value == np.median(steps) == 250


def test_quantiles_without_censoring_average_at_the_jumps_like_numpy_type_2():
    rng = np.random.default_rng(7)
    for _ in range(50):
        steps = tuple(int(s) for s in rng.integers(1, 12, size=rng.integers(1, 9)) * 100)  # ties on purpose
        for q in (0.25, 0.5, 0.75):
            expected = np.quantile(steps, q, method="averaged_inverted_cdf")
            assert quantile(Sample(steps, ()), q).value == pytest.approx(expected), (steps, q)


def test_half_censored_median_is_kaplan_meier_not_the_survivors_median():
    # 6 seeds: 100, 200, 300, 400 reached; two stopped at 250 without getting there (still at risk until then)
    sample = Sample((100, 200, 300, 400), (250, 250))
    # S: 5/6 after 100, 4/6 after 200, 4/6 * 1/2 = 1/3 after 300 (2 at risk): first below 1/2 at 300
    _, surv = survival_curve(sample)
    assert list(surv) == pytest.approx([5 / 6, 4 / 6, 4 / 6, 1 / 3, 0.0])
    assert median(sample) == Estimate(300)
    assert np.median(sample.reached) == 250  # what dropping the censored seeds said


def test_exactly_half_reached_and_the_rest_never_is_above_the_budget():
    sample = Sample((100, 200, 300), (1000, 1000, 1000))
    assert median(sample) == Estimate(None, 1000)
    assert summary(sample) == {"runs": 6, "reached": 3, "median": None, "median_above": 1000, "min": 100, "max": 300}


def test_all_censored_median_is_above_the_budget():
    sample = Sample((), (3000, 3000, 3000))
    assert median(sample) == Estimate(None, 3000) and median(sample).censored
    assert steps_text(median(sample)) == "> 3,000"
    assert summary(sample)["reached"] == 0 and summary(sample)["min"] is None


def test_one_of_two_seeds_at_2300_is_not_a_median_of_2300():
    """The issue's case: 1 of 2 seeds reached 99% at 2,300 within 3,000 steps, the other never."""
    at_99 = Sample((2300,), (3000,))
    at_95 = Sample((2300, 2500), ())
    assert median(at_99) == Estimate(None, 3000) and steps_text(median(at_99)) == "> 3,000"
    assert median(at_95) == Estimate(2400)  # 95% is now reached sooner than 99%, as it must be


def test_ties_between_seeds_and_with_censoring():
    assert median(Sample((200, 200, 300), ())) == Estimate(200)
    # at 100: 3 reached and 1 censored at the same step; the censored one counts as at risk there: S = 2/5
    times, surv = survival_curve(Sample((100, 100, 100, 400), (100,)))
    assert list(times) == [100, 400] and surv[0] == pytest.approx(0.4)
    assert median(Sample((100, 100, 100, 400), (100,))) == Estimate(100)
    # reached at the last step and censored at the same last step: exactly half, nothing after: censored
    assert median(Sample((3000,), (3000,))) == Estimate(None, 3000)


def test_no_seeds_and_the_sample_builder():
    assert median(Sample((), ())) == Estimate(None, None) and steps_text(median(Sample((), ()))) == "—"
    sample = Sample.of([(100, 3000), (None, 3000), (None, None), (250, None)])
    assert sample == Sample((100.0, 250.0), (3000.0,)) and sample.n == 3 and sample.follow_up == 3000
    with pytest.raises(ValueError):
        quantile(sample, 1.0)


def test_ratios_are_bounds_when_a_median_is_censored():
    assert ratio(Estimate(1000), Estimate(400)) == Ratio(2.5)
    assert ratio(Estimate(None, 2000), Estimate(400)) == Ratio(5.0, "lower")  # baseline never: at least 5x
    assert ratio(Estimate(2000), Estimate(None, 5000)) == Ratio(0.4, "upper")  # candidate never: at most 0.4x
    assert ratio(Estimate(None, 2000), Estimate(None, 3000)) == Ratio(None)
    assert ratio(Estimate(100), Estimate(0)) == Ratio(None)


def test_ratio_formatting_has_enough_digits_and_says_slower():
    assert ratio_text(Ratio(2.5)) == "2.5×" and ratio_text(Ratio(26.0)) == "26×"
    assert ratio_text(Ratio(1 / 26)) == "26× slower"  # never "0.0x"
    assert ratio_text(Ratio(0.038)) == "26.3× slower"
    assert ratio_text(Ratio(5.0, "lower")) == "≥ 5×" and ratio_text(Ratio(2.0, "upper")) == "≤ 2×"
    assert ratio_text(Ratio(0.4, "upper")) == "≥ 2.5× slower" and ratio_text(Ratio(0.4, "lower")) == "≤ 2.5× slower"
    assert ratio_text(Ratio(None)) == "—"
    assert number(0.009000000000000001) == "0.009" and number(0.038) == "0.038" and number(1234.5) == "1,234"
    assert interval_text((0.0123, 2.0)) == "[0.0123–2]" and interval_text((1.5, None)) == "[1.5–∞]"
    assert interval_text(None) == ""


def test_bootstrap_interval_is_deterministic_and_contains_the_point_estimate():
    base, cand = Sample((1000, 1200, 900, 1500, 1100), ()), Sample((400, 500, 450, 600), ())
    point = median(base).value / median(cand).value  # type: ignore[operator]
    first, again = ratio_interval(base, cand), ratio_interval(base, cand)
    assert first == again
    assert first is not None and first[0] is not None and first[1] is not None
    assert first[0] <= point <= first[1]
    # without censoring it is scipy's own percentile interval (two independent samples, seeded)
    scipy_ci = stats.bootstrap(
        (np.array(base.reached), np.array(cand.reached)),
        lambda x, y, axis=-1: np.median(x, axis=axis) / np.median(y, axis=axis),
        paired=False, n_resamples=2000, method="percentile", rng=np.random.default_rng(0),
    ).confidence_interval  # fmt: skip
    assert first == pytest.approx((scipy_ci.low, scipy_ci.high))


def test_bootstrap_interval_with_censored_seeds_and_when_there_is_none():
    base, cand = Sample((900, 1000, 1200, 1500, 1100, 1300), (3000,)), Sample((400, 500, 450, 600, 550), ())
    interval = ratio_interval(base, cand)
    assert interval == ratio_interval(base, cand)
    point = median(base).value / median(cand).value  # type: ignore[operator]
    assert interval is not None and interval[0] is not None and interval[0] <= point
    assert interval[1] is None or point <= interval[1]
    assert ratio_interval(Sample((1, 2), ()), cand) is None  # fewer than 3 seeds
    assert ratio_interval(Sample((100,), (3000, 3000)), cand) is None  # a censored median: a bound, no interval


def test_sweep_aggregate_censors_seeds_that_never_generalized():
    spec = SweepSpec(resolve(None, {"train.steps": 3000}), {"optim.wd": [0.5, 1.0], "seed": [0, 1]})

    def report(memorized, generalized, verdict="grokked"):
        return {"memorized_step": memorized, "generalized_step": generalized, "steps": 3000, "verdict": verdict}

    reports = {"wd=0.5,seed=0": report(100, 2300), "wd=0.5,seed=1": report(150, None, "memorization only"),
               "wd=1,seed=0": report(100, 900), "wd=1,seed=1": report(100, 1300)}  # fmt: skip
    rows = {row["point"]["optim.wd"]: row for row in aggregate(spec, reports)}
    half = rows[0.5]
    assert half["generalized_median"] is None and half["generalized_median_above"] == 3000
    assert (half["generalized"], half["generalized_reached"], half["generalized_runs"]) == (1, 1, 2)
    assert (half["generalized_min"], half["generalized_max"]) == (2300, 2300)
    assert half["memorized_median"] == 125 and half["memorized_median_above"] is None
    assert rows[1.0]["generalized_median"] == 1100 and rows[1.0]["generalized_reached"] == 2
    from grokkit.render import sweep_view

    console = Console(width=100, record=True, color_system=None)
    console.print(sweep_view(SweepReport(Path("s"), spec, [], list(rows.values())), 100, plot=False))
    text = console.export_text()
    assert "> 3,000" in text and "[2,300]" in text and "1/2" in text and "1,100" in text
    assert "2,300\n" not in text.replace(" ", "").replace("│", "")  # no bare median from the one that got there


def test_kaplan_meier_curve_matches_scipy_ecdf_on_censored_samples_with_ties():
    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(1, 10))
        times = rng.integers(1, 8, size=n) * 100  # few distinct values: ties among and across the two kinds
        got_there = rng.random(n) < 0.6
        sample = Sample(tuple(times[got_there].tolist()), tuple(times[~got_there].tolist()))
        ours = survival_curve(sample)
        data = stats.CensoredData(uncensored=times[got_there].astype(float), right=times[~got_there].astype(float))
        theirs = stats.ecdf(data).sf
        np.testing.assert_array_equal(ours[0], theirs.quantiles)
        np.testing.assert_allclose(ours[1], theirs.probabilities, rtol=0, atol=1e-12)
