"""Training throughput and achieved GFLOP/s against this machine's measured float32 matmul peak.

Usage: python benchmarks/bench.py [--json] [--windows N] [--chunk STEPS] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
from rich.console import Console
from rich.table import Table

from grokkit.config import resolve
from grokkit.jax_setup import configure_jax
from grokkit.train import init_state, make_chunk_fn, make_experiment, select_batch, train_step

CONFIGS = {
    "default": None,
    "nanda2023": "nanda2023",
    "power2022": "power2022",
}


def matmul_peak_gflops(n: int = 2048, repeats: int = 10) -> float:
    """Best-of float32 GFLOP/s of an n x n matmul through XLA."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    matmul(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def step_flops(exp, state, data) -> float:
    """FLOPs of one training step, from XLA's cost analysis of the compiled step."""
    step = jax.jit(lambda s: train_step(exp, s, select_batch(exp, s, data.train))[0])
    analysis = step.lower(state).compile().cost_analysis()
    if isinstance(analysis, list):
        analysis = analysis[0]
    return float(analysis.get("flops", 0.0))


def bench_config(name: str, preset: str | None, windows: int, chunk: int) -> dict:
    config = resolve(preset)
    exp = make_experiment(config)
    data = exp.device_data()
    state = init_state(exp)
    flops = step_flops(exp, state, data)
    run_chunk = make_chunk_fn(exp)
    start = time.perf_counter()
    state, metrics = run_chunk(state, data, chunk)
    jax.block_until_ready(metrics)
    first_chunk_s = time.perf_counter() - start
    rates = []
    for _ in range(windows):
        start = time.perf_counter()
        state, metrics = run_chunk(state, data, chunk)
        jax.block_until_ready(metrics)
        rates.append(chunk / (time.perf_counter() - start))
    steps_per_s = statistics.median(rates)
    batch = config.optim.batch_size or exp.n_train
    return {
        "name": name,
        "task": f"{config.data.task} p={config.data.p} frac={config.data.train_frac}",
        "batch": batch,
        "steps_per_s": round(steps_per_s, 2),
        "examples_per_s": round(steps_per_s * batch),
        "gflop_per_step": round(flops / 1e9, 3),
        "gflops": round(steps_per_s * flops / 1e9, 1),
        "first_chunk_s": round(first_chunk_s, 2),
    }


def help_wall_time() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "grokkit", "--help"], capture_output=True, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--windows", type=int, default=5, help="timed windows per config (median reported)")
    parser.add_argument("--chunk", type=int, default=50, help="steps per timed window (one eval each, as in train)")
    parser.add_argument("--only", nargs="*", choices=sorted(CONFIGS), help="benchmark only these configs")
    args = parser.parse_args()
    configure_jax()
    peak = matmul_peak_gflops()
    rows = [bench_config(n, CONFIGS[n], args.windows, args.chunk) for n in (args.only or CONFIGS)]
    for row in rows:
        row["fraction_of_peak"] = round(row["gflops"] / peak, 3)
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.processor() or platform.machine()}, {jax.devices()[0].device_kind}, "
        f"{jax.local_device_count()} device(s)",
        "jax": jax.__version__,
        "matmul_peak_gflops": round(peak, 1),
        "grokkit_help_s": round(help_wall_time(), 3),
        "configs": rows,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    console = Console()
    table = Table(title=f"grokkit bench {report['date']}, jax {report['jax']}, {report['machine']}")
    for column in ("config", "batch", "steps/s", "examples/s", "GFLOP/step", "GFLOP/s", "of peak", "1st chunk"):
        table.add_column(column, justify="left" if column == "config" else "right")
    for r in rows:
        table.add_row(
            r["name"], str(r["batch"]), f"{r['steps_per_s']:.1f}", f"{r['examples_per_s']:,}",
            f"{r['gflop_per_step']:.2f}", f"{r['gflops']:.0f}", f"{100 * r['fraction_of_peak']:.0f}%",
            f"{r['first_chunk_s']:.1f}s",
        )  # fmt: skip
    console.print(table)
    for r in rows:
        console.print(f"  {r['name']}: {r['task']}")
    console.print(
        f"float32 matmul peak (2048x2048, XLA): {report['matmul_peak_gflops']:.0f} GFLOP/s; "
        f"FLOPs per step from XLA cost analysis; `grokkit --help`: {report['grokkit_help_s']:.2f}s"
    )


if __name__ == "__main__":
    main()
