"""Sweeps of 2, 4 and 8 seeds against the same seeds as sequential `grokkit train` runs, and the largest nanda2023
sweep that fits in memory.

Usage: python benchmarks/sweep_bench.py [--seeds 2 4 8] [--devices auto 1] [--config default|small]
       [--no-capacity] [--json]

--devices: `auto` is what `grokkit sweep` does when XLA_FLAGS sets no device count (one CPU device per core, at most
one per member; `grokkit.jax_setup.one_device_per_core`); a number forces that many devices through XLA_FLAGS.
--config small is the test suite's quick-grokking setup (p=41, d_model 64, 50% train): short runs,
where a sweep's savings (one start-up and compilation, finished members costing nothing) weigh most.
On a CPU a sweep trains its members one after another on each device (`group.vectorize_members`), vmapped
elsewhere; benchmarks/sweep_modes.py compares the two ways in one process.

Every figure is wall-clock of real `grokkit` processes (start-up, compilation and early exit included), each run
in a fresh folder with a fresh compilation cache, one after the other. The N sequential runs are seeds 0..N-1 of
one series of 8 (the first N of them), so every sweep is compared with the same runs it contains.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

GROKKIT = [sys.executable, "-m", "grokkit"]


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([*GROKKIT, *args], cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _env(cache: Path, devices: str = "auto") -> dict[str, str]:
    env = {**os.environ, "GROKKIT_CACHE_DIR": str(cache), "COLUMNS": "120"}
    env.pop("XLA_FLAGS", None)
    env.pop("JAX_NUM_CPU_DEVICES", None)
    if devices != "auto":
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def _device_count(run_dir: Path) -> int:
    return json.loads((run_dir / "env.json").read_text())["device_count"]


def _generalized(run_dir: Path) -> int | None:
    return json.loads((run_dir / "summary.json").read_text()).get("generalized_step")


SETUPS = {
    "default": [],
    "small": ["--p", "41", "--train-frac", "0.5", "--d-model", "64", "--heads", "2", "--d-mlp", "128",
              "--eval-every", "25", "--early-exit-window", "100"],
}  # fmt: skip


TARGET_8 = 0.85
"""Issue #17: an 8-seed sweep takes at most 0.85x the wall-clock of the same 8 runs one at a time, and a sweep of
any size is never slower than them."""


def sequential(seeds: int, root: Path, flags: list[str]) -> dict:
    env = _env(root / "cache-seq")
    times, steps = [], []
    for seed in range(seeds):
        run_dir = root / f"seq-{seed}"
        times.append(_run(["train", *flags, "--seed", str(seed), "--run-dir", str(run_dir)], root, env))
        steps.append(_generalized(run_dir))
    return {"wall_s": sum(times), "per_run_s": times, "generalized_steps": steps}


def swept(seeds: int, devices: str, root: Path, flags: list[str]) -> dict:
    sweep_dir = root / f"sweep-{seeds}-{devices}"
    env = _env(root / f"cache-sweep-{seeds}-{devices}", devices)
    wall = _run(["sweep", *flags, "--seed", f"0:{seeds}", "--run-dir", str(sweep_dir)], root, env)
    steps = [_generalized(sweep_dir / f"seed={seed}") for seed in range(seeds)]
    return {"seeds": seeds, "devices": devices, "device_count": _device_count(sweep_dir / "seed=0"), "wall_s": wall,
            "generalized_steps": steps}  # fmt: skip


CAPACITY_PROBE = """
import json, sys
from grokkit.jax_setup import configure_jax
configure_jax()
from grokkit.config import resolve
from grokkit.group import stack_data, Member
from grokkit.train import Lane, RunSink, make_experiment, make_init_fn, make_chunk_fn
import jax, numpy as np
m = int(sys.argv[1])
exp = make_experiment(resolve("nanda2023"))
init = make_init_fn(exp)
states = [init(resolve("nanda2023", {"seed": s})) for s in range(m)]
state = jax.tree.map(lambda *xs: np.stack(xs), *[jax.device_get(s) for s in states])
members = [Member(exp, s, Lane(RunSink(), [], 0)) for s in states[:1]] * m
data, axes = stack_data(members)
chunk = make_chunk_fn(exp, axes)
state, metrics = chunk(state, data, 1)
jax.block_until_ready(metrics)
import resource
print(json.dumps({"members": m, "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def capacity(root: Path) -> dict:
    """Peak RSS of one nanda2023 chunk at growing member counts; the largest count that ran, and the extrapolation."""
    env = _env(root / "cache-capacity")
    total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    points = []
    members = 8
    while True:
        out = subprocess.run([sys.executable, "-c", CAPACITY_PROBE, str(members)], env=env, capture_output=True,
                             text=True)  # fmt: skip
        if out.returncode != 0:
            break
        points.append(json.loads(out.stdout.strip().splitlines()[-1]))
        if points[-1]["max_rss_mb"] * 2 > 0.8 * total_mb:
            break
        members *= 2
    (m0, r0), (m1, r1) = [(p["members"], p["max_rss_mb"]) for p in (points[0], points[-1])]
    per_member = (r1 - r0) / (m1 - m0)
    fit = int((0.9 * total_mb - (r0 - per_member * m0)) / per_member)
    return {"points": points, "per_member_mb": per_member, "memory_mb": total_mb, "largest_run": m1,
            "estimated_fit_90pct": fit}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--devices", nargs="+", default=["auto"], help="auto, or a device count forced by XLA_FLAGS")
    parser.add_argument("--config", choices=sorted(SETUPS), default="default")
    parser.add_argument("--no-sequential", action="store_true")
    parser.add_argument("--no-capacity", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if any(d != "auto" and not (d.isdigit() and int(d) > 0) for d in args.devices):
        parser.error("--devices takes auto or positive counts")
    if any(n < 1 for n in args.seeds):
        parser.error("--seeds takes positive counts")
    console = Console(highlight=False)
    results: dict = {"config": args.config, "cpu": _cpu_name(), "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="grokkit-sweep-bench-") as tmp:
        root = Path(tmp)
        if not args.no_sequential:
            console.print(f"[dim]{max(args.seeds)} sequential `grokkit train --seed i` runs ({args.config})...[/]")
            results["sequential"] = sequential(max(args.seeds), root, SETUPS[args.config])
        results["sweeps"] = []
        for seeds in args.seeds:
            for devices in args.devices:
                console.print(f"[dim]`grokkit sweep --seed 0:{seeds}`, devices: {devices}...[/]")
                results["sweeps"].append(swept(seeds, devices, root, SETUPS[args.config]))
        if not args.no_capacity:
            console.print("[dim]nanda2023 sweep capacity...[/]")
            results["capacity"] = capacity(root)
    if args.json:
        console.out(json.dumps(results))
        return
    table = Table(title=f"the {args.config} config: sweeps against sequential runs ({results['cpu']}, "
                        f"{results['cores']} cores)")  # fmt: skip
    for column in ("how", "wall-clock", "sweep / sequential", "speed-up", "steps to val 99% per seed"):
        table.add_column(column, justify="right" if column != "how" else "left")
    per_run = results.get("sequential", {}).get("per_run_s")
    for sweep in results["sweeps"]:
        n = sweep["seeds"]
        if per_run:
            base = sum(per_run[:n])
            steps = str(results["sequential"]["generalized_steps"][:n])
            table.add_row(f"{n} sequential `grokkit train`", f"{base:.1f} s", "", "", steps)
        ratio, speedup = (f"{sweep['wall_s'] / base:.2f}", f"{base / sweep['wall_s']:.2f}x") if per_run else ("—", "—")
        table.add_row(f"`grokkit sweep --seed 0:{n}`, devices {sweep['devices']} ({sweep['device_count']})",
                      f"{sweep['wall_s']:.1f} s", ratio, speedup, str(sweep["generalized_steps"]))  # fmt: skip
    console.print(table)
    if per_run:
        for sweep in (s for s in results["sweeps"] if s["devices"] == "auto"):
            ratio = sweep["wall_s"] / sum(per_run[: sweep["seeds"]])
            target = TARGET_8 if sweep["seeds"] >= 8 else 1.0
            console.print(f"{sweep['seeds']} seeds: sweep / sequential {ratio:.2f}, target <= {target}: "
                          f"{'met' if ratio <= target else 'NOT met'}")  # fmt: skip
    if "capacity" in results:
        cap = results["capacity"]
        points = ", ".join(f"{p['members']}: {p['max_rss_mb']:.0f} MB" for p in cap["points"])
        console.print(f"nanda2023 sweep, peak RSS by members: {points}; {cap['per_member_mb']:.1f} MB per member; "
                      f"largest run {cap['largest_run']}; about {cap['estimated_fit_90pct']} fit in 90% of "
                      f"{cap['memory_mb'] / 1024:.0f} GiB")  # fmt: skip


def _cpu_name() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU"
    match = re.search(r"model name\s*:\s*(.+)", text)
    return match.group(1).strip() if match else "unknown CPU"


if __name__ == "__main__":
    main()
