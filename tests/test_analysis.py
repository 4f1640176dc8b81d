"""Milestones, verdicts and the early-stopping counterfactual on synthetic curves."""

import dataclasses
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.booleans(), min_size=1, max_size=12),
    st.integers(min_value=0, max_value=8),
    st.integers(min_value=0, max_value=12),
)
def test_settled_milestones_never_change_as_evaluations_arrive(val_high, memorized_at, circuit_at):
    """Whatever comes next, a settled step is the step the whole history gives (what `report` will say)."""
    history = [
        {"step": 10 * (i + 1), "train_acc": 1.0 if i >= memorized_at else 0.5, "val_acc": 1.0 if high else 0.5,
         "restricted_loss": 0.05 if i >= circuit_at else 3.0, "val_loss": 1.0, "param_norm": 1.0}
        for i, high in enumerate(val_high)
    ]  # fmt: skip
    final = analysis.milestones(history)
    final_circuit = analysis.circuit_step(history)
    for n in range(1, len(history) + 1):
        prefix = history[:n]
        settled = analysis.milestones(prefix, settled=True)
        for key in ("memorized_step", "generalized_step"):
            assert settled[key] is None or settled[key] == final[key]
        circuit = analysis.circuit_step(prefix, settled=True)
        assert circuit is None or circuit == final_circuit
    if len(history) > analysis.CONFIRM_EVALS and history[-1 - analysis.CONFIRM_EVALS]["step"] >= (
        final["generalized_step"] or float("inf")
    ):
        assert analysis.milestones(history, settled=True)["generalized_step"] == final["generalized_step"]


def test_circuit_step_is_the_end_of_circuit_formation():
    history = [
        {"step": s, "train_acc": 1.0 if s >= 200 else 0.5, "val_acc": 1.0 if s >= 700 else 0.1,
         "restricted_loss": 0.05 if s in (100, 500, 600, 700, 800, 900) else 3.0, "excluded_loss": 1.0,
         "embed_gini": 0.5, "param_norm": 1.0, "train_loss": 0.1, "val_loss": 1.0}
        for s in range(100, 1000, 100)
    ]  # fmt: skip
    assert analysis.circuit_step(history) == 500  # the dip at 100, before memorization, does not count
    assert analysis.phases(history)["circuit_formation"] == {"start": 200, "end": 500}
    assert analysis.phases(history)["cleanup"] == {"start": 500, "end": 700}
    late = [{**r, "restricted_loss": 0.05 if r["step"] >= 800 else 3.0} for r in history]
    assert analysis.circuit_step(late) == 700  # generalization came first
    assert analysis.circuit_step(late[:8], settled=True) is None  # 700 could still prove a spike
    assert analysis.circuit_step(late[:9], settled=True) == 700
    spike = [{**r, "val_acc": 0.1} if r["step"] == 900 else r for r in late]
    assert analysis.circuit_step(spike) == 800 and analysis.milestones(spike)["generalized_step"] is None


def test_run_endings_verdicts_and_statuses_keep_their_on_disk_values():
    assert [e.value for e in analysis.Ending] == ["budget", "early-exit", "interrupted", "diverged"]
    assert analysis.Ending("early-exit").status == analysis.RunStatus.generalized == "generalized"
    assert analysis.Ending.budget.status == "finished"
    assert json.dumps({"reason": analysis.Ending.early_exit, "verdict": analysis.Verdict.memorization_only}) == (
        '{"reason": "early-exit", "verdict": "memorization only"}'
    )
    assert set(analysis.VERDICTS) == set(analysis.Verdict)
    assert isinstance(analysis.run_report(clean_grok(), budget=3000)["verdict"], analysis.Verdict)


def test_generalized_streak_and_early_exit_share_one_rule():
    history = curve([1.0] * 6, [0.995, 0.5, 0.99, 1.0, 1.0, 1.0])
    assert analysis.generalized_streak_start(history) == 300
    assert analysis.early_exit_due(history, window=300) and not analysis.early_exit_due(history, window=301)
    assert analysis.generalized_streak_start(history[:2]) is None
