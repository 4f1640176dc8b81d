"""Where a training step's time goes: plain vs fast model, forward, backward, optimizer, evaluation.

Usage: python benchmarks/profile_step.py [PRESET] (default nanda2023). Variants are timed
interleaved (median of several rounds) so that a noisy machine affects them alike.
"""

from __future__ import annotations

import statistics
import sys
import time

import jax
import optax
from flax import nnx
from rich.console import Console
from rich.table import Table

from grokkit.config import resolve
from grokkit.jax_setup import configure_jax
from grokkit.reference import plain_transformer_logits
from grokkit.train import evaluate, init_state, make_experiment

STEPS = 20


def main() -> None:
    configure_jax()
    preset = sys.argv[1] if len(sys.argv) > 1 else "nanda2023"
    exp = make_experiment(resolve(preset))
    state, data = init_state(exp), exp.device_data()
    batch, tx = data.train, exp.tx

    def loss(params, plain=False):
        model = nnx.merge(exp.graphdef, params)
        logits = plain_transformer_logits(model, batch.tokens_BT) if plain else model(batch.tokens_BT)
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch.labels_B).mean()

    def repeated(body):
        return jax.jit(lambda carry: jax.lax.scan(lambda c, _: (body(c), None), carry, None, length=STEPS)[0])

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
    for _ in range(5):
        for name, (fn, arg) in variants.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(arg))
            times[name].append((time.perf_counter() - start) / STEPS)
    evaluation = jax.jit(lambda p: evaluate(exp, p, data))
    jax.block_until_ready(evaluation(params))
    eval_times = []
    for _ in range(5):
        start = time.perf_counter()
        jax.block_until_ready(evaluation(params))
        eval_times.append(time.perf_counter() - start)

    table = Table(title=f"one training step of {preset} ({exp.n_train} examples, full batch)")
    for column in ("variant", "ms/step", "steps/s", "GFLOP/step", "GFLOP/s"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for name in variants:
        ms = 1000 * statistics.median(times[name])
        table.add_row(
            name, f"{ms:.1f}", f"{1000 / ms:.1f}", f"{flops[name] / 1e9:.2f}", f"{flops[name] / ms / 1e6:.0f}"
        )
    console = Console()
    console.print(table)
    console.print(
        f"full evaluation (train + validation, {exp.n_train + len(exp.split.val_idx)} examples): "
        f"{1000 * statistics.median(eval_times):.1f} ms, every {exp.config.train.eval_every} steps"
    )


if __name__ == "__main__":
    main()
