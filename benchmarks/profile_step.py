"""Where a training step's time goes: plain vs fast model, forward, backward, optimizer, evaluation; matmul share.

Usage: python benchmarks/profile_step.py [PRESET ...] [--rounds N] [--steps N] [--dispatches N] [--top N]
       [--no-variants]   (default presets: nanda2023 power2022)

Variants are timed interleaved (median of several rounds) so that a noisy machine affects them alike.

The matmul share is measured, not estimated: grokkit's training step (`lax.scan` over `--steps` steps, as
`grokkit train` runs it, without the evaluation) is traced with jax.profiler for `--dispatches` dispatches.
XLA:CPU records one trace event per executed thunk (one per HLO instruction of the compiled program: a fusion,
a dot, a sort, ...), named by the instruction. Each instruction is classified from the compiled HLO: a dot
(or a fusion containing one, e.g. a YNNPACK fusion of a dot and its elementwise epilogue) is a matmul; other
fusions by what they contain (scatter, gather, sort, reduce, else elementwise), plain instructions by opcode.
The share is matmul thunk time over all thunk time (while/call thunks, which only contain others, are not
counted twice); the coverage line says how much of the traced wall-clock the thunks account for (the rest:
loop control, dispatch, idle threads).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import re
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import jax
import optax
from flax import nnx
from rich.console import Console
from rich.table import Table

from grokkit.config import resolve
from grokkit.jax_setup import configure_jax
from grokkit.reference import plain_transformer_logits
from grokkit.train import Batch, evaluate, init_state, make_experiment, select_batch, train_step

PRESETS = ("nanda2023", "power2022")


def variants_table(preset: str, exp, rounds: int, steps: int, console: Console) -> None:
    """The step's variants (plain vs fast model; forward, backward, AdamW) timed in interleaved rounds."""
    state, data = init_state(exp), exp.device_data()
    size = exp.config.optim.batch_size
    batch = data.train if size is None else Batch(data.train.tokens_BT[:size], data.train.labels_B[:size])
    tx = exp.tx

    def loss(params, plain=False):
        model = nnx.merge(exp.graphdef, params)
        logits = plain_transformer_logits(model, batch.tokens_BT) if plain else model(batch.tokens_BT)
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch.labels_B).mean()

    def repeated(body):
        return jax.jit(lambda carry: jax.lax.scan(lambda c, _: (body(c), None), carry, None, length=steps)[0])

    def nudge(params, scalar):
        return jax.tree.map(lambda p: p + 1e-12 * scalar, params)

    def sgd_like(params, grads):
        return jax.tree.map(lambda p, g: p - 1e-12 * g, params, grads)

    def adam_step(carry, plain=False):
        params, opt_state = carry
        grads = jax.grad(loss)(params, plain)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    params, pair = state.params, (state.params, state.opt_state)
    variants = {
        "plain: step (AdamW)": (repeated(lambda c: adam_step(c, plain=True)), pair),
        "fast: forward": (repeated(lambda p: nudge(p, loss(p))), params),
        "fast: forward+backward": (repeated(lambda p: sgd_like(p, jax.grad(loss)(p))), params),
        "fast: step (AdamW)": (repeated(adam_step), pair),
    }
    flops = {}
    for name, (fn, arg) in variants.items():
        analysis = fn.lower(arg).compile().cost_analysis()
        analysis = analysis[0] if isinstance(analysis, list) else analysis
        flops[name] = float(analysis.get("flops", 0.0))  # XLA counts a scan's body once
        jax.block_until_ready(fn(arg))
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, (fn, arg) in variants.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(arg))
            times[name].append((time.perf_counter() - start) / steps)
    evaluation = jax.jit(lambda p: evaluate(exp, p, data))
    jax.block_until_ready(evaluation(params))
    eval_times = []
    for _ in range(rounds):
        start = time.perf_counter()
        jax.block_until_ready(evaluation(params))
        eval_times.append(time.perf_counter() - start)

    what = "full batch" if size is None else "one batch, no sampling"
    table = Table(title=f"one training step of {preset} ({len(batch.labels_B)} examples, {what})")
    for column in ("variant", "ms/step", "steps/s", "GFLOP/step", "GFLOP/s"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for name in variants:
        ms = 1000 * statistics.median(times[name])
        table.add_row(
            name, f"{ms:.1f}", f"{1000 / ms:.1f}", f"{flops[name] / 1e9:.2f}", f"{flops[name] / ms / 1e6:.0f}"
        )
    console.print(table)
    console.print(
        f"full evaluation (train + validation, {exp.n_train + len(exp.split.val_idx)} examples): "
        f"{1000 * statistics.median(eval_times):.1f} ms, every {exp.config.train.eval_every} steps"
    )


# ---- the matmul share, from a jax.profiler trace and the compiled HLO -------------------------------------------

_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = (.*)$")
_COMPUTATION = re.compile(r"^(?:ENTRY )?%([\w.\-]+) .*\{$")
CONTAINERS = {"while", "call", "conditional", "async-start", "async-done"}
MATMUL_OPS = {"dot", "convolution"}
# the first of these a fusion contains names its category (after matmul)
KINDS = ("scatter", "gather", "sort", "reduce", "reduce-window", "select-and-scatter", "rng-bit-generator")
MOVES = {"copy", "transpose", "slice", "dynamic-slice", "dynamic-update-slice", "concatenate", "pad", "bitcast",
         "reshape", "broadcast", "iota", "parameter", "constant", "tuple", "get-tuple-element", "reverse"}  # fmt: skip


def _split_shape(rest: str) -> tuple[str, str]:
    """'f32[3,4]{1,0} dot(...)' or '(s32[], f32[2]) while(...)' -> (shape, 'dot(...)')."""
    if rest.startswith("("):
        depth = 0
        for i, ch in enumerate(rest):
            depth += ch == "("
            depth -= ch == ")"
            if depth == 0:
                return rest[: i + 1], rest[i + 1 :].lstrip()
    shape, _, tail = rest.partition(" ")
    return shape, tail


def _dims(shape: str) -> list[int]:
    match = re.search(r"\[([\d,]*)\]", shape)
    return [int(d) for d in match.group(1).split(",") if d] if match else []


def parse_hlo(text: str) -> tuple[dict[str, dict], dict[str, list[dict]]]:
    """Instructions by name ({opcode, shape, calls, op_name, flops}) and computations' instructions."""
    instructions: dict[str, dict] = {}
    computations: dict[str, list[dict]] = {}
    current: list[dict] = []
    for line in text.splitlines():
        comp = _COMPUTATION.match(line)
        if comp:
            current = computations.setdefault(comp.group(1), [])
            continue
        match = _INSTRUCTION.match(line)
        if not match:
            continue
        shape, tail = _split_shape(match.group(2))
        opcode = tail.split("(", 1)[0]
        calls = re.findall(r"(?:calls|to_apply|body|condition)=%([\w.\-]+)", tail)
        for group in re.findall(r"branch_computations=\{([^}]*)\}", tail):
            calls += re.findall(r"%([\w.\-]+)", group)
        op_name = re.search(r'op_name="([^"]*)"', tail)
        operands = re.findall(r"%([\w.\-]+)", tail.split(")", 1)[0])
        inst = {"name": match.group(1), "opcode": opcode, "shape": shape, "calls": calls, "operands": operands,
                "op_name": op_name.group(1) if op_name else "", "tail": tail}  # fmt: skip
        current.append(inst)
        instructions[inst["name"]] = inst
    for insts in computations.values():  # dot FLOPs: 2 x output elements x contracted elements
        shapes = {i["name"]: i["shape"] for i in insts}
        for i in insts:
            if i["opcode"] == "dot" and i["operands"]:
                contracting = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", i["tail"])
                lhs = _dims(shapes.get(i["operands"][0], ""))
                k = math.prod(lhs[int(d)] for d in contracting.group(1).split(",") if d) if contracting and lhs else 1
                i["flops"] = 2 * math.prod(_dims(i["shape"])) * k
    return instructions, computations


def _contents(inst: dict, computations: dict[str, list[dict]], seen: set[str] | None = None) -> list[dict]:
    """Every instruction inside the computations `inst` calls, recursively."""
    seen = set() if seen is None else seen
    out = []
    for comp in inst["calls"]:
        if comp in seen:
            continue
        seen.add(comp)
        for i in computations.get(comp, []):
            out.append(i)
            out += _contents(i, computations, seen)
    return out


def classify(inst: dict, computations: dict[str, list[dict]]) -> tuple[str, float]:
    """(category, matmul FLOPs) of one executed instruction."""
    opcode = inst["opcode"]
    if opcode in CONTAINERS:
        return "container", 0.0
    if opcode in MATMUL_OPS or (opcode == "custom-call" and re.search(r"matmul|gemm|dot", inst["tail"], re.I)):
        return "matmul", float(inst.get("flops", 0))
    if opcode != "fusion":
        if opcode in KINDS:
            return opcode.replace("reduce-window", "reduce"), 0.0
        return ("copy/layout" if opcode in MOVES else opcode), 0.0
    inside = _contents(inst, computations)
    opcodes = {i["opcode"] for i in inside}
    if opcodes & MATMUL_OPS:
        return "matmul", float(sum(i.get("flops", 0) for i in inside))
    for kind in KINDS:
        if kind in opcodes:
            return kind.replace("reduce-window", "reduce"), 0.0
    if opcodes <= MOVES:
        return "copy/layout", 0.0
    return "elementwise", 0.0


def matmul_share(preset: str, exp, steps: int, dispatches: int, top: int, console: Console) -> dict:
    """Trace grokkit's step (scan of `steps` steps, sampling included) and split thunk time by category."""
    state, data = init_state(exp), exp.device_data()

    def run_steps(state, data):
        def body(state, _):
            state, _ = train_step(exp, state, select_batch(exp, state, data.train), data.init_params)
            return state, None

        return jax.lax.scan(body, state, None, length=steps)[0]

    fn = jax.jit(run_steps)
    compiled = fn.lower(state, data).compile()
    text = compiled.as_text()
    module = re.match(r"HloModule ([\w.\-]+)", text)
    instructions, computations = parse_hlo(text)
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    xla_flops = float(analysis.get("flops", 0.0))  # the scan body once: one step
    jax.block_until_ready(compiled(state, data))
    with tempfile.TemporaryDirectory() as log_dir:
        with jax.profiler.trace(log_dir, create_perfetto_trace=True):
            start = time.perf_counter()
            for _ in range(dispatches):
                jax.block_until_ready(compiled(state, data))
            wall_s = time.perf_counter() - start
        trace_file = next(Path(log_dir).rglob("perfetto_trace.json.gz"))
        with gzip.open(trace_file) as f:
            events = json.load(f)
    events = events["traceEvents"] if isinstance(events, dict) else events
    per_op: dict[str, float] = defaultdict(float)  # microseconds
    for e in events:
        args = e.get("args") or {}
        if e.get("ph") != "X" or "hlo_op" not in args:
            continue
        if module and args.get("hlo_module") not in (None, module.group(1)):
            continue
        per_op[args["hlo_op"]] += float(e.get("dur", 0.0))
    n_steps = steps * dispatches
    by_category: dict[str, float] = defaultdict(float)
    rows = []
    matmul_flops = 0.0
    for name, us in per_op.items():
        inst = instructions.get(name)
        category, flops = classify(inst, computations) if inst else ("unknown", 0.0)
        if category == "container":
            continue
        ms = us / 1000 / n_steps
        by_category[category] += ms
        matmul_flops += flops
        rows.append((ms, name, category, flops, inst["op_name"] if inst else ""))
    total_ms = sum(by_category.values())
    wall_ms = 1000 * wall_s / n_steps
    share = by_category.get("matmul", 0.0) / total_ms if total_ms else float("nan")

    table = Table(title=f"{preset}: thunk time per training step by kind (jax.profiler trace, {n_steps} steps)")
    for column in ("kind", "ms/step", "share"):
        table.add_column(column, justify="left" if column == "kind" else "right")
    for category, ms in sorted(by_category.items(), key=lambda kv: -kv[1]):
        table.add_row(category, f"{ms:.2f}", f"{100 * ms / total_ms:.1f}%")
    console.print(table)
    matmul_ms = by_category.get("matmul", 0.0)
    console.print(
        f"{preset}: matmul share of step time {100 * share:.1f}% ({matmul_ms:.2f} of {total_ms:.2f} ms of thunk "
        f"time per step; the thunks cover {100 * total_ms / wall_ms:.0f}% of the traced wall-clock, "
        f"{wall_ms:.2f} ms/step); matmuls ran at {matmul_flops / max(matmul_ms, 1e-9) / 1e6:.0f} GFLOP/s"
    )
    ops = Table(title=f"{preset}: the {top} costliest instructions (ms per step)")
    for column in ("instruction", "kind", "ms/step", "GFLOP/s", "from (jax op)"):
        ops.add_column(column, justify="right" if column in ("ms/step", "GFLOP/s") else "left")
    for ms, name, category, flops, op_name in sorted(rows, key=lambda r: -r[0])[:top]:
        rate = f"{flops / ms / 1e6:.0f}" if flops else ""
        where = op_name.split("/body/", 1)[-1].removeprefix("closed_call/")
        ops.add_row(name, category, f"{ms:.2f}", rate, where[-60:])
    console.print(ops)
    slow = [(ms, flops) for ms, _, category, flops, _ in rows if category == "matmul" and flops < 20e6 * ms]
    console.print(
        f"  of the matmul time, {sum(ms for ms, _ in slow):.2f} ms/step is in {len(slow)} dots below 20 GFLOP/s "
        f"(small batched ones, e.g. attention over 3 positions), doing {sum(f for _, f in slow) / 1e9:.3f} GFLOP"
    )
    console.print(
        f"  (matmul FLOPs per step from the HLO's dots: {matmul_flops / 1e9:.2f} GFLOP; XLA's cost analysis of the "
        f"whole step: {xla_flops / 1e9:.2f} GFLOP)"
    )
    return {"preset": preset, "matmul_share": share, "thunk_ms_per_step": total_ms, "wall_ms_per_step": wall_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("presets", nargs="*", default=list(PRESETS), help="presets to profile")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds for the variants (median)")
    parser.add_argument("--steps", type=int, default=20, help="steps per dispatch (lax.scan length)")
    parser.add_argument("--dispatches", type=int, default=3, help="dispatches traced for the matmul share")
    parser.add_argument("--top", type=int, default=10, help="costliest instructions listed")
    parser.add_argument("--no-variants", action="store_true", help="only the matmul share")
    args = parser.parse_args()
    configure_jax()
    console = Console()
    console = console if console.is_terminal else Console(width=140)  # keep instruction names whole in logs
    shares = []
    for preset in args.presets:
        exp = make_experiment(resolve(preset))
        if not args.no_variants:
            variants_table(preset, exp, args.rounds, args.steps, console)
        shares.append(matmul_share(preset, exp, args.steps, args.dispatches, args.top, console))
    console.print(
        "matmul share: "
        + ", ".join(f"{s['preset']} {100 * s['matmul_share']:.1f}%" for s in shares)
        + " of thunk time (measured from XLA:CPU's per-instruction trace events; a dot's fused epilogue counts as"
        " matmul)"
    )


if __name__ == "__main__":
    main()
