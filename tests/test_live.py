"""The live view of a run: milestones announced once settled, at the steps `report` gives; verdict, speed, ETA."""

import dataclasses

import pytest

from grokkit.analysis import Milestone, Verdict, run_report
from grokkit.config import TrainConfig
from grokkit.live import LiveRun, estimate_eta, measure_speed, projected_stop

TRAIN = TrainConfig(steps=10_000, eval_every=50, early_exit=True, early_exit_window=500)


def records(train_acc, val_acc, restricted=None, every=50, seconds_per_step=0.05):
    restricted = restricted or [None] * len(train_acc)
    out = []
    for i, (t, v, r) in enumerate(zip(train_acc, val_acc, restricted, strict=True)):
        step = every * (i + 1)
        record = {"step": step, "train_acc": t, "val_acc": v, "train_loss": 1 - t, "val_loss": 1 - v,
                  "param_norm": 40.0, "elapsed_s": step * seconds_per_step}  # fmt: skip
        if r is not None:
            record.update(restricted_loss=r, excluded_loss=2.0, embed_gini=0.5, key_frequencies=[3])
        out.append(record)
    return out


def feed(run, history):
    """Every event, with the step of the evaluation that announced it."""
    return [(record["step"], event) for record in history for event in run.update(record)]


def test_generalization_is_announced_at_the_step_report_gives_not_at_the_first_crossing():
    # validation first crosses 99% at step 3,050 but falls back; it holds from 3,150 (the run)
    val = [0.1] * 60 + [0.995, 0.9, 0.99, 0.995, 0.999, 1.0, 1.0]
    history = records([1.0] * len(val), val)
    run = LiveRun(TRAIN)
    announced = feed(run, history)
    report = run_report(history, TRAIN.steps)
    assert report["generalized_step"] == 3150
    generalized = [(at, e) for at, e in announced if e.milestone == Milestone.generalized]
    assert [(at, e.step) for at, e in generalized] == [(3250, 3150)]  # settled two evaluations later
    memorized = [e for _, e in announced if e.milestone == Milestone.memorized]
    assert [e.step for e in memorized] == [report["memorized_step"]] == [50]
    assert run.milestones[Milestone.generalized] == 3150


def test_a_milestone_at_the_last_evaluations_is_announced_when_the_run_finishes():
    history = records([0.5, 1.0, 1.0, 1.0, 1.0], [0.1, 0.2, 0.3, 0.4, 0.995])
    run = LiveRun(TRAIN)
    assert [e.milestone for _, e in feed(run, history)] == [Milestone.memorized]
    assert run.verdict == Verdict.still_training
    final = run.finish()
    assert [(e.milestone, e.step) for e in final] == [(Milestone.generalized, 250)]
    assert run_report(history, TRAIN.steps)["generalized_step"] == 250
    assert run.finish() == []  # nothing is announced twice


def test_circuit_event_is_reports_circuit_step_after_memorization():
    n = 40
    train = [0.5] * 3 + [1.0] * (n - 3)
    val = [0.1] * 30 + [1.0] * (n - 30)
    restricted = [0.05] + [3.0] * 19 + [0.08] * (n - 20)  # an early dip before memorization does not count
    history = records(train, val, restricted)
    run = LiveRun(TRAIN)
    announced = feed(run, history)
    report = run_report(history, TRAIN.steps)
    circuit = [(at, e.step) for at, e in announced if e.milestone == Milestone.circuit]
    assert circuit == [(1050, 1050)] and report["circuit_step"] == 1050
    assert report["phases"]["circuit_formation"]["end"] == 1050
    order = [e.milestone for _, e in announced]
    assert order == [Milestone.memorized, Milestone.circuit, Milestone.generalized]


def test_circuit_waits_while_an_unsettled_generalization_could_come_first():
    # val reaches 99% at 250 (unsettled) and the restricted loss drops at 300: the circuit step is 250 once settled
    history = records([1.0] * 8, [0.1, 0.1, 0.1, 0.1, 0.995, 0.995, 0.995, 0.995], [3.0] * 5 + [0.05] * 3)
    run = LiveRun(TRAIN)
    announced = feed(run, history)
    assert [(at, e.milestone, e.step) for at, e in announced if e.milestone != Milestone.memorized] == [
        (350, Milestone.circuit, 250),
        (350, Milestone.generalized, 250),
    ]
    assert run_report(history, TRAIN.steps)["circuit_step"] == 250


def test_resumed_history_is_known_and_not_announced_again():
    history = records([0.5] + [1.0] * 9, [0.1] * 10)
    run = LiveRun(TRAIN, history[:6])
    assert run.milestones[Milestone.memorized] == 100
    assert feed(run, history[6:]) == []
    assert run.steps_per_s == pytest.approx(20.0)  # 0.05 s per step, this session's evaluations only


def test_verdict_so_far_uses_reports_rule():
    history = records([0.5, 1.0, 1.0, 1.0, 1.0, 1.0], [0.4, 0.995, 1.0, 1.0, 1.0, 1.0])
    run = LiveRun(TRAIN)
    feed(run, history)
    assert run.verdict == Verdict.comprehension == run_report(history, TRAIN.steps)["verdict"]


def test_speed_is_measured_over_this_sessions_latest_intervals():
    history = records([1.0] * 8, [0.1] * 8)
    assert measure_speed(history[:1]) is None
    assert measure_speed(history) == pytest.approx(20.0)
    stalled = [*history, {**history[-1], "step": history[-1]["step"] + 50}]
    assert measure_speed(stalled[-2:]) is None  # no time passed


def test_eta_before_generalization_is_a_budget_bound_upper_bound():
    history = records([1.0] * 4, [0.1] * 4)  # at step 200
    eta = estimate_eta(history, TRAIN, steps_per_s=100.0)
    assert eta is not None and eta.upper_bound and eta.stop_step == 10_000
    assert eta.seconds == pytest.approx((10_000 - 200) / 100)


def test_eta_while_validation_holds_99_percent_is_to_the_early_exit():
    val = [0.1] * 60 + [0.995] * 3  # a streak from step 3,050; now at 3,150
    eta = estimate_eta(records([1.0] * len(val), val), TRAIN, steps_per_s=20.0)
    assert eta is not None and not eta.upper_bound
    assert eta.stop_step == 3550  # the first evaluation 500 steps into the streak
    assert eta.seconds == pytest.approx((3550 - 3150) / 20)


def test_eta_without_early_exit_or_too_close_to_the_budget_is_exact():
    history = records([1.0] * 4, [0.1] * 4)
    off = dataclasses.replace(TRAIN, early_exit=False)
    assert projected_stop(history, off) == (10_000, False)
    short = dataclasses.replace(TRAIN, steps=600)  # a streak starting at 250 would end at 750 > 600
    assert projected_stop(history, short) == (600, False)
    assert estimate_eta(history, TRAIN, None) is None


def test_eta_of_the_live_run():
    val = [0.1] * 60 + [0.995] * 3
    run = LiveRun(TRAIN)
    feed(run, records([1.0] * len(val), val))
    assert run.eta is not None and run.eta.stop_step == 3550 and not run.eta.upper_bound
    run.finish()
    assert run.eta is None
