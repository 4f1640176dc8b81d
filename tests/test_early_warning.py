"""Early-warning signals (issue #14 points 3-5): firing rules, leads, sweeps, the live line, --watch-after,
slingshots, anti-grokking and the spectral exponent, on hand-built histories and known power laws."""

import dataclasses
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from rich.console import Console

from grokkit import early_warning as ew
from grokkit.analysis import Ending, early_exit_due, run_report
from grokkit.config import TrainConfig, resolve
from grokkit.errors import UsageError
from grokkit.live import LiveRun, projected_stop

EVERY = 100


def history(n, memorized_at=300, generalized_at=None, **series):
    """n evaluations every 100 steps: train accuracy 1 from `memorized_at`, validation accuracy 1 from
    `generalized_at` (never if None); each keyword a list of n values (or a function of the step)."""
    records = []
    for i in range(n):
        step = EVERY * (i + 1)
        record = {
            "step": step,
            "train_acc": 1.0 if step >= memorized_at else 0.5,
            "val_acc": 1.0 if generalized_at is not None and step >= generalized_at else 0.1,
            "train_loss": 1e-3,
            "val_loss": 5.0,
            "param_norm": 40.0,
        }
        for key, values in series.items():
            value = values(step) if callable(values) else values[i]
            if value is not None:
                record[key] = value
        records.append(record)
    return records


def by_signal(rows):
    return {row["signal"]: row for row in rows}


def grokking_run():
    """Memorizes at 300, generalizes at 1,500; every forming signal fires at a step chosen below."""
    return history(
        16,
        memorized_at=300,
        generalized_at=1500,
        restricted_loss=lambda s: 0.05 if s >= 900 else 2.0,  # fires 900
        excluded_loss=lambda s: 3.0,
        val_loss=lambda s: {100: 4.0, 200: 6.0, 300: 7.0, 400: 8.0, 500: 6.0}.get(s, 3.9 if s >= 600 else 5.0),
        embed_gini=lambda s: 0.2 if s <= 300 else 0.2 + 0.04 * (s - 300) / 100,  # +0.1 at 550 -> 600
        neuron_gini=lambda s: 0.3 if s < 1200 else 0.45,  # fires 1,200
        embed_eff_rank=lambda s: {300: 20.0, 400: 30.0}.get(s, 24.0 if s >= 700 else 29.0),  # 24 <= 0.8 x 30: 700
        dist_from_init=lambda s: s / 10 if s <= 800 else 80 - (s - 800) / 100,  # 72 = 0.9 x 80 at 1,600
        param_norm=[40, 50, 60, 60, 59, 58, 56, 55, 54, 53, 52, 50, 40, 35, 30, 30],  # 54 = 0.9 x 60 at 900
        softmax_collapse=lambda s: 0.1,
        grad_cosine=lambda s: -0.2,
    )


def test_each_forming_signal_fires_by_its_rule_with_its_lead():
    rows = by_signal(ew.early_warning(grokking_run()))
    fired = {name: row["fired_step"] for name, row in rows.items()}
    assert fired == {
        "restricted_loss": 900,
        "val_loss": 600,
        "param_norm": 900,
        "embed_gini": 600,
        "neuron_gini": 1200,
        "embed_eff_rank": 700,
        "dist_from_init": 1600,
        "softmax_collapse": None,
        "grad_cosine": None,
    }
    leads = {name: row["lead_steps"] for name, row in rows.items()}
    assert leads["val_loss"] == 900 and leads["restricted_loss"] == 600 and leads["neuron_gini"] == 300
    assert leads["dist_from_init"] == -100  # fired after generalization: no warning
    assert leads["softmax_collapse"] is None and leads["grad_cosine"] is None  # never fired
    assert rows["val_loss"]["kind"] == "forming" and rows["softmax_collapse"]["kind"] == "will_not"
    for row in rows.values():
        assert set(row) == {"signal", "label", "kind", "rule", "fired_step", "lead_steps"}
        assert row["rule"] == ew.SIGNAL_BY_NAME[row["signal"]].rule


def test_signals_not_recorded_are_left_out_and_nothing_fires_before_memorization():
    plain = history(10, memorized_at=10**9)  # never memorizes
    rows = by_signal(ew.early_warning(plain))
    assert set(rows) == {"val_loss", "param_norm"}  # every run records these two
    assert all(row["fired_step"] is None for row in rows.values())
    # the condition holds from step 100, but a rule only fires from the memorized step (500) on
    early = history(8, memorized_at=500, restricted_loss=lambda s: 0.01)
    assert by_signal(ew.early_warning(early))["restricted_loss"]["fired_step"] == 500


def test_will_not_signals_on_a_run_that_never_generalizes():
    run = history(10, memorized_at=200, softmax_collapse=lambda s: 0.62 if s >= 600 else 0.2,
                  grad_cosine=lambda s: -0.95 if s >= 800 else -0.5)  # fmt: skip
    rows = by_signal(ew.early_warning(run))
    assert (rows["softmax_collapse"]["fired_step"], rows["grad_cosine"]["fired_step"]) == (600, 800)
    assert rows["softmax_collapse"]["lead_steps"] is None  # no generalized step, no lead
    assert "0.5" in rows["softmax_collapse"]["rule"] and "-0.9" in rows["grad_cosine"]["rule"]


def test_parity_share_and_the_llc_from_llc_json_rows():
    run = history(10, memorized_at=300, generalized_at=900,
                  relevant_weight_share=lambda s: 0.25 if s <= 300 else (0.5 if s >= 700 else 0.4))  # fmt: skip
    llc = [{"step": 200, "llc_mean": 40.0}, {"step": 400, "llc_mean": 50.0}, {"step": 600, "llc_mean": 45.0},
           {"step": 800, "llc_mean": 39.0}, {"step": 1000, "llc_mean": None}]  # fmt: skip
    rows = by_signal(ew.early_warning(run, llc))
    assert rows["relevant_weight_share"]["fired_step"] == 700  # 0.5 >= 2 x 0.25
    assert (rows["llc"]["fired_step"], rows["llc"]["lead_steps"]) == (800, 100)  # 39 <= 0.8 x 50
    assert "llc" not in by_signal(ew.early_warning(run, None))
    assert by_signal(ew.early_warning(run, [{"step": 400, "llc": 10.0}]))["llc"]["fired_step"] is None


def test_a_rule_reads_only_the_past_so_live_and_report_agree():
    run = grokking_run()
    final = {row["signal"]: row["fired_step"] for row in ew.early_warning(run)}
    for n in range(3, len(run) + 1):  # memorized at 300, the third evaluation
        last = run[n - 1]["step"]
        for row in ew.early_warning(run[:n]):
            # on a prefix, a signal has fired exactly when the whole run fired it by then, at the same step
            step = final[row["signal"]]
            assert row["fired_step"] == (step if step is not None and step <= last else None), (n, row)


def test_live_line_names_what_says_forming_and_what_says_will_not():
    from grokkit.render import progress_panel, signals_line

    train = TrainConfig(steps=5000, eval_every=100, early_exit=True, early_exit_window=300)
    run = LiveRun(train)
    records = history(14, memorized_at=300, generalized_at=1200, restricted_loss=lambda s: 0.05 if s >= 700 else 2.0,
                      excluded_loss=lambda s: 3.0, softmax_collapse=lambda s: 0.62 if s >= 900 else 0.0)  # fmt: skip
    lines = []
    for record in records:
        run.update(record)
        line = signals_line(run)
        lines.append(None if line is None else line.plain)
    assert lines[:4] == [None] * 4  # memorized at 300 is settled two evaluations later
    # recorded: restricted loss, val loss, |w| (forming); softmax collapse (will not)
    assert lines[4] == "signals forming 0/3: none yet; will not 0/1: none"
    assert lines[6] == "signals forming 1/3: restricted loss; will not 0/1: none"
    assert lines[8] == "signals forming 1/3: restricted loss; will not 1/1: softmax collapse 62%"
    assert lines[13] is None  # generalized (settled): the question is answered
    console = Console(width=80, record=True, color_system=None)
    run14 = LiveRun(train, records[:10])
    console.print(progress_panel(run14))
    assert "forming 1/3: restricted loss; will not 1/1: softmax collapse 62%" in console.export_text()


def test_sweep_aggregate_counts_hits_leads_and_false_alarms():
    from grokkit.sweep import SweepSpec, aggregate

    def report(generalized, verdict, **fired):
        rows = []
        for name, step in fired.items():
            lead = generalized - step if step is not None and generalized is not None else None
            rows.append({"signal": name, "fired_step": step, "lead_steps": lead})
        return {"memorized_step": 100, "generalized_step": generalized, "steps": 3000, "verdict": verdict,
                "early_warning": rows}  # fmt: skip

    spec = SweepSpec(resolve(None, {"train.steps": 3000}), {"seed": [0, 1, 2, 3, 4, 5]})
    reports = {
        "seed=0": report(1000, "grokked", val_loss=600, softmax_collapse=None),
        "seed=1": report(1500, "grokked", val_loss=700, softmax_collapse=900),
        "seed=2": report(2000, "grokked", val_loss=2100, softmax_collapse=None),  # fired after: not before
        "seed=3": report(None, "memorization only", val_loss=800, softmax_collapse=500),
        "seed=4": report(None, "memorization only", val_loss=None, softmax_collapse=400),
        "seed=5": report(None, "still training", val_loss=300, softmax_collapse=300),  # budget not spent
    }
    (row,) = aggregate(spec, reports)
    signals = by_signal(row["early_warning"])
    loss = signals["val_loss"]
    assert (loss["fired_before"], loss["generalized_runs"]) == (2, 3)
    assert (loss["lead_median"], loss["lead_min"], loss["lead_max"]) == (600, 400, 800)
    assert (loss["fired_never_generalized"], loss["never_generalized_runs"]) == (1, 2)
    assert (loss["false_alarms"], loss["false_alarm_runs"]) == (1, 2)  # forming: fired on a run that never did
    collapse = signals["softmax_collapse"]
    assert (collapse["fired_never_generalized"], collapse["never_generalized_runs"]) == (2, 2)  # both right
    assert (collapse["false_alarms"], collapse["false_alarm_runs"]) == (1, 3)  # will not, then it did
    assert collapse["lead_median"] == 600
    json.dumps(row)

    from grokkit.render import sweep_view
    from grokkit.reporting import SweepReport

    console = Console(width=100, record=True, color_system=None)
    console.print(sweep_view(SweepReport(Path("s"), spec, [], [row]), 100, plot=False))
    text = console.export_text()
    assert "early warning over seeds" in text and "2/3" in text and "+600" in text and "[400–800]" in text
    assert "False alarms" in text


def test_run_report_json_has_the_early_warning_and_after_generalization():
    run = grokking_run()
    report = run_report(run, budget=5000)
    assert [row["signal"] for row in report["early_warning"]][:2] == ["restricted_loss", "val_loss"]
    json.dumps(report)
    assert report["after_generalization"]["generalized_step"] == 1500
    assert run_report(run[:15], budget=5000)["after_generalization"] is None  # 1,500 is the last evaluation
    assert run_report([], budget=10)["early_warning"] == [] and run_report([], 10)["after_generalization"] is None


# ---- --watch-after -------------------------------------------------------------------------------------------


def test_watch_after_waits_for_n_times_the_steps_to_generalize():
    run = history(60, memorized_at=100, generalized_at=1000)  # generalized at 1,000, held
    at = {n: next(r["step"] for r in run if early_exit_due(run[: r["step"] // EVERY], 200, n)) for n in (0, 1, 3)}
    assert at == {0: 1200, 1: 2000, 3: 4000}  # the window, then (1 + N) x 1,000
    dip = [dict(r, val_acc=0.5) if r["step"] == 3900 else r for r in run]
    assert not early_exit_due(dip[:40], 200, 3)  # at 4,000 the streak starts anew: the window still counts
    assert early_exit_due(dip[:42], 200, 3)


def test_live_eta_projects_the_watch_after_stop():
    train = TrainConfig(steps=10_000, eval_every=100, early_exit=True, early_exit_window=200)
    run = history(11, memorized_at=100, generalized_at=1000)
    assert projected_stop(run, train) == (1200, False)
    assert projected_stop(run, dataclasses.replace(train, watch_after=3.0)) == (4000, False)
    assert projected_stop(run[:5], dataclasses.replace(train, watch_after=3.0)) == (10_000, True)  # 600 x 4 < budget
    assert projected_stop(run[:5], dataclasses.replace(train, watch_after=20.0)) == (10_000, False)


def test_run_lanes_threads_watch_after_into_the_early_exit():
    from grokkit.train import Lane, run_lanes

    class Scripted:
        """A Program whose evaluations say: memorized at 100, generalized (and held) from 500."""

        def advance(self, active, n_steps):
            self.step = getattr(self, "step", 0) + n_steps
            val = 1.0 if self.step >= 500 else 0.1
            return [{"train_loss": 0.0, "train_acc": 1.0, "val_loss": 1 - val, "val_acc": val, "param_norm": 1.0,
                     "param_norms": {}}]  # fmt: skip

        def state(self, i):
            return None

    class Sink:
        def on_eval(self, record): ...
        def on_checkpoint(self, state, elapsed_s): ...
        def on_finish(self, reason): ...

    def stop_step(watch_after):
        train = TrainConfig(steps=10_000, eval_every=100, checkpoint_every=10_000, early_exit_window=100,
                            watch_after=watch_after)  # fmt: skip
        exp = SimpleNamespace(config=SimpleNamespace(train=train), basis=None)
        lane = Lane(Sink(), [], 0)
        run_lanes(exp, Scripted(), [lane])  # type: ignore[arg-type]
        assert lane.reason == Ending.early_exit
        return lane.step

    assert stop_step(0.0) == 600 and stop_step(2.0) == 1500


def test_watch_after_is_an_option_checked_like_the_others():
    assert resolve(None, {"train.watch_after": 3}).train.watch_after == 3.0
    for bad in (-1.0, math.inf, math.nan):
        with pytest.raises(UsageError, match="--watch-after"):
            resolve(None, {"train.watch_after": bad})


# ---- after grokking --------------------------------------------------------------------------------------------


def watched(train_loss, last_norm, val_acc=None, train_acc=None, memorized_at=100, generalized_at=300):
    n = len(train_loss)
    run = history(n, memorized_at=memorized_at, generalized_at=generalized_at)
    for i, record in enumerate(run):
        record["train_loss"] = train_loss[i]
        record["param_norms"] = {"blocks/0": 20.0, "unembed_DC": last_norm[i]}
        if val_acc is not None:
            record["val_acc"] = val_acc[i]
        if train_acc is not None:
            record["train_acc"] = train_acc[i]
    return run


def test_a_slingshot_is_a_loss_spike_with_a_last_layer_norm_jump():
    loss = [1e-2, 1e-3, 1e-5, 1e-8, 0.0, 0.03, 0.01, 1e-4, 1e-7, 0.02, 1e-3, 1e-6]
    norm = [5.0, 5.1, 5.15, 5.2, 5.4, 5.0, 4.8, 4.8, 4.85, 4.86, 4.85, 4.9]
    events = ew.slingshots(watched(loss, norm))
    # 600: 0.03 >= 10 x 1e-4 (floored minimum) with +3.8% at 500; 1,000: the same loss spike, but no norm jump
    assert [e["step"] for e in events] == [600]
    assert events[0]["norm_jump"] == pytest.approx(5.4 / 5.2 - 1, abs=1e-4)
    with_metric = watched(loss, [1.0] * 12)
    for record, value in zip(with_metric, norm, strict=True):
        record["last_layer_norm"] = value  # the recorded signal wins over param_norms
    assert [e["step"] for e in ew.slingshots(with_metric)] == [600]
    quiet = [1e-2, 1e-3, 1e-6, 1e-9, 5e-9, 1e-9, 4e-5, 1e-8]  # 1e-9 -> 4e-5: under 10 x the floor
    assert ew.slingshots(watched(quiet, [5.0 * 1.1**i for i in range(8)])) == []


def test_anti_grokking_and_the_lowest_validation_accuracy_after_generalization():
    val = [0.1, 0.1, 1.0, 1.0, 1.0, 0.95, 0.99, 0.85, 0.5, 0.6]
    train = [0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.97, 1.0, 1.0]
    run = watched([1e-3] * 10, [5.0] * 10, val_acc=val, train_acc=train)
    after = ew.after_generalization(run)
    assert (after["generalized_step"], after["last_step"], after["steps_after"]) == (300, 1000, 700)
    assert (after["lowest_val_acc"], after["lowest_val_step"], after["held_val_acc"]) == (0.5, 900, False)
    # 800 falls below 90% but train accuracy was 97% there; 900 is anti-grokking
    assert after["anti_grokking"] == {"step": 900, "val_acc": 0.5, "train_acc": 1.0}
    steady = ew.after_generalization(watched([1e-3] * 6, [5.0] * 6))
    assert steady["anti_grokking"] is None and steady["slingshots"] == [] and steady["held_val_acc"]
    assert ew.after_generalization(history(6)) is None  # never generalized


# ---- the spectral exponent ---------------------------------------------------------------------------------------


def power_law_samples(alpha, n, xmin=1.0, seed=0):
    """Inverse-CDF draws from p(x) = (alpha - 1) / xmin * (x / xmin)^-alpha, x >= xmin."""
    u = np.random.default_rng(seed).random(n)
    return xmin * (1 - u) ** (-1 / (alpha - 1))


@pytest.mark.parametrize("alpha", [1.8, 2.5, 4.0])
def test_power_law_mle_recovers_a_known_exponent(alpha):
    samples = power_law_samples(alpha, 4000, seed=int(10 * alpha))
    known = ew.power_law_alpha(samples, xmin=1.0)
    assert known is not None and abs(known.alpha - alpha) < 0.1  # the MLE's sd is (alpha - 1) / sqrt(n) ~ 0.05
    chosen = ew.power_law_alpha(samples)  # xmin by the KS distance (Clauset et al. 2009)
    assert chosen is not None and abs(chosen.alpha - alpha) < 0.15 * alpha


def test_ks_choice_of_xmin_skips_a_body_that_is_not_a_power_law():
    rng = np.random.default_rng(1)
    body = rng.uniform(0.1, 5.0, 3000)
    tail = power_law_samples(2.5, 2000, xmin=5.0, seed=2)
    fit = ew.power_law_alpha(np.concatenate([body, tail]))
    assert fit is not None and abs(fit.alpha - 2.5) < 0.25 and 3.0 < fit.xmin < 8.0
    naive = ew.power_law_alpha(np.concatenate([body, tail]), xmin=0.1)
    assert naive is not None and naive.alpha < 1.6  # the body drags a fit from the bottom down
    assert ew.power_law_alpha([1.0, 2.0, 3.0]) is None


def test_alpha_of_a_weight_matrix_with_a_power_law_spectrum_and_of_a_random_one():
    rng = np.random.default_rng(3)
    n = 400
    eigenvalues = np.sort(power_law_samples(2.5, n, seed=4))[::-1]
    u, _ = np.linalg.qr(rng.normal(size=(n, n)))
    v, _ = np.linalg.qr(rng.normal(size=(n, n)))
    weights = u @ np.diag(np.sqrt(eigenvalues)) @ v.T
    assert abs(ew.matrix_alpha(weights) - 2.5) < 0.4
    assert ew.matrix_alpha(rng.normal(size=(200, 400))) > 3  # Marchenko-Pastur: no heavy tail
    assert ew.matrix_alpha(rng.normal(size=(16, 64))) is None  # too few eigenvalues for a fit
    assert ew.as_matrix("w_q_DHK", np.zeros((8, 2, 4))).shape == (8, 8)
    assert ew.as_matrix("w_o_HKD", np.zeros((2, 4, 8))).shape == (8, 8)
    assert ew.as_matrix("embed_OVF", np.zeros((2, 5, 8))).shape == (10, 8)
    assert ew.as_matrix("b_in_F", np.zeros(8)) is None


def test_checkpoint_spectra_read_the_stored_checkpoints(tmp_path):
    from grokkit.checkpoint import save_checkpoint

    rng = np.random.default_rng(5)
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for step in (500, 1000, 1500, 2000):
        arrays = {"params/blocks/0/w_in_DF/value": rng.normal(size=(64, 128)).astype(np.float32),
                  "params/blocks/0/b_in_F/value": np.zeros(64, np.float32),
                  "opt_state/0/mu/blocks/0/w_in_DF/value": np.ones((64, 128), np.float32)}  # fmt: skip
        save_checkpoint(folder, step, arrays, {})
    (folder / "step_000001500.npz").write_bytes(b"damaged")  # its checksum no longer matches: skipped
    spectra = ew.checkpoint_spectra(tmp_path, 1200)
    assert [(row["step"], row["before_generalization"]) for row in spectra] == [(1000, True), (2000, False)]
    assert list(spectra[1]["alphas"]) == ["blocks/0/w_in_DF"] and spectra[1]["heavy_tailed"] == []


def test_report_view_shows_the_new_sections_in_80_columns():
    from grokkit.render import report_view

    loss = [1e-2, 1e-3, 1e-5, 1e-8, 0.0, 0.03, 0.01, 1e-4, 1e-7, 0.02, 1e-3, 1e-6]
    norm = [5.0, 5.1, 5.15, 5.2, 5.4, 5.0, 4.8, 4.8, 4.85, 4.86, 4.85, 4.9]
    run = watched(loss, norm, val_acc=[0.1, 0.1] + [1.0] * 6 + [0.5] + [1.0] * 3)
    for record in run:
        record["softmax_collapse"] = 0.7 if record["step"] == 200 else 0.0
    spectra = [{"step": 1200, "before_generalization": False, "heavy_tailed": ["blocks/0/w_in_DF"],
                "alphas": {"blocks/0/w_in_DF": 1.7, "unembed_DC": 3.1}}]  # fmt: skip
    report = run_report(run, budget=2000, spectra=spectra)
    console = Console(width=80, record=True, color_system=None)
    console.print(report_view("run", resolve(None, {}), report, run, 80, plot=False))
    text = console.export_text()
    assert "early warning (grokkit/early_warning.py)" in text and "softmax collapse" in text
    assert "after generalization: validation 99% at 300, trained to 1,200" in text
    assert "lowest validation accuracy after generalization: 50.0% at step 900" in text
    assert "slingshots (Thilak et al. 2022): 1" in text and "anti-grokking (Prakash & Martin 2025): at step 900" in text
    assert "1.70 (blocks/0/w_in_DF)" in text
    assert max(len(line) for line in text.splitlines()) <= 80
