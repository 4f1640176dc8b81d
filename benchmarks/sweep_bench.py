"""A sweep of N seeds against N sequential `grokkit train` runs, and the largest nanda2023 sweep that fits in memory.

Usage: python benchmarks/sweep_bench.py [--seeds 8] [--devices 1 2] [--config default|small] [--no-capacity] [--json]

--config small is the test suite's quick-grokking setup (p=41, d_model 64, 50% train): short runs,
where a sweep's savings (one start-up and compilation, finished members costing nothing) weigh most.
On a CPU a sweep trains its members one after another (`group.vectorize_members`), vmapped elsewhere;
benchmarks/sweep_modes.py compares the two ways in one process.

Every figure is wall-clock of real `grokkit` processes (start-up, compilation and early exit
included), each run in a fresh folder with a fresh compilation cache, one after the other.
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


def _env(cache: Path, devices: int = 1) -> dict[str, str]:
    env = {**os.environ, "GROKKIT_CACHE_DIR": str(cache), "COLUMNS": "120"}
    env.pop("XLA_FLAGS", None)
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def _generalized(run_dir: Path) -> int | None:
    return json.loads((run_dir / "summary.json").read_text()).get("generalized_step")


SETUPS = {
    "default": [],
    "small": ["--p", "41", "--train-frac", "0.5", "--d-model", "64", "--heads", "2", "--d-mlp", "128",
              "--eval-every", "25", "--early-exit-window", "100"],
}  # fmt: skip


def sequential(seeds: int, root: Path, flags: list[str]) -> dict:
    env = _env(root / "cache-seq")
    times, steps = [], []
    for seed in range(seeds):
        run_dir = root / f"seq-{seed}"
        times.append(_run(["train", *flags, "--seed", str(seed), "--run-dir", str(run_dir)], root, env))
        steps.append(_generalized(run_dir))
    return {"wall_s": sum(times), "per_run_s": times, "generalized_steps": steps}


def swept(seeds: int, devices: int, root: Path, flags: list[str]) -> dict:
    sweep_dir = root / f"sweep-{devices}dev"
    env = _env(root / f"cache-sweep-{devices}", devices)
    wall = _run(["sweep", *flags, "--seed", f"0:{seeds}", "--run-dir", str(sweep_dir)], root, env)
    steps = [_generalized(sweep_dir / f"seed={seed}") for seed in range(seeds)]
    return {"devices": devices, "wall_s": wall, "generalized_steps": steps}


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
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--config", choices=sorted(SETUPS), default="default")
    parser.add_argument("--no-sequential", action="store_true")
    parser.add_argument("--no-capacity", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    console = Console(highlight=False)
    results: dict = {"config": args.config, "seeds": args.seeds, "cpu": _cpu_name(), "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="grokkit-sweep-bench-") as tmp:
        root = Path(tmp)
        if not args.no_sequential:
            console.print(f"[dim]{args.seeds} sequential `grokkit train --seed i` runs ({args.config})...[/]")
            results["sequential"] = sequential(args.seeds, root, SETUPS[args.config])
        results["sweeps"] = []
        for devices in args.devices:
            console.print(f"[dim]`grokkit sweep --seed 0:{args.seeds}` on {devices} device(s)...[/]")
            results["sweeps"].append(swept(args.seeds, devices, root, SETUPS[args.config]))
        if not args.no_capacity:
            console.print("[dim]nanda2023 sweep capacity...[/]")
            results["capacity"] = capacity(root)
    if args.json:
        console.out(json.dumps(results))
        return
    table = Table(title=f"{args.seeds} seeds of the {args.config} config ({results['cpu']}, {results['cores']} cores)")
    for column in ("how", "wall-clock", "speed-up", "steps to val 99% per seed"):
        table.add_column(column, justify="right" if column != "how" else "left")
    base = results.get("sequential", {}).get("wall_s")
    if base:
        steps = str(results["sequential"]["generalized_steps"])
        table.add_row("sequential `grokkit train`", f"{base:.1f} s", "1.00x", steps)
    for sweep in results["sweeps"]:
        ratio = f"{base / sweep['wall_s']:.2f}x" if base else "—"
        table.add_row(f"`grokkit sweep`, {sweep['devices']} device(s)", f"{sweep['wall_s']:.1f} s", ratio,
                      str(sweep["generalized_steps"]))  # fmt: skip
    console.print(table)
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
