"""Renderables: the live panel and plain lines, the end-of-run line, and every table at 80 columns."""

import dataclasses
from pathlib import Path

import pytest
from rich.console import Console

from grokkit import render
from grokkit.analysis import Ending, Milestone, run_report
from grokkit.comparison import Side, compare
from grokkit.config import TrainConfig, resolve
from grokkit.live import Event, LiveRun
from grokkit.reporting import SweepReport
from grokkit.sweep import SweepSpec

TRAIN = TrainConfig(steps=10_000, eval_every=50, early_exit=True, early_exit_window=500)


def record(step, train_acc, val_acc, restricted=None, seconds_per_step=0.05):
    r = {"step": step, "train_acc": train_acc, "val_acc": val_acc, "train_loss": 0.1, "val_loss": 1.0,
         "param_norm": 40.0, "elapsed_s": step * seconds_per_step}  # fmt: skip
    if restricted is not None:
        r.update(restricted_loss=restricted, excluded_loss=2.0, embed_gini=0.5, key_frequencies=[3])
    return r


def text_of(renderable, width=80):
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def assert_fits_80_columns(text):
    assert "…" not in text, text
    assert max(len(line) for line in text.splitlines()) <= 80


def live_run(n, val_from=None, restricted_from=None, train=TRAIN):
    run = LiveRun(train)
    for i in range(1, n + 1):
        step = 50 * i
        val = 1.0 if val_from is not None and step >= val_from else 0.2
        restricted = None if restricted_from is None else (0.05 if step >= restricted_from else 3.0)
        run.update(record(step, 1.0 if step >= 200 else 0.3, val, restricted))
    return run


def test_eval_line_says_the_eta_is_an_upper_bound_until_generalization():
    before = render.eval_line(live_run(10))
    assert "20.0 steps/s" in before and "ETA ≤ 7m55s" in before  # (10,000 - 500) / 20 s, the budget bound
    held = render.eval_line(live_run(66, val_from=3050))  # at 3,300, the streak from 3,050 exits at 3,550
    assert "ETA 12s" in held and "≤" not in held
    tiny = render.eval_line(live_run(1, train=dataclasses.replace(TRAIN, steps=40)))
    assert tiny.startswith("step      50/40") and "ETA" not in tiny  # one evaluation: no speed yet


def test_progress_panel_shows_curves_milestones_and_the_verdict_so_far():
    early = text_of(render.progress_panel(live_run(2, restricted_from=100)))
    assert "circuit not yet" in early and "memorized not yet" in early  # forming starts at memorization
    forming = text_of(render.progress_panel(live_run(20, restricted_from=2000)))
    assert "memorized at 200" in forming and "circuit forming" in forming
    done = text_of(render.progress_panel(live_run(70, val_from=3000, restricted_from=2000)))
    assert "circuit formed at 2,000" in done and "generalized at 3,000" in done
    assert "verdict so far grokked" in done
    assert "train ▃▃▃" in done and "███ 100.0%" in done and "val   ▂▂▂" in done and "log step" in done
    assert max(len(line) for line in done.splitlines()) <= 80
    assert "compiling" in text_of(render.progress_panel(LiveRun(TRAIN)))
    assert "circuit" not in text_of(render.progress_panel(live_run(5)))  # no progress measures recorded


def test_mini_curves_sample_a_log_step_axis():
    history = [record(step, 0.0, 0.0) for step in range(1, 1001)]
    assert [r["step"] for r in render.log_step_samples(history, 4)] == [1, 10, 100, 1000]
    curves = text_of(render.accuracy_sparklines([record(10, 0.0, 0.5), record(100, 1.0, 1.0)], 30)).splitlines()
    assert curves[0].split() == ["train", "▁" * 15 + "█", "100.0%"]  # each value holds until the next evaluation
    assert curves[1].split() == ["val", "▅" * 15 + "█", "100.0%"]
    assert curves[2].split() == ["10", "log", "step", "100"]


def test_event_lines_name_the_milestone_and_its_step():
    r = record(3150, 1.0, 0.995, restricted=0.05)
    assert str(render.event_line(Event(Milestone.generalized, 3150, r))) == (
        "generalized: validation accuracy held >= 99% from step 3,150"
    )
    circuit = str(render.event_line(Event(Milestone.circuit, 2000, record(2000, 1.0, 0.4, restricted=0.05))))
    assert circuit.startswith("circuit formed: restricted loss 0.05 < 0.1 at step 2,000") and "on its way" in circuit
    clamped = str(render.event_line(Event(Milestone.circuit, 3150, record(3150, 1.0, 0.995, restricted=0.5))))
    assert clamped.startswith("circuit formed by step 3,150")


def test_run_outcome_uses_reports_verdict():
    history = [record(s, t, v) for s, t, v in [(50, 0.5, 0.4), (100, 1.0, 0.995), (150, 1.0, 1.0), (200, 1.0, 1.0)]]
    assert run_report(history, 10_000)["verdict"] == "comprehension"
    text = str(render.run_outcome("runs/x", Ending.early_exit, history, 10_000, 1.0))
    assert text.startswith("comprehension: ") and "grokked" not in text and "Stopped early at step 200" in text
    late = [record(s, 1.0, 1.0 if s >= 500 else 0.1) for s in range(50, 700, 50)]
    assert str(render.run_outcome("runs/x", Ending.budget, late, 650, 1.0)).startswith("grokked: ")
    memorized = [record(s, 1.0, 0.3) for s in (50, 100, 150)]
    cut = str(render.run_outcome("runs/x", Ending.interrupted, memorized, 10_000, 1.0))
    assert cut.startswith("still training: memorized at step 50") and "Resume with: grokkit resume runs/x" in cut
    spent = str(render.run_outcome("runs/x", Ending.budget, memorized, 150, 1.0))
    assert spent.startswith("memorization only: memorized at step 50") and "end of its budget (step" in spent
    assert "Diverged" in str(render.run_outcome("runs/x", Ending.diverged, memorized, 10_000, 1.0))


@pytest.mark.parametrize(
    ("task", "shown", "hidden"),
    [
        ("mod-add", ["p=97"], ["n_bits"]),
        ("s5-compose", [], ["p=", "n_bits"]),
        ("sparse-parity", ["n_bits=12", "k_bits=3", "n_samples=2000"], ["p="]),
    ],
)
def test_run_header_shows_only_the_tasks_own_parameters(task, shown, hidden):
    config = resolve(None, {"data.task": task, "optim.grokfast": "ema", "optim.orthograd": True, "model.init_scale": 2})
    text = text_of(render.describe_config(config))
    assert all(s in text for s in shown) and not any(h in text for h in hidden)
    assert_fits_80_columns(text)


def _val_history(reach_at, steps=range(100, 2100, 100)):
    return [record(s, 1.0, 1.0 if s >= reach_at else 0.1) for s in steps]


def test_compare_table_fits_80_columns():
    base, cand = resolve(None, {"optim.wd": 0.0}), resolve(None, {"optim.grokfast": "ema", "optim.wd": 0.005})
    candidates = [(dataclasses.replace(cand, seed=s), _val_history(at)) for s, at in ((0, 200), (1, 400), (2, 1000))]
    result = compare(Side("baseline-run-name", [(base, _val_history(5000))], False),
                     Side("candidate-run-name", candidates, True))  # fmt: skip
    text = text_of(render.comparison_report(result))
    assert_fits_80_columns(text)
    for fragment in ("candidate-run-name vs baseline-run-name", "baseline", "candidate", "400 [200–1,000]",
                     "3/3 runs", "> 2,000", "0/1 runs", "≥ 5×"):  # fmt: skip
        assert fragment in text


def test_sweep_table_fits_80_columns():
    spec = SweepSpec(resolve(None, {}), {"data.train_frac": [0.3, 0.4], "optim.lr": [1e-3, 3e-3], "seed": [0, 1]})
    rows = [
        {"point": {"data.train_frac": tf, "optim.lr": lr}, "members": 2, "started": 2, "generalized": 1,
         "verdicts": {"grokked": 1, "memorization only": 1}, "memorized_median": 100, "memorized_min": 100,
         "memorized_max": 150, "generalized_median": 1500, "generalized_min": 1200, "generalized_max": 11800}
        for tf in (0.3, 0.4) for lr in (1e-3, 3e-3)
    ]  # fmt: skip
    text = text_of(render.sweep_view(SweepReport(Path("sweep-x"), spec, [], rows), 80))
    assert_fits_80_columns(text)
    for fragment in ("train_frac", "train 99%", "val 99%", "verdicts", "[1,200–11,800]", "1 memorization only"):
        assert fragment in text


def test_report_views_fit_80_columns():
    config = resolve(None, {"optim.wd": 0.5, "optim.grokfast": "ema", "train.early_exit_window": 1000})
    history = [
        {**record(s, 1.0 if s >= 4000 else 0.5, 1.0 if s >= 100_000 else 0.1, 0.05 if s >= 90_000 else 3.0),
         "val_loss": 1.0 + (s // 2000 % 7) / 10, "param_norm": 1234.5 - s / 2000}
        for s in range(2000, 120_001, 2000)
    ]  # fmt: skip
    report = run_report(history, 120_000)
    text = text_of(render.report_view("mod-add-p97-20250101-120000", config, report, history, 80, plot=False))
    assert_fits_80_columns(text)
    assert "circuit formation    4,000–90,000" in text and "100,000" in text and "1184.5" in text
    other = dataclasses.replace(config, optim=dataclasses.replace(config.optim, wd=1.0))
    runs = [("mod-add-p97-wd0.5-grokfast-ema-20250101-120000", config, report, history),
            ("mod-add-p97-wd1-20250101-120000", other, run_report(history[:25], 120_000), history[:25])]  # fmt: skip
    text = text_of(render.comparison_view(runs, 80, plot=False))
    assert_fits_80_columns(text)
    assert "wd 0.5" in text and "wd 1" in text and "still training" in text
