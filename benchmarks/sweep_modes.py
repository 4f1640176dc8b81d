"""A group of M members trained vmapped (one program) against one after another, in one process.

Usage: python benchmarks/sweep_modes.py [--config small|default] [--members 8] [--steps 1000] [--repeats 2]

Both ways train the same members the same number of steps (no early exit, no start-up), so the
figures compare per-member throughput alone. Each repeat times `group.train_group` once per way,
alternating; the first repeat includes compilation (the persistent cache then holds it).
Split a CPU into XLA devices with XLA_FLAGS=--xla_force_host_platform_device_count=N.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

SETUPS = {
    "default": {},
    "small": {"data.p": 41, "data.train_frac": 0.5, "model.d_model": 64, "model.heads": 2, "model.d_mlp": 128,
              "train.eval_every": 25},
}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(SETUPS), default="small")
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("GROKKIT_CACHE_DIR", tempfile.mkdtemp(prefix="grokkit-sweep-modes-"))
    from grokkit.jax_setup import configure_jax

    configure_jax()
    import jax

    from grokkit.config import resolve
    from grokkit.group import Member, train_group
    from grokkit.train import Lane, RunSink, make_experiment, make_init_fn

    overrides = {**SETUPS[args.config], "train.steps": args.steps, "train.early_exit": False}
    configs = [resolve(None, {**overrides, "seed": seed}) for seed in range(args.members)]
    init = make_init_fn(make_experiment(configs[0]))
    result: dict = {**vars(args), "devices": len(jax.devices()), "backend": jax.default_backend()}
    for _ in range(args.repeats):
        for vectorize, name in ((True, "vmapped_s"), (False, "one_by_one_s")):
            members = [Member(make_experiment(c), init(c), Lane(RunSink(), [], 0)) for c in configs]
            start = time.perf_counter()
            train_group(members, vectorize=vectorize)
            result.setdefault(name, []).append(round(time.perf_counter() - start, 2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
