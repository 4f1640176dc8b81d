"""Overfitting, or waiting to grok? Early-warning signals and what comes after grokking (issue #14, points 3-5).

Every signal has ONE firing rule, a pure function of the metrics history (and, for the local learning
coefficient, of the run's llc.json): it fires at the first evaluation at or after the memorized step (train
accuracy >= 99%, held; `analysis.milestones`) at which its condition holds. Its lead is the generalized step
(validation accuracy >= 99%, held) minus the step it fired (None when the run never generalized). The rules
read only evaluations up to the one they fire at, so the live display (`live_signals`) says what `report`
will say. The thresholds are the named constants below, each with its reason.

"forming" signals say generalization is on its way; "will not" signals say it is not (Prieto et al. 2025).
`SIGNALS` lists them with the rule in words; `early_warning` fires them on a history, `aggregate_signals`
pools them over a sweep's seeds (hits, lead, false alarms).

After grokking (`after_generalization`): the lowest validation accuracy after the generalized step, slingshot
events (Thilak et al. 2022), anti-grokking (Prakash & Martin 2025), and the spectral exponent alpha of every
weight matrix at each stored checkpoint after generalization (`checkpoint_spectra`, numpy on the host).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from grokkit.analysis import CIRCUIT_LOSS, GENERALIZED_ACC, MEMORIZED_ACC, Verdict, first_step_at, milestones

# ---- thresholds: every number a rule uses, in one place -------------------------------------------------------

VAL_LOSS_FALL = 0.5
"""Validation loss has fallen to this fraction of its highest value since memorization (it climbs while the
model memorizes, and halving it is far outside the evaluation-to-evaluation noise of a run that stays put)."""
EMBED_GINI_RISE = 0.1
"""The embedding's Gini in the task's basis has risen this much (absolute, on a 0-1 scale) above its value at
memorization: energy concentrating on a few key components (Nanda et al. 2023)."""
NEURON_GINI_RISE = 0.1
"""The Gini of the per-neuron weight norms has risen this much above its value at memorization: the network
sparsifying onto a few neurons (Merrill et al. 2023)."""
EFF_RANK_FALL = 0.2
"""The embedding's effective rank has fallen this fraction below its highest value since memorization: the
embedding collapsing onto a low-dimensional structure."""
DIST_FALL = 0.1
"""The distance from initialization has fallen this fraction below its highest value so far: weight decay
pulling the weights back in once the training loss no longer needs them."""
NORM_FALL = 0.1
"""The parameter norm has fallen this fraction below its highest value since memorization (the cleanup phase
of Nanda et al. 2023; Liu et al. 2023 tie generalization to the norm shrinking)."""
RELEVANT_SHARE_GROWTH = 2.0
"""Sparse parity: the first layer's weight share on the relevant bits has grown this many times its value at
memorization (Barak et al. 2022, Merrill et al. 2023)."""
LLC_FALL = 0.2
"""The local learning coefficient has fallen this fraction below its highest value so far (it rises while the
model memorizes and falls as it generalizes: Lau et al. 2023, devinterp)."""
COLLAPSE_SHARE = 0.5
"""Softmax collapse: at least this share of the training examples have a float32 loss of exactly 0, so they
give no gradient (Prieto et al. 2025's sign that a run will not grok without intervention)."""
NAIVE_COSINE = -0.9
"""Naive loss minimization: the cosine between the gradient and the parameters is at most this, i.e. the
gradient mostly scales the weights up along themselves (Prieto et al. 2025)."""

SLINGSHOT_LOSS_JUMP = 10.0
"""A slingshot's train loss is at least this many times its running minimum since memorization."""
SLINGSHOT_LOSS_FLOOR = 1e-4
"""A running minimum below this counts as this: float32 losses under it are rounding noise (losses of 1e-9
routinely move 10x from one evaluation to the next), so a spike must reach SLINGSHOT_LOSS_JUMP x 1e-4."""
SLINGSHOT_NORM_JUMP = 0.02
"""...and the last layer's norm grows by at least this fraction over one evaluation interval, at the
evaluation before the spike, at it, or at the next one (Thilak et al. 2022: the norm of the last layer grows
at each spike; at eval-every 25 the growth shows one evaluation before the loss does)."""
ANTI_GROK_ACC = 0.9
"""Anti-grokking: validation accuracy falls below this after it held >= 99%, while train accuracy stays
>= 99% (Prakash & Martin 2025)."""
HEAVY_TAIL_ALPHA = 2.0
"""A weight matrix whose eigenvalue spectrum has a power-law exponent below this is very heavy-tailed;
Prakash & Martin 2025 see alpha < 2 in the layers before anti-grokking."""
ALPHA_MIN_TAIL = 10
"""The fewest eigenvalues a power-law tail is fitted to."""
ALPHA_MIN_EIGENVALUES = 32
"""Weight matrices with fewer positive eigenvalues (position embeddings, narrow layers) get no alpha: on so few
the fit is biased low (measured on Gaussian n x 2n matrices, whose spectrum has no power-law tail: median alpha
2.3 at n = 16, 3.1 at n = 32, 3.6 at n = 64, 5.5 at n = 128)."""
OUTPUT_LAYERS = ("unembed_DC", "out")
"""The output layer's name in `param_norms` (transformer, MLP), where metrics have no last_layer_norm."""


class Kind(StrEnum):
    forming = "forming"  # generalization is on its way
    will_not = "will_not"  # the run will not generalize (as it is)


class Reference(StrEnum):
    """What a signal's value is compared with."""

    none = "none"  # a fixed threshold
    at_memorization = "at_memorization"  # its value at the memorized step's evaluation
    peak_since_memorization = "peak_since_memorization"  # its highest value from memorization to now
    peak_so_far = "peak_so_far"  # its highest value from the start to now


@dataclass(frozen=True)
class Signal:
    name: str  # the metrics key (or "llc"): the stable name in JSON
    label: str  # a few words, for the live line and the tables
    kind: Kind
    rule: str  # the rule in one sentence
    reference: Reference
    holds: Callable[[float, float], bool]  # (value, reference value) -> fires

    def shown(self, value: float) -> str:
        """The current value, as the live line shows a "will not" signal."""
        return f"{100 * value:.0f}%" if self.name == "softmax_collapse" else f"{value:.2f}"


SIGNALS: tuple[Signal, ...] = (
    Signal("restricted_loss", "restricted loss", Kind.forming,
           f"restricted loss (key components only) < {CIRCUIT_LOSS:g}: the circuit alone solves the task",
           Reference.none, lambda v, _: v < CIRCUIT_LOSS),
    Signal("val_loss", "val loss ↓", Kind.forming,
           f"validation loss <= {VAL_LOSS_FALL:g}x its highest value since memorization",
           Reference.peak_since_memorization, lambda v, peak: v <= VAL_LOSS_FALL * peak),
    Signal("param_norm", "|w| ↓", Kind.forming,
           f"parameter norm <= {1 - NORM_FALL:g}x its highest value since memorization",
           Reference.peak_since_memorization, lambda v, peak: v <= (1 - NORM_FALL) * peak),
    Signal("embed_gini", "embedding Gini ↑", Kind.forming,
           f"embedding Gini (task basis) >= its value at memorization + {EMBED_GINI_RISE:g}",
           Reference.at_memorization, lambda v, ref: v >= ref + EMBED_GINI_RISE),
    Signal("neuron_gini", "neuron Gini ↑", Kind.forming,
           f"Gini of the per-neuron norms >= its value at memorization + {NEURON_GINI_RISE:g}",
           Reference.at_memorization, lambda v, ref: v >= ref + NEURON_GINI_RISE),
    Signal("embed_eff_rank", "embedding rank ↓", Kind.forming,
           f"embedding effective rank <= {1 - EFF_RANK_FALL:g}x its highest value since memorization",
           Reference.peak_since_memorization, lambda v, peak: v <= (1 - EFF_RANK_FALL) * peak),
    Signal("dist_from_init", "distance from init ↓", Kind.forming,
           f"distance from initialization <= {1 - DIST_FALL:g}x its highest value so far",
           Reference.peak_so_far, lambda v, peak: v <= (1 - DIST_FALL) * peak),
    Signal("relevant_weight_share", "relevant-bit share ↑", Kind.forming,
           f"weight share on the relevant bits >= {RELEVANT_SHARE_GROWTH:g}x its value at memorization",
           Reference.at_memorization, lambda v, ref: v >= RELEVANT_SHARE_GROWTH * ref),
    Signal("llc", "LLC ↓", Kind.forming,
           f"local learning coefficient (llc.json) <= {1 - LLC_FALL:g}x its highest value so far",
           Reference.peak_so_far, lambda v, peak: v <= (1 - LLC_FALL) * peak),
    Signal("softmax_collapse", "softmax collapse", Kind.will_not,
           f"share of training examples with float32 loss exactly 0 >= {COLLAPSE_SHARE:g}",
           Reference.none, lambda v, _: v >= COLLAPSE_SHARE),
    Signal("grad_cosine", "naive loss minimization", Kind.will_not,
           f"cosine between the gradient and the parameters <= {NAIVE_COSINE:g}",
           Reference.none, lambda v, _: v <= NAIVE_COSINE),
)  # fmt: skip
SIGNAL_BY_NAME = {signal.name: signal for signal in SIGNALS}

Points = list[tuple[int, float]]


def points_of(history: Iterable[Mapping[str, Any]], key: str) -> Points:
    """(step, value) of every evaluation that recorded a finite number under `key`."""
    found = []
    for record in history:
        value = record.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            found.append((int(record["step"]), float(value)))
    return found


def llc_points(llc: list[dict[str, Any]] | None) -> Points:
    """(step, estimate) from `grokkit.llc.load_llc`'s rows (`llc`, or `llc_mean` over the chains; finite values
    only), in step order."""
    rows = [{"step": r["step"], "llc": r.get("llc", r.get("llc_mean"))} for r in llc or [] if "step" in r]
    return sorted(points_of(rows, "llc"))


def fire(signal: Signal, points: Points, memorized: int | None) -> tuple[int, float] | None:
    """The first (step, value) at or after `memorized` at which `signal`'s rule holds (None: never, or never
    memorized). Only points up to that one are read."""
    if memorized is None or not points:
        return None
    before = [value for step, value in points if step <= memorized]
    at_memorization = before[-1] if before else points[0][1]
    peak_all = peak_since = -math.inf
    for step, value in points:
        peak_all = max(peak_all, value)
        if step < memorized:
            continue
        peak_since = max(peak_since, value)
        reference = {
            Reference.none: 0.0,
            Reference.at_memorization: at_memorization,
            Reference.peak_since_memorization: peak_since,
            Reference.peak_so_far: peak_all,
        }[signal.reference]
        if signal.holds(value, reference):
            return step, value
    return None


def signal_points(history: list[dict[str, Any]], llc: list[dict[str, Any]] | None = None) -> dict[str, Points]:
    """The series of every signal the run recorded (the LLC's only where llc.json has entries)."""
    found = {}
    for signal in SIGNALS:
        points = llc_points(llc) if signal.name == "llc" else points_of(history, signal.name)
        if points:
            found[signal.name] = points
    return found


def early_warning(history: list[dict[str, Any]], llc: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every recorded signal's rule, the step it fired (None: never) and its lead over the generalized step:
    [{signal, label, kind, rule, fired_step, lead_steps}] (`report --json`'s early_warning)."""
    found = milestones(history)
    memorized, generalized = found["memorized_step"], found["generalized_step"]
    rows = []
    for name, points in signal_points(history, llc).items():
        signal = SIGNAL_BY_NAME[name]
        fired = fire(signal, points, memorized)
        step = fired[0] if fired else None
        lead = generalized - step if step is not None and generalized is not None else None
        rows.append({"signal": name, "label": signal.label, "kind": signal.kind.value, "rule": signal.rule,
                     "fired_step": step, "lead_steps": lead})  # fmt: skip
    return rows


@dataclass(frozen=True)
class Watched:
    signal: Signal
    fired_step: int | None  # where it fired (None: not yet)
    value: float  # its latest value


def live_signals(history: list[dict[str, Any]], memorized: int) -> list[Watched]:
    """Every signal the run records, with the step it fired at since `memorized` (the settled memorized step;
    None: not yet) by the same rules as `early_warning`, and its latest value (the live display's one line)."""
    watched = []
    for name, points in signal_points(history).items():
        hit = fire(SIGNAL_BY_NAME[name], points, memorized)
        watched.append(Watched(SIGNAL_BY_NAME[name], None if hit is None else hit[0], points[-1][1]))
    return watched


# ---- sweeps: pooled over seeds -----------------------------------------------------------------------------------

NEVER_GENERALIZED = (Verdict.memorization_only,)
"""Verdicts of the members a false alarm can happen on: memorized, then spent the budget without generalizing
(a member that never fit its training set cannot fire, as rules start at memorization; members still training
are not counted)."""


def aggregate_signals(reports: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per signal over the members of one grid point: of the members that generalized, how many it fired for
    before their generalized step (lead > 0), the median and range of those leads; of the members that memorized
    and spent their budget without generalizing (NEVER_GENERALIZED), how many it fired for. `false_alarms` of
    `false_alarm_runs` is the second count for a "forming" signal, the first for a "will not" signal."""
    stats: dict[str, dict[str, Any]] = {}
    for report in reports:
        generalized = report.get("generalized_step")
        never = generalized is None and report.get("verdict") in NEVER_GENERALIZED
        for entry in report.get("early_warning") or []:
            empty = {"generalized_runs": 0, "fired_before": 0, "leads": [], "never_generalized_runs": 0,
                     "fired_never_generalized": 0}  # fmt: skip
            row = stats.setdefault(entry["signal"], empty)
            fired = entry["fired_step"] is not None
            if generalized is not None:
                row["generalized_runs"] += 1
                if fired and entry["lead_steps"] > 0:
                    row["fired_before"] += 1
                    row["leads"].append(entry["lead_steps"])
            elif never:
                row["never_generalized_runs"] += 1
                row["fired_never_generalized"] += fired
    out = []
    for signal in SIGNALS:
        if signal.name not in stats:
            continue
        row = stats[signal.name]
        leads = row.pop("leads")
        forming = signal.kind == Kind.forming
        out.append({
            "signal": signal.name, "label": signal.label, "kind": signal.kind.value, "rule": signal.rule, **row,
            "lead_median": statistics.median(leads) if leads else None,
            "lead_min": min(leads) if leads else None,
            "lead_max": max(leads) if leads else None,
            "false_alarms": row["fired_never_generalized"] if forming else row["fired_before"],
            "false_alarm_runs": row["never_generalized_runs"] if forming else row["generalized_runs"],
        })  # fmt: skip
    return out


# ---- after grokking ------------------------------------------------------------------------------------------------


def last_layer_norm(record: Mapping[str, Any]) -> float | None:
    """The output layer's weight norm: `last_layer_norm` where recorded, else its entry in `param_norms`."""
    if isinstance(record.get("last_layer_norm"), int | float):
        return float(record["last_layer_norm"])
    norms = record.get("param_norms") or {}
    return next((float(norms[name]) for name in OUTPUT_LAYERS if name in norms), None)


def slingshots(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Slingshot events (Thilak et al. 2022) from memorization on, by the rule: an evaluation whose train loss
    is >= SLINGSHOT_LOSS_JUMP x its running minimum since memorization (floored at SLINGSHOT_LOSS_FLOOR), the
    previous one's not, with the last layer's norm grown >= SLINGSHOT_NORM_JUMP over one evaluation interval at
    the evaluation before, at, or after it. One event per run of such evaluations, at its first step."""
    memorized = first_step_at(history, "train_acc", MEMORIZED_ACC)
    if memorized is None:
        return []
    records = [r for r in history if r["step"] >= memorized and isinstance(r.get("train_loss"), int | float)]
    norms = [last_layer_norm(r) for r in records]

    def growth(j: int) -> float | None:
        if j < 1 or j >= len(records) or norms[j] is None or not norms[j - 1]:
            return None
        return norms[j] / norms[j - 1] - 1  # type: ignore[operator]

    events, minimum, spiking = [], math.inf, False
    for i, record in enumerate(records):
        loss = record["train_loss"]
        threshold = SLINGSHOT_LOSS_JUMP * max(minimum, SLINGSHOT_LOSS_FLOOR)
        spike = i > 0 and loss >= threshold
        if spike and not spiking:
            jumps = [g for g in (growth(j) for j in (i - 1, i, i + 1)) if g is not None]
            if jumps and max(jumps) >= SLINGSHOT_NORM_JUMP:
                events.append({"step": record["step"], "train_loss": loss, "running_min": minimum,
                               "norm_jump": round(max(jumps), 4), "train_acc": record["train_acc"],
                               "val_acc": record["val_acc"]})  # fmt: skip
        spiking = spike
        minimum = min(minimum, loss)
    return events


def anti_grokking(history: list[dict[str, Any]], generalized: int | None) -> dict[str, Any] | None:
    """Anti-grokking (Prakash & Martin 2025), by the rule: the first evaluation after the generalized step with
    validation accuracy < ANTI_GROK_ACC while train accuracy is >= 99% (None: none)."""
    if generalized is None:
        return None
    for record in history:
        if record["step"] > generalized and record["val_acc"] < ANTI_GROK_ACC and record["train_acc"] >= MEMORIZED_ACC:
            return {"step": record["step"], "val_acc": record["val_acc"], "train_acc": record["train_acc"]}
    return None


def after_generalization(
    history: list[dict[str, Any]], spectra: list[dict[str, Any]] | None = None
) -> dict[str, Any] | None:
    """What happened after the generalized step, for runs with evaluations after it (None otherwise): the lowest
    validation accuracy and its step, slingshots (those before generalization too, marked), anti-grokking, and
    `spectra` (`checkpoint_spectra`) when given."""
    generalized = milestones(history)["generalized_step"]
    after = [r for r in history if generalized is not None and r["step"] > generalized]
    if not after:
        return None
    lowest = min(after, key=lambda r: r["val_acc"])
    events = [{**e, "after_generalization": e["step"] > generalized} for e in slingshots(history)]
    return {
        "generalized_step": generalized,
        "last_step": after[-1]["step"],
        "steps_after": after[-1]["step"] - generalized,
        "evaluations_after": len(after),
        "lowest_val_acc": lowest["val_acc"],
        "lowest_val_step": lowest["step"],
        "held_val_acc": all(r["val_acc"] >= GENERALIZED_ACC for r in after),
        "slingshots": events,
        "anti_grokking": anti_grokking(history, generalized),
        "spectra": spectra,
    }


# ---- the spectral exponent alpha -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PowerLawFit:
    alpha: float
    xmin: float
    n_tail: int
    ks: float  # Kolmogorov-Smirnov distance between the tail and the fitted law


def power_law_alpha(samples: Iterable[float], xmin: float | None = None) -> PowerLawFit | None:
    """The exponent of a continuous power law p(x) ~ x^-alpha fitted to the tail x >= xmin of `samples`.

    The estimator: the maximum-likelihood alpha = 1 + n / sum(ln(x_i / xmin)) over the n tail samples, with xmin
    (unless given) the sample value that minimizes the Kolmogorov-Smirnov distance between the tail's empirical
    distribution and the fitted one, over tails of at least ALPHA_MIN_TAIL samples (Clauset, Shalizi & Newman
    2009, as WeightWatcher fits layer spectra). None when fewer positive finite samples than that.
    """
    x = np.sort(np.asarray([v for v in samples if math.isfinite(v) and v > 0], dtype=np.float64))
    if len(x) < ALPHA_MIN_TAIL:
        return None
    logs = np.log(x)
    suffix = np.cumsum(logs[::-1])[::-1]  # suffix[i] = sum(logs[i:])
    if xmin is not None:
        start = int(np.searchsorted(x, xmin, side="left"))
        candidates = [start] if len(x) - start >= 2 else []
    else:
        candidates = [i for i in range(len(x) - ALPHA_MIN_TAIL + 1) if i == 0 or x[i] > x[i - 1]]
    best: PowerLawFit | None = None
    for i in candidates:
        floor = x[i] if xmin is None else float(xmin)
        n = len(x) - i
        spread = suffix[i] - n * math.log(floor)
        if spread <= 0:
            continue
        alpha = 1 + n / spread
        tail = x[i:]
        fitted = 1 - (tail / floor) ** (1 - alpha)
        ranks = np.arange(n)
        ks = float(max(np.max(np.abs((ranks + 1) / n - fitted)), np.max(np.abs(ranks / n - fitted))))
        if best is None or ks < best.ks:
            best = PowerLawFit(float(alpha), float(floor), n, ks)
    return best


def matrix_alpha(weights: np.ndarray) -> float | None:
    """alpha of the eigenvalues of W^T W (the squared singular values of W), by `power_law_alpha`; None for
    matrices with fewer than ALPHA_MIN_EIGENVALUES positive eigenvalues."""
    eigenvalues = np.linalg.svd(np.asarray(weights, dtype=np.float64), compute_uv=False) ** 2
    positive = eigenvalues[eigenvalues > eigenvalues.max(initial=0.0) * 1e-12]
    if len(positive) < ALPHA_MIN_EIGENVALUES:
        return None
    fit = power_law_alpha(positive)
    return None if fit is None else fit.alpha


def as_matrix(name: str, array: np.ndarray) -> np.ndarray | None:
    """A weight as a matrix: 2-D as it is; a 3-D weight with its model dimension D on one side (w_q_DHK as
    D x HK, w_o_HKD as HK x D, embed_OVF as OV x F); anything else (biases, norms) None."""
    if array.ndim == 2:
        return array
    if array.ndim == 3:
        axes = name.rsplit("_", 1)[-1]
        first_is_model = len(axes) == 3 and axes.isupper() and axes[0] == "D"
        return array.reshape(array.shape[0], -1) if first_is_model else array.reshape(-1, array.shape[-1])
    return None


def layer_alphas(arrays: Mapping[str, np.ndarray]) -> dict[str, float]:
    """alpha per weight matrix of one checkpoint's arrays (`checkpoint.load_checkpoint`), by layer name."""
    found = {}
    for key, array in sorted(arrays.items()):
        if not key.startswith("params/"):
            continue
        name = key.removeprefix("params/").removesuffix("/value")
        matrix = as_matrix(name, np.asarray(array))
        alpha = None if matrix is None else matrix_alpha(matrix)
        if alpha is not None:
            found[name] = round(alpha, 3)
    return found


def checkpoint_spectra(run_path: Path, generalized: int) -> list[dict[str, Any]]:
    """alpha of every weight matrix at each valid stored checkpoint from `generalized` on, and at the newest one
    before it as the reference (marked before_generalization):
    [{step, before_generalization, alphas: {layer: alpha}, heavy_tailed: [layers with alpha < HEAVY_TAIL_ALPHA]}]."""
    from grokkit.checkpoint import CheckpointError, list_checkpoints, load_checkpoint

    loaded = []
    for info in list_checkpoints(Path(run_path) / "checkpoints"):
        try:
            arrays, _ = load_checkpoint(info)
        except CheckpointError:
            continue
        loaded.append((info.step, arrays))
    before = [item for item in loaded if item[0] < generalized][-1:]
    out = []
    for step, arrays in before + [item for item in loaded if item[0] >= generalized]:
        alphas = layer_alphas(arrays)
        heavy = [name for name, alpha in alphas.items() if alpha < HEAVY_TAIL_ALPHA]
        out.append({"step": step, "before_generalization": step < generalized, "alphas": alphas,
                    "heavy_tailed": heavy})  # fmt: skip
    return out


# ---- what a run folder adds to its report --------------------------------------------------------------------------


def load_llc_trajectory(run_path: Path) -> list[dict[str, Any]] | None:
    """The run's llc.json entries (`grokkit.llc_store.load_llc`), or None: not estimated or unreadable; the LLC
    signal is then left out (report stays readable whatever llc.json holds)."""
    from grokkit.errors import UsageError
    from grokkit.llc_store import load_llc

    try:
        found = load_llc(run_path)
    except (OSError, ValueError, KeyError, TypeError, UsageError):
        return None
    return found if isinstance(found, list) else None


def run_folder_signals(run_path: Path, history: list[dict[str, Any]]) -> dict[str, Any]:
    """`analysis.run_report`'s keyword arguments read from the run folder: the LLC trajectory, and alpha at the
    checkpoints after generalization (only for runs with evaluations after it)."""
    generalized = milestones(history)["generalized_step"]
    continued = generalized is not None and history[-1]["step"] > generalized
    spectra = checkpoint_spectra(run_path, generalized) if continued and generalized is not None else None
    return {"llc": load_llc_trajectory(run_path), "spectra": spectra}
