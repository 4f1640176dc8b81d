"""Training throughput, FLOPs, start-up and time-to-grok figures for grokkit on this machine.

Usage: python benchmarks/bench.py [--json] [--windows N] [--only NAME ...] [--no-startup] [--no-grok]

Throughput: median of N timed windows of one evaluation interval each (steps + the full
evaluation, as `grokkit train` runs them), after a warm-up window. FLOPs: XLA's cost analysis
of one compiled training step. Peak: the best of several 2048x2048 float32 matmuls through XLA.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
from rich.console import Console
from rich.table import Table

from grokkit.config import resolve
from grokkit.jax_setup import configure_jax
from grokkit.train import evaluate, init_state, make_chunk_fn, make_experiment, select_batch, train_step

HERE = Path(__file__).parent

CONFIGS = {
    "default": None,
    "nanda2023": "nanda2023",
    "power2022": "power2022",
}


def matmul_peak_gflops(n: int = 2048, repeats: int = 20) -> float:
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


def _timed(fn, *args) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start


def bench_config(name: str, preset: str | None, windows: int) -> dict:
    config = resolve(preset)
    exp = make_experiment(config)
    data = exp.device_data()
    state = init_state(exp)
    flops = step_flops(exp, state, data)
    run_chunk = make_chunk_fn(exp)
    chunk = config.train.eval_every
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
    evaluation = jax.jit(lambda params: evaluate(exp, params, data))
    plain_evaluation = jax.jit(lambda params: evaluate(exp, params, data._replace(basis=None)))
    _timed(evaluation, state.params)
    _timed(plain_evaluation, state.params)
    eval_s = statistics.median(_timed(evaluation, state.params) for _ in range(windows))
    plain_eval_s = statistics.median(_timed(plain_evaluation, state.params) for _ in range(windows))
    window_s = chunk / steps_per_s
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
        "eval_every": chunk,
        "eval_ms": round(1000 * eval_s, 1),
        "eval_share": round(eval_s / (window_s - eval_s), 4),
        "measures_ms": round(1000 * max(eval_s - plain_eval_s, 0.0), 1),
        "measures_share": round(max(eval_s - plain_eval_s, 0.0) / (window_s - eval_s), 4),
    }


def help_wall_time(repeats: int = 5) -> float:
    """Median wall time of `grokkit --help` in a fresh process."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "grokkit", "--help"], capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def startup(config_name: str) -> dict:
    """Cold (empty compilation cache) and warm start: compile time and process start to first step."""
    figures = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "GROKKIT_CACHE_DIR": cache}
        env.pop("JAX_COMPILATION_CACHE_DIR", None)
        for label in ("cold", "warm"):
            launched = time.time()
            out = subprocess.run(
                [sys.executable, str(HERE / "first_step.py"), config_name],
                env=env, capture_output=True, text=True, check=True,
            )  # fmt: skip
            child = json.loads(out.stdout.strip().splitlines()[-1])
            figures[f"{label}_compile_s"] = round(child["compile_s"], 2)
            figures[f"{label}_start_to_first_step_s"] = round(child["first_step"] - launched, 2)
    return figures


def time_to_grok() -> dict:
    """Wall-clock of the default `grokkit train` until validation accuracy first reaches 99%, and to the end."""
    with tempfile.TemporaryDirectory() as runs:
        launched = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "grokkit", "train", "--task", "mod-add", "--p", "97",
             "--run-dir", str(Path(runs) / "run")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        generalized_s, generalized_step, peak_kb = None, None, 0
        for line in proc.stdout:
            peak_kb = max(peak_kb, _peak_rss_kb(proc.pid))
            match = re.search(r"generalized: validation accuracy held >= 99% from step ([\d,]+)", line)
            if match and generalized_s is None:
                generalized_s = time.perf_counter() - launched
                generalized_step = int(match.group(1).replace(",", ""))
        proc.wait()
        total_s = time.perf_counter() - launched
    return {
        "generalized_step": generalized_step,
        "generalized_s": None if generalized_s is None else round(generalized_s, 1),
        "total_s": round(total_s, 1),
        "peak_rss_mb": round(peak_kb / 1024),
    }


def _peak_rss_kb(pid: int) -> int:
    """The process's resident-memory high-water mark (VmHWM), read while it runs."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(match.group(1)) if match else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument("--windows", type=int, default=5, help="timed windows per config (median reported)")
    parser.add_argument("--only", nargs="*", choices=sorted(CONFIGS), help="benchmark only these configs")
    parser.add_argument("--no-startup", action="store_true", help="skip the cold/warm start-up measurements")
    parser.add_argument("--no-grok", action="store_true", help="skip timing the default command to 99%%")
    args = parser.parse_args()
    configure_jax()
    peak = matmul_peak_gflops()
    rows = [bench_config(n, CONFIGS[n], args.windows) for n in (args.only or CONFIGS)]
    for row in rows:
        row["fraction_of_peak"] = round(row["gflops"] / peak, 3)
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{jax.devices()[0].device_kind}, {jax.local_device_count()} device(s)",
        "jax": jax.__version__,
        "matmul_peak_gflops": round(peak, 1),
        "grokkit_help_s": round(help_wall_time(), 3),
        "configs": rows,
        "bench_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    if not args.no_startup:
        report["startup_default"] = startup("default")
    if not args.no_grok:
        report["default_command"] = time_to_grok()
    if args.json:
        print(json.dumps(report, indent=2))
        return
    render(report)


def render(report: dict) -> None:
    console = Console()
    table = Table(title=f"grokkit bench {report['date']}: jax {report['jax']}, {report['machine']}")
    columns = ("config", "batch", "steps/s", "examples/s", "GFLOP/step", "GFLOP/s", "of peak", "eval", "measures")
    for column in columns:
        table.add_column(column, justify="left" if column == "config" else "right")
    for r in report["configs"]:
        table.add_row(
            r["name"], str(r["batch"]), f"{r['steps_per_s']:.1f}", f"{r['examples_per_s']:,}",
            f"{r['gflop_per_step']:.2f}", f"{r['gflops']:.0f}", f"{100 * r['fraction_of_peak']:.0f}%",
            f"{100 * r['eval_share']:.1f}%", f"{100 * r['measures_share']:.1f}%",
        )  # fmt: skip
    console.print(table)
    for r in report["configs"]:
        console.print(
            f"  {r['name']}: {r['task']}; evaluation {r['eval_ms']} ms every {r['eval_every']} steps, "
            f"of which progress measures {r['measures_ms']} ms"
        )
    console.print(
        f"float32 matmul peak (2048x2048 through XLA): {report['matmul_peak_gflops']:.0f} GFLOP/s; "
        f"FLOPs per step from XLA's cost analysis"
    )
    console.print(f"grokkit --help: {report['grokkit_help_s']:.2f} s; bench peak RSS {report['bench_peak_rss_mb']} MB")
    if "startup_default" in report:
        s = report["startup_default"]
        console.print(
            f"default config start-up: compile {s['cold_compile_s']} s cold / {s['warm_compile_s']} s from the cache; "
            f"process start to first step {s['cold_start_to_first_step_s']} s cold / "
            f"{s['warm_start_to_first_step_s']} s warm"
        )
    if "default_command" in report:
        d = report["default_command"]
        console.print(
            f"grokkit train --task mod-add --p 97: validation 99% at step {d['generalized_step']} after "
            f"{d['generalized_s']} s; finished in {d['total_s']} s; peak RSS {d['peak_rss_mb']} MB"
        )


if __name__ == "__main__":
    main()
