"""`grokkit reproduce`: a preset run over seeds the way its paper reports it, beside the paper's figures.

Verdict rule (one claim, our seeds against the paper's figure, steps to the paper's threshold):
- a paper that reports a step (or a range over its runs): "not reproduced within budget" when fewer than half of
  our seeds got there (the Kaplan–Meier median is censored); otherwise our seed range [fastest, slowest] (a seed
  that never got there counts as slower than any step) against the paper's [low, high]: "within spread" where
  they overlap, "faster" when every seed of ours got there before the paper's low, "slower" when every seed
  got there after its high;
- a paper that reports the threshold never reached within its budget: "reproduced" when fewer than half of our
  seeds reached it either (the table shows both budgets), "generalized" when our median did.
A preset whose paper gives no figure for its setup gets our steps to 99% validation accuracy and no verdict.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from enum import StrEnum
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from grokkit.analysis import first_step_at
from grokkit.config import resolve
from grokkit.errors import UsageError
from grokkit.presets import PRESETS, Claim, Measure, get_preset
from grokkit.survival import Sample, summary
from grokkit.sweep import SweepSpec

RECORDS_FILE = Path(__file__).with_name("reproductions.json")
MAX_SEEDS = 1000


class Verdict(StrEnum):
    within = "within spread"
    faster = "faster"
    slower = "slower"
    not_reproduced = "not reproduced within budget"
    never = "reproduced: never got there"
    generalized = "generalized (the paper's did not)"


NO_FIGURE = Claim(Measure.val_acc, 0.99, None, 0, "no figure for this setup in the paper")


def check_seeds(seeds: int | None) -> None:
    if seeds is not None and not 1 <= seeds <= MAX_SEEDS:
        raise UsageError(f"must be between 1 and {MAX_SEEDS:,} seeds, got {seeds:,}", option="--seeds")


def reproduction_spec(preset: str, seeds: int | None = None, steps: int | None = None) -> SweepSpec:
    """The preset plus its reproduction settings (and a budget, if given), over seeds 0..N-1."""
    found = get_preset(preset)
    check_seeds(seeds)
    given: dict[str, Any] = dict(found.reproduce)
    if steps is not None:
        given["train.steps"] = steps
    return SweepSpec(resolve(preset, given), {"seed": list(range(found.seeds if seeds is None else seeds))})


def default_reproduction_dir(preset: str, seeds: int | None = None, steps: int | None = None) -> Path:
    """runs/reproduce/PRESET-Nseeds[-Bsteps]: one folder per (seeds, budget), so a rerun resumes it."""
    count = get_preset(preset).seeds if seeds is None else seeds
    return Path("runs", "reproduce", f"{preset}-{count}seeds" + ("" if steps is None else f"-{steps}steps"))


def steps_to(history: list[dict[str, Any]], claim: Claim) -> int | None:
    """The step at which a run got to the claim's threshold, held as every milestone is (`first_step_at`)."""
    if claim.measure is Measure.val_acc:
        return first_step_at(history, "val_acc", claim.threshold)
    # val loss < t  <=>  -val loss >= the float just above -t
    flipped = [{"step": r["step"], "minus_loss": -r["val_loss"]} for r in history if "val_loss" in r]
    return first_step_at(flipped, "minus_loss", float(np.nextafter(-claim.threshold, math.inf)))


def verdict(claim: Claim, sample: Sample) -> Verdict:
    """The rule in the module docstring."""
    pooled = summary(sample)
    if claim.steps is None:
        return Verdict.never if pooled["median"] is None else Verdict.generalized
    if pooled["median"] is None:
        return Verdict.not_reproduced
    low, high = claim.steps
    fastest = pooled["min"]
    slowest = math.inf if sample.censored else pooled["max"]
    if slowest < low:
        return Verdict.faster
    if fastest > high:
        return Verdict.slower
    return Verdict.within


def evaluate(preset: str, histories: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per claim of the preset: our seeds' censored statistics, the paper's figure and the verdict."""
    rows = []
    claims = get_preset(preset).claims
    for claim in claims or (NO_FIGURE,):
        sample = Sample.of((steps_to(h, claim), h[-1]["step"] if h else None) for h in histories)
        rows.append(
            {
                "claim": claim.label,
                "paper_steps": list(claim.steps) if claim.steps else None,
                "paper_budget": claim.budget if claims else None,
                "where": claim.where,
                **summary(sample),
                "verdict": str(verdict(claim, sample)) if sample.n and claims else None,
            }
        )
    return rows


def reproduction_result(preset: str, spec: SweepSpec, histories: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """What `reproduce` prints and `--record` stores: the setup, the claims' rows and the training wall-clock."""
    wall = max((h[-1].get("elapsed_s", 0.0) for h in histories if h), default=0.0)
    seeds = len(spec.axes.get("seed", [spec.base.seed]))
    return {
        "preset": preset,
        "seeds": seeds,
        "budget": spec.base.train.steps,
        "command": command_line(preset, seeds, spec.base.train.steps),
        "wall_s": round(wall, 1),  # members of a sweep train one after another here: this is all seeds together
        "claims": evaluate(preset, histories),
        "steps_trained": [h[-1]["step"] if h else 0 for h in histories],
    }


def command_line(preset: str, seeds: int, steps: int) -> str:
    """The shortest `grokkit reproduce` command that makes this reproduction."""
    found = get_preset(preset)
    default_steps = reproduction_spec(preset).base.train.steps
    parts = ["grokkit reproduce", preset]
    if seeds != found.seeds:
        parts.append(f"--seeds {seeds}")
    if steps != default_steps:
        parts.append(f"--steps {steps}")
    return " ".join(parts)


def machine() -> str:
    """This machine in a few words: CPU model and core count (what makes figures comparable)."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


def load_records(path: Path = RECORDS_FILE) -> dict[str, Any]:
    """The last recorded reproduction of each preset (the data file shipped with grokkit)."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}


def record(result: dict[str, Any], path: Path = RECORDS_FILE) -> None:
    """Store `result` as its preset's last reproduction, with the date, machine and versions."""
    from grokkit import __version__
    from grokkit.atomic import atomic_write_json

    records = load_records(path)
    records[result["preset"]] = {
        **result,
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "versions": f"grokkit {__version__}, jax {version('jax')}",
    }
    try:
        atomic_write_json(path, dict(sorted(records.items())))
    except OSError as err:
        raise UsageError(f"cannot write {path}: {err.strerror}", option="--record") from None


def wall_text(seconds: float) -> str:
    """A wall-clock for the tables: "45 s" under a minute and a half, else "12.3 min"."""
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def steps_cell(row: dict[str, Any]) -> str:
    """Ours as "median [fastest–slowest] k/n", "> budget" when the median is censored."""
    if row["median"] is not None:
        head = f"{row['median']:,.0f}"
    elif row["median_above"] is not None:
        head = f"> {row['median_above']:,.0f}"
    else:
        head = "—"
    spread = ""
    if row["min"] is not None and row["min"] != row["max"]:
        spread = f" [{row['min']:,}–{row['max']:,}]"
    return f"{head}{spread} ({row['reached']}/{row['runs']})"


def paper_cell(row: dict[str, Any]) -> str:
    """The paper's figure: "39,890", "14,864–37,728", "never in 80,000", or "—" where it gives none."""
    steps = row["paper_steps"]
    if row["paper_budget"] is None:
        return "—"
    if steps is None:
        return f"never in {row['paper_budget']:,}"
    low, high = steps
    return f"{low:,}" if low == high else f"{low:,}–{high:,}"


def markdown_table(records: dict[str, Any]) -> str:
    """The README's reproduction table: one row per claim of every preset, in PRESETS order."""
    lines = [
        "| command | the paper's figure | paper | ours: median [range] (k/n) | budget | wall-clock | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, preset in PRESETS.items():
        found = records.get(name)
        for claim in preset.claims or (NO_FIGURE,):
            row = next((r for r in (found or {}).get("claims", []) if r["claim"] == claim.label), None)
            if found is None or row is None:
                lines.append(f"| `{name}` | {claim.label} ({claim.where}) | | not run | | | |")
                continue
            wall = f"{wall_text(found['wall_s'])} ({found['seeds']} seed{'s' if found['seeds'] > 1 else ''})"
            lines.append(
                f"| `{found['command']}` | {claim.label} ({claim.where}) | {paper_cell(row)} | {steps_cell(row)} | "
                f"{found['budget']:,} | {wall} | {row['verdict'] or ''} |"
            )
    return "\n".join(lines)
