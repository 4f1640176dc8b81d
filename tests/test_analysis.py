"""Milestones, verdicts and the early-stopping counterfactual on synthetic curves."""

import dataclasses

import numpy as np
import pytest

from grokkit import analysis


def curve(train_acc, val_acc, val_loss=None, every=100, norms=None):
    n = len(train_acc)
    val_loss = val_loss if val_loss is not None else [1.0 - v for v in val_acc]
    norms = norms if norms is not None else [50.0] * n
    return [
        {"step": every * (i + 1), "train_acc": t, "val_acc": v, "train_loss": 1 - t, "val_loss": vl, "param_norm": w}
        for i, (t, v, vl, w) in enumerate(zip(train_acc, val_acc, val_loss, norms, strict=True))
    ]


def clean_grok():
    train = [0.3, 0.8, 1.0] + [1.0] * 27
    val = [0.01] * 15 + [0.2, 0.6, 0.97] + [1.0] * 12
    val_loss = [4.0, 5.0, 6.0] + [6.0 - 0.1 * i for i in range(15)] + [0.01] * 12
    return curve(train, val, val_loss, norms=[40, 55, 60, *list(np.linspace(59, 30, 27))])


def test_clean_grok():
    history = clean_grok()
    report = analysis.run_report(history, budget=3000)
    assert report["memorized_step"] == 300
    assert report["generalized_step"] == 1900
    assert report["grokking_delay"] == 1600
    assert report["delay_ratio"] == pytest.approx(1900 / 300, rel=1e-3)
    assert report["verdict"] == "grokked"
    assert report["thresholds"]["train"] == {"50": 200, "95": 300, "99": 300}
    assert report["thresholds"]["val"] == {"50": 1700, "95": 1800, "99": 1900}
    # val loss best at step 100, then 5 evaluations without a new best: stop at 600, ship step 100
    assert report["early_stop_step"] == 600
    assert report["early_stop_best_step"] == 100
    assert report["early_stop_val_acc"] == 0.01
    norms = report["param_norm"]
    assert norms["initial"]["step"] == 100 and norms["peak"] == {"step": 300, "param_norm": 60}
    assert norms["generalized"]["step"] == 1900 and norms["final"]["step"] == 3000


def test_immediate_generalization_is_comprehension():
    history = curve([0.5, 0.99, 1.0, 1.0, 1.0], [0.4, 0.99, 1.0, 1.0, 1.0])
    report = analysis.run_report(history, budget=500)
    assert report["memorized_step"] == report["generalized_step"] == 200
    assert report["verdict"] == "comprehension"


def test_memorization_only():
    history = curve([0.5, 1.0, 1.0, 1.0], [0.01, 0.02, 0.03, 0.05])
    report = analysis.run_report(history, budget=400)
    assert report["verdict"] == "memorization only"
    assert report["generalized_step"] is None and report["grokking_delay"] is None and report["delay_ratio"] is None
    assert report["best_val_acc"] == 0.05 and report["best_val_step"] == 400


def test_never_fitting():
    report = analysis.run_report(curve([0.1, 0.2, 0.3], [0.01, 0.01, 0.02]), budget=300)
    assert report["verdict"] == "not yet fit"
    assert report["memorized_step"] is None


def test_run_in_progress_is_still_training():
    history = curve([0.5, 1.0, 1.0], [0.01, 0.02, 0.03])
    assert analysis.run_report(history, budget=10_000)["verdict"] == "still training"
    assert analysis.run_report([], budget=100)["verdict"] == "still training"


def test_brief_spike_above_a_threshold_is_not_a_milestone():
    val = [0.01, 0.02, 0.995, 0.3, 0.2, 0.5, 0.99, 0.995, 1.0, 1.0]
    history = curve([1.0] * 10, val)
    assert analysis.first_step_at(history, "val_acc", 0.99) == 700
    assert analysis.first_step_at(history, "val_acc", 0.99, confirm=0) == 300


def test_milestone_at_the_last_evaluations_counts():
    history = curve([1.0] * 4, [0.1, 0.2, 0.3, 0.995])
    assert analysis.first_step_at(history, "val_acc", 0.99) == 400


def test_early_stopping_that_never_fires():
    history = curve([1.0] * 5, [0.1, 0.2, 0.3, 0.4, 0.5], val_loss=[5, 4, 3, 2, 1])
    stop = analysis.early_stopping(history, patience=2)
    assert stop["stop_step"] is None and stop["shipped_val_acc"] is None


def test_patience_changes_the_stop():
    history = clean_grok()
    assert analysis.early_stopping(history, patience=1)["stop_step"] == 200
    assert analysis.early_stopping(history, patience=3)["stop_step"] == 400


def _history(val_by_step: dict[int, float], seconds_per_step: float = 0.01) -> list[dict]:
    return [{"step": s, "val_acc": v, "train_acc": 1.0, "elapsed_s": s * seconds_per_step}
            for s, v in sorted(val_by_step.items())]  # fmt: skip


def test_compare_pools_seeds_and_bounds_a_baseline_that_never_got_there():
    from grokkit.comparison import Side, compare
    from grokkit.config import resolve

    steps = range(100, 2100, 100)
    base_cfg, cand_cfg = resolve(None, {"optim.wd": 0.0}), resolve(None, {"optim.grokfast": "ema", "optim.wd": 0.005})
    baseline = Side("baseline", [(base_cfg, _history({s: 0.1 for s in steps}))], False)
    candidate = Side("candidate", [
        (dataclasses.replace(cand_cfg, seed=seed), _history({s: 1.0 if s >= at else 0.1 for s in steps}))
        for seed, at in ((0, 200), (1, 400), (2, 1000))
    ], True)  # fmt: skip
    result = compare(baseline, candidate)
    row99 = next(r for r in result["thresholds"] if r["threshold"] == 0.99)
    assert row99["candidate"]["median_step"] == 400 and row99["candidate"]["reached"] == 3
    assert row99["lower_bound"] and row99["speedup_steps"] == 2000 / 400
    warnings = " ".join(result["warnings"])
    for fragment in ("different weight decay", "effective learning rate", "baseline has a single seed",
                     "not swept", "whole group's time"):  # fmt: skip
        assert fragment in warnings


def test_compare_speedup_in_steps_and_seconds_without_warnings_for_a_fair_pair():
    from grokkit.comparison import Side, compare
    from grokkit.config import resolve

    steps = range(100, 2100, 100)
    runs = lambda at, lr: [  # noqa: E731
        (resolve(None, {"seed": seed, "optim.lr": lr}), _history({s: 1.0 if s >= at else 0.0 for s in steps}))
        for seed in (0, 1)
    ]
    baseline = Side("baseline", runs(1000, 1e-3) + runs(1000, 3e-3), False)
    candidate = Side("candidate", runs(500, 1e-3) + runs(500, 3e-3), False)
    result = compare(baseline, candidate)
    row = result["thresholds"][1]
    assert row["speedup_steps"] == 2.0 and row["speedup_s"] == pytest.approx(2.0) and not row["lower_bound"]
    assert result["warnings"] == []


def test_compare_takes_the_best_grid_point_of_a_swept_baseline():
    from grokkit.comparison import Side, compare
    from grokkit.config import resolve

    steps = range(100, 2100, 100)
    runs, points = [], []
    for lr, at in ((1e-3, 1500), (3e-3, 600)):
        for seed in (0, 1):
            runs.append((resolve(None, {"seed": seed, "optim.lr": lr}), _history({s: float(s >= at) for s in steps})))
            points.append(f"lr={lr:g}")
    baseline = Side("baseline", runs, True, points)
    candidate = Side("candidate", runs[2:], False)
    row = compare(baseline, candidate)["thresholds"][2]
    assert row["baseline"]["point"] == "lr=0.003" and row["baseline"]["points"] == 2
    assert row["speedup_steps"] == 1.0
