"""The early-warning benchmark (issue #14): how far ahead of the jump each signal fires, and how often it
fires on runs that never generalize.

Usage: python benchmarks/early_warning.py [--seeds 8] [--out DIR] [--quick] [--json]

Trains one sweep per setting (real `grokkit sweep` processes, one after another), then reads every
member's `report` (its `early_warning` rows: signal, rule, fired step, lead) and prints, per signal:
the share of generalizing runs where it fired before validation 99%, the median and range of the lead,
and the false-alarm share (fired on runs that never generalized within their budget). "will not"
signals are scored the other way round: a hit is firing on a run that did not generalize.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

GROKKIT = [sys.executable, "-m", "grokkit"]
SMALL = ["--p", "41", "--d-model", "64", "--heads", "2", "--d-mlp", "128", "--eval-every", "25"]
"""The test suite's quick-grokking transformer (1 layer, d 64): a+b mod 41 groks in ~1,300 steps."""

SETTINGS: dict[str, tuple[list[str], bool]] = {
    # name: (flags, expected to generalize within its budget)
    "mod-add p41, 50% train": ([*SMALL, "--task", "mod-add", "--train-frac", "0.5", "--steps", "6000"], True),
    "mod-add p41, 40% train": ([*SMALL, "--task", "mod-add", "--train-frac", "0.4", "--steps", "15000"], True),
    "mod-mul p41, 50% train": ([*SMALL, "--task", "mod-mul", "--train-frac", "0.5", "--steps", "6000"], True),
    "mod-sub p41, 50% train": ([*SMALL, "--task", "mod-sub", "--train-frac", "0.5", "--steps", "12000"], True),
    "sparse parity (merrill2023-parity)": (["--preset", "merrill2023-parity", "--steps", "30000"], True),
    "rand p41 (memorization only)": ([*SMALL, "--task", "rand", "--train-frac", "0.5", "--steps", "3000"], False),
    "mod-add p41, wd 0": ([*SMALL, "--task", "mod-add", "--train-frac", "0.5", "--wd", "0", "--steps", "3000"], False),
    "mod-add p41, 10% train": ([*SMALL, "--task", "mod-add", "--train-frac", "0.1", "--steps", "3000"], False),
}


def train_sweep(flags: list[str], seeds: int, out: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    args = [*GROKKIT, "sweep", *flags, "--seed", f"0:{seeds}", "--run-dir", str(out)]
    subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def member_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    """Per member: whether it generalized, its budget, and its early-warning rows."""
    from grokkit.reporting import load_sweep

    rows = []
    for member in load_sweep(sweep_dir).members:
        report = member["report"]
        if report is None:
            continue
        rows.append(
            {
                "name": member["name"],
                "generalized_step": report["generalized_step"],
                "steps": report["steps"],
                "early_warning": report.get("early_warning") or [],
            }
        )
    return rows


def score(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per signal, over the runs that generalized (fired before validation 99%, lead), the control runs (settings
    built not to generalize: a forming signal firing there is a false alarm, a "will not" signal a hit) and the
    runs of grokking settings that ran out of budget first (neither: they may have been on their way)."""
    grokked = [r for r in runs if r["generalized_step"] is not None]
    controls = [r for r in runs if r["generalized_step"] is None and not r["expected"]]
    out_of_budget = [r for r in runs if r["generalized_step"] is None and r["expected"]]
    signals: dict[str, dict[str, Any]] = {}
    for run in runs:
        for row in run["early_warning"]:
            signals.setdefault(row["signal"], {"rule": row["rule"], "kind": row.get("kind", "forming")})
    table = []
    for name, info in signals.items():

        def fired(run: dict[str, Any], name: str = name) -> dict[str, Any] | None:
            return next((w for w in run["early_warning"] if w["signal"] == name and w["fired_step"] is not None), None)

        before = [fired(r) for r in grokked]
        leads = [
            w["lead_steps"] for w in before if w is not None and w["lead_steps"] is not None and w["lead_steps"] > 0
        ]
        table.append(
            {
                "signal": name,
                "rule": info["rule"],
                "kind": info["kind"],
                "fired_before": len(leads),
                "grokked_runs": len(grokked),
                "median_lead": statistics.median(leads) if leads else None,
                "lead_range": [min(leads), max(leads)] if leads else None,
                "fired_on_controls": sum(fired(r) is not None for r in controls),
                "control_runs": len(controls),
                "fired_out_of_budget": sum(fired(r) is not None for r in out_of_budget),
                "out_of_budget_runs": len(out_of_budget),
            }
        )
    return table


def render(table: list[dict[str, Any]], title: str) -> Table:
    out = Table(title=title, title_justify="left")
    columns = ("signal", "kind", "fired before val 99%", "median lead [range]", "fired on controls",
               "fired on out-of-budget")  # fmt: skip
    for column in columns:
        out.add_column(column, justify="left" if column in ("signal", "kind") else "right")
    for row in sorted(table, key=lambda r: (r["kind"], -r["fired_before"])):
        lead = "—"
        if row["median_lead"] is not None:
            lead = f"{row['median_lead']:,.0f} [{row['lead_range'][0]:,}–{row['lead_range'][1]:,}]"
        out.add_row(
            row["signal"],
            row["kind"],
            f"{row['fired_before']}/{row['grokked_runs']}",
            lead,
            f"{row['fired_on_controls']}/{row['control_runs']}",
            f"{row['fired_out_of_budget']}/{row['out_of_budget_runs']}",
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8, help="seeds per setting (default 8)")
    parser.add_argument("--out", type=Path, help="keep the sweeps here (default: a temporary folder)")
    parser.add_argument("--quick", action="store_true", help="2 seeds per setting")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    args = parser.parse_args()
    seeds = 2 if args.quick else args.seeds
    console = Console(width=160)
    with tempfile.TemporaryDirectory() as scratch:
        root = args.out or Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "COLUMNS": "120", "GROKKIT_CACHE_DIR": str(root / "cache")}
        runs, settings = [], []
        for index, (name, (flags, expected)) in enumerate(SETTINGS.items()):
            sweep_dir = root / f"setting{index}"
            seconds = train_sweep(flags, seeds, sweep_dir, env) if not (sweep_dir / "sweep.json").exists() else 0.0
            members = member_rows(sweep_dir)
            grokked = sum(m["generalized_step"] is not None for m in members)
            settings.append({"setting": name, "flags": flags, "expected": expected, "runs": len(members),
                             "generalized": grokked, "seconds": round(seconds, 1)})  # fmt: skip
            runs += [{**m, "setting": name, "expected": expected} for m in members]
        table = score(runs)
        if args.json:
            console.out(json.dumps({"settings": settings, "signals": table}), highlight=False)
            return
        overview = Table(title="settings", title_justify="left")
        for column in ("setting", "runs", "generalized", "seconds"):
            overview.add_column(column)
        for s in settings:
            overview.add_row(s["setting"], str(s["runs"]), str(s["generalized"]), f"{s['seconds']:.0f}")
        console.print(overview)
        grokked = sum(r["generalized_step"] is not None for r in runs)
        controls = sum(r["generalized_step"] is None and not r["expected"] for r in runs)
        title = (f"early warning over {len(runs)} runs: {grokked} generalized, {controls} controls (built not to), "
                 f"{len(runs) - grokked - controls} out of budget before generalizing")  # fmt: skip
        console.print(render(table, title))
        console.print("forming signals: firing on a control is a false alarm; will_not signals: firing before "
                      "val 99% is a false alarm, firing on a control a hit")  # fmt: skip
        for row in sorted(table, key=lambda r: r["signal"]):
            console.print(f"  {row['signal']}: {row['rule']}")


if __name__ == "__main__":
    main()
