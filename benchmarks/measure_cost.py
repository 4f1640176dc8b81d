"""What the progress measures cost: per task family, their share of training at the default evaluation interval.

Usage: python benchmarks/measure_cost.py [--signals] [--quick] [--windows N] [--only NAME ...] [--json]

Issue #13 asks that the measures cost at most 10% of training time at the default evaluation interval
(`train.eval_every`, read from grokkit.config), per family. For each family this builds the experiment as
`grokkit train` would and times one chunk, `eval_every` training steps plus the full evaluation (the compiled
`train.make_chunk_fn`, exactly what a run executes), two ways:

- with the measures: the experiment's own `Data` (`basis` set), as a run records them;
- without: the same experiment with the measures switched off. For the group families that is
  `Data(basis=None)`, which `train.evaluate` reads as "no basis". Sparse parity's measures are switched on by
  `evaluate`'s `exp.dataset.task == "sparse-parity"` test, so the "off" chunk uses a copy of the experiment
  whose dataset carries another task name (same tokens, labels, split, model and optimizer): `evaluate`'s own
  code, unchanged, without the parity measures.

The two chunks are timed in alternation, after a warm-up call of each that compiles: N pairs of windows (more
for short chunks, so that each way gets a few seconds), so a busy machine slows both alike. The median of
the paired differences (with - without) is the measures' cost in place; it is noisy when the measures are
small against the chunk or the machine is busy, so the measures are also timed alone, jitted on the same
inputs (`progress.progress_measures` on the model's embedding and logits, computed beforehand;
`parity.parity_measures` on its parameters; median of many calls): exactly the work the measures add to an
evaluation. The shares are measure seconds / chunk seconds with the measures; "<= 10%" judges the measures
timed alone (the in-place difference is shown beside it).

`--signals`: the same for issue #14's task-agnostic signals (`grokkit.signals`, recorded for every task and
model) on the default config, the nanda2023 preset and the merrill2023-parity MLP, each at its own
`eval_every`. The "off" chunk is `train.evaluate` traced with `train.task_agnostic_signals` replaced by a
function returning nothing (the replacement lasts only while that chunk compiles); "alone" is
`task_agnostic_signals` jitted by itself on the run's parameters, with the training logits computed
beforehand (it includes the extra forward and backward pass on the training set that `grad_cosine` needs).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import platform
import statistics
import time

import jax
from bench import _timed, matmul_peak_gflops
from flax import nnx
from rich.console import Console
from rich.table import Table

from grokkit import train
from grokkit.bases import MEASURE_NAMES, SIGNAL_NAMES
from grokkit.config import resolve
from grokkit.jax_setup import configure_jax
from grokkit.parity import parity_measures
from grokkit.progress import progress_measures
from grokkit.signals import gradient_chunk, task_agnostic_signals
from grokkit.train import init_state, make_chunk_fn, make_experiment

LIMIT = 0.10
"""The issue's bound on the measures' share of training time."""
MAX_WINDOWS = 40

PARITY = {"data.task": "sparse-parity", "data.n_bits": 40, "data.k_bits": 3, "data.n_samples": 2000,
          "optim.batch_size": 32}  # fmt: skip
FAMILIES: dict[str, tuple[str, str, dict]] = {
    # name: (family, model, config overrides on the defaults)
    "mod-add": ("mod-add p=97 (cyclic Z_97)", "transformer", {"data.task": "mod-add", "data.p": 97}),
    "mod-mul": ("mod-mul p=97 (discrete log Z_96)", "transformer", {"data.task": "mod-mul", "data.p": 97}),
    "s5": ("s5-compose (S5 irreps)", "transformer", {"data.task": "s5-compose"}),
    "s5-mlp": ("s5-compose (S5 irreps)", "mlp width 128, no bias",
               {"data.task": "s5-compose", "model.kind": "mlp", "model.width": 128, "model.bias": False}),
    "mod-x2-y2": ("mod-x2-y2 p=97 (spectrum only)", "transformer", {"data.task": "mod-x2-y2", "data.p": 97}),
    "parity-mlp": ("sparse-parity n=40 k=3 (2000)", "mlp width 1000 concat",
                   {**PARITY, "model.kind": "mlp", "model.width": 1000, "model.embed": "concat"}),
    "parity": ("sparse-parity n=40 k=3 (2000)", "transformer", PARITY),
}  # fmt: skip


SIGNAL_FAMILIES: dict[str, tuple[str | None, str, str]] = {
    # name: (preset, family, model)
    "default": (None, "mod-add p=97 (defaults)", "transformer, full batch"),
    "nanda2023": ("nanda2023", "mod-add p=113 (nanda2023)", "transformer, full batch"),
    "merrill2023-parity": ("merrill2023-parity", "sparse-parity n=40 k=3 (merrill2023-parity)",
                           "mlp width 1000, batch 32"),
}  # fmt: skip


def measures_alone_fn(exp, state, data):
    """A jitted function of the parameters computing only the measures (the forward pass done beforehand)."""
    model = nnx.merge(exp.graphdef, state.params)
    if data.basis is not None:
        basis = data.basis
        logits_NC = jax.jit(lambda params: nnx.merge(exp.graphdef, params)(data.every.tokens_BT))(state.params)
        embed_VD = model.operand_embedding(exp.dataset.n_values)
        measure = jax.jit(progress_measures)
        return lambda: measure(embed_VD, logits_NC, data.every.labels_B, data.train_idx, basis)
    k_bits = exp.config.data.k_bits
    measure = jax.jit(lambda params: parity_measures(nnx.merge(exp.graphdef, params), data.every.tokens_BT, k_bits))
    return lambda: measure(state.params)


def measures_off(exp, data):
    """(experiment, data) whose evaluation is `train.evaluate` without the progress measures (module docstring)."""
    if exp.dataset.task == "sparse-parity":
        return dataclasses.replace(exp, dataset=dataclasses.replace(exp.dataset, task="sparse-parity/off")), data
    return exp, data._replace(basis=None)


def signals_alone_fn(exp, state, data):
    """A jitted function of the parameters computing only the signals (the evaluation's forward pass done
    beforehand), as `train.evaluate` calls them."""
    train_logits_BC = jax.jit(lambda params: nnx.merge(exp.graphdef, params)(data.every.tokens_BT)[data.train_idx])(
        state.params
    )

    def signals(params):
        def batch_loss(p, tokens_BT, labels_B):
            return exp.loss(nnx.merge(exp.graphdef, p)(tokens_BT), labels_B)[0]

        model, train = nnx.merge(exp.graphdef, params), data.train
        chunk = gradient_chunk(exp.config.optim.batch_size, exp.n_train)
        return task_agnostic_signals(
            model, params, data.init_params, batch_loss, train.tokens_BT, train.labels_B, train_logits_BC,
            exp.dataset.n_values, chunk,
        )  # fmt: skip

    compiled = jax.jit(signals)
    return lambda: compiled(state.params)


@contextlib.contextmanager
def signals_off():
    """While a chunk traces inside this block, its evaluation computes no signals."""
    saved = train.task_agnostic_signals
    train.task_agnostic_signals = lambda *args: {}
    try:
        yield
    finally:
        train.task_agnostic_signals = saved


def bench_family(name: str, windows: int, repeats: int, min_seconds: float) -> dict:
    family, model, overrides = FAMILIES[name]
    config = resolve(None, overrides)
    exp = make_experiment(config)
    data = exp.device_data()
    state = init_state(exp)
    n_steps = config.train.eval_every
    exp_off, data_off = measures_off(exp, data)
    with_measures, without = make_chunk_fn(exp), make_chunk_fn(exp_off)

    # the measures alone, on the initial state (their cost does not depend on the weights' values)
    alone = measures_alone_fn(exp, state, data)
    measured = jax.device_get(alone())
    alone_s = statistics.median(_timed(alone) for _ in range(repeats))

    state, metrics = with_measures(state, data, n_steps)  # warm-up: compile both chunks
    jax.block_until_ready(metrics)
    assert set(measured) <= metrics.keys(), f"{name}: the run's evaluation lacks {set(measured) - metrics.keys()}"
    state, metrics = without(state, data_off, n_steps)
    jax.block_until_ready(metrics)
    assert not {*MEASURE_NAMES, "key_component_mask"} & metrics.keys(), f"{name}: the measures are not off"
    return _alternate(name, family, model, config, exp, state, (with_measures, data), (without, data_off), windows,
                      min_seconds, alone_s, sorted(k for k in measured if k != "key_component_mask"))  # fmt: skip


def bench_signals(name: str, windows: int, repeats: int, min_seconds: float) -> dict:
    preset, family, model = SIGNAL_FAMILIES[name]
    config = resolve(preset)
    exp = make_experiment(config)
    data = exp.device_data()
    state = init_state(exp)
    with_signals, without = make_chunk_fn(exp), make_chunk_fn(exp)

    alone = signals_alone_fn(exp, state, data)
    measured = jax.device_get(alone())
    alone_s = statistics.median(_timed(alone) for _ in range(repeats))

    state, metrics = with_signals(state, data, config.train.eval_every)  # warm-up: compile both chunks
    jax.block_until_ready(metrics)
    assert set(SIGNAL_NAMES) == set(measured) <= metrics.keys(), f"{name}: the run's evaluation lacks signals"
    with signals_off():
        state, metrics = without(state, data, config.train.eval_every)
        jax.block_until_ready(metrics)
    assert not set(SIGNAL_NAMES) & metrics.keys(), f"{name}: the signals are not off"
    row = _alternate(name, family, model, config, exp, state, (with_signals, data), (without, data), windows,
                     min_seconds, alone_s, list(SIGNAL_NAMES))  # fmt: skip
    row["values_at_init"] = {k: round(float(v), 4) for k, v in measured.items()}
    return row


def _alternate(name, family, model, config, exp, state, on, off, windows, min_seconds, alone_s, measures) -> dict:
    """Time the chunk with (`on` = (chunk, data)) and without (`off`) the measures in alternation; the row."""
    with_measures, data = on
    without, data_off = off
    n_steps = config.train.eval_every
    start = time.perf_counter()
    state, metrics = with_measures(state, data, n_steps)
    jax.block_until_ready(metrics)
    windows = max(windows, min(MAX_WINDOWS, math.ceil(min_seconds / (time.perf_counter() - start))))
    on_s, off_s = [], []
    for _ in range(windows):  # alternate, so that the other load on the machine hits both alike
        start = time.perf_counter()
        state, metrics = with_measures(state, data, n_steps)
        jax.block_until_ready(metrics)
        on_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        state, metrics = without(state, data_off, n_steps)
        jax.block_until_ready(metrics)
        off_s.append(time.perf_counter() - start)
    chunk_s, plain_s = statistics.median(on_s), statistics.median(off_s)
    diff_s = statistics.median(a - b for a, b in zip(on_s, off_s, strict=True))
    return {
        "name": name,
        "family": family,
        "model": model,
        "batch": config.optim.batch_size or exp.n_train,
        "eval_every": n_steps,
        "windows": windows,
        "measures": measures,
        "steps_per_s": round(n_steps / chunk_s, 1),
        "chunk_s": round(chunk_s, 4),
        "chunk_without_s": round(plain_s, 4),
        "measures_diff_s": round(diff_s, 4),
        "measures_alone_s": round(alone_s, 5),
        "share_diff": round(diff_s / chunk_s, 4),
        "share_alone": round(alone_s / chunk_s, 4),
        "within_limit": alone_s / chunk_s <= LIMIT,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer windows and calls of the measures (~1 min)")
    parser.add_argument("--windows", type=int, default=None, help="least timed chunks per way (default 7, quick 2)")
    parser.add_argument("--signals", action="store_true", help="the task-agnostic signals (issue #14) instead")
    parser.add_argument(
        "--only", nargs="*", choices=sorted({*FAMILIES, *SIGNAL_FAMILIES}), help="benchmark only these families"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()
    windows = args.windows or (2 if args.quick else 7)
    repeats = 5 if args.quick else 30
    min_seconds = 1.0 if args.quick else 4.0  # per way: short chunks get more windows
    configure_jax()
    peak = matmul_peak_gflops(repeats=5 if args.quick else 20)
    bench, families = (bench_signals, SIGNAL_FAMILIES) if args.signals else (bench_family, FAMILIES)
    unknown = set(args.only or ()) - set(families)
    if unknown:
        parser.error(f"not a {'--signals ' if args.signals else ''}family: {', '.join(sorted(unknown))}")
    rows = [bench(name, windows, repeats, min_seconds) for name in (args.only or families)]
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{jax.devices()[0].device_kind}, {jax.local_device_count()} device(s)",
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "jax": jax.__version__,
        "matmul_peak_gflops": round(peak, 1),
        "what": "signals" if args.signals else "measures",
        "families": rows,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    render(report)


def render(report: dict) -> None:
    console = Console(width=max(Console().width, 200))
    rows = report["families"]
    noun = "signals" if report.get("what") == "signals" else "measures"
    what = "task-agnostic signals'" if noun == "signals" else "progress measures'"
    table = Table(
        title=f"{what} cost {report['date']}: jax {report['jax']}, {report['machine']}; "
        f"one chunk = {'/'.join(sorted({str(r['eval_every']) for r in rows})) or '?'} steps (train.eval_every) "
        "+ evaluation"
    )
    columns = ("family", "model", "batch", "steps/s", "chunk s", "without s", "windows", f"{noun} s (diff)",
               f"{noun} s (alone)", "share (diff)", "share (alone)", "<= 10%")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column in ("family", "model") else "right")
    for r in rows:
        table.add_row(
            r["family"], r["model"], str(r["batch"]), f"{r['steps_per_s']:.1f}", f"{r['chunk_s']:.3f}",
            f"{r['chunk_without_s']:.3f}", str(r["windows"]), f"{r['measures_diff_s']:+.4f}",
            f"{r['measures_alone_s']:.5f}",
            f"{100 * r['share_diff']:+.1f}%", f"{100 * r['share_alone']:.2f}%", "yes" if r["within_limit"] else "NO",
        )  # fmt: skip
    console.print(table)
    for r in rows:
        console.print(f"  {r['family']}, {r['model']}: {noun} {', '.join(r['measures'])}")
        if "values_at_init" in r:
            console.print(f"    at init: {r['values_at_init']}")
    console.print(
        f"chunk s, without s: medians of the alternating windows; {noun} s (diff): median of the paired "
        f"differences; (alone): the {noun} jitted by themselves; <= 10% judges share (alone)"
    )
    console.print(
        f"load average {report['load_average']} when done; "
        f"float32 matmul peak (2048x2048 through XLA): {report['matmul_peak_gflops']:.0f} GFLOP/s"
    )


if __name__ == "__main__":
    main()
