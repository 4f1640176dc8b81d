"""Child process for `bench.py`: time from interpreter start to the first training step.

Prints one JSON line: wall-clock timestamps after imports and after the first step, and the
compile (or compilation-cache load) time of the training chunk.
"""

import json
import sys
import time

import_start = time.time()
from grokkit.config import resolve  # noqa: E402
from grokkit.jax_setup import configure_jax  # noqa: E402
from grokkit.train import init_state, make_chunk_fn, make_experiment  # noqa: E402

configure_jax()
import jax  # noqa: E402

imported = time.time()
config = resolve(sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] != "default" else None)
exp = make_experiment(config)
state = init_state(exp)
data = exp.device_data()
chunk = make_chunk_fn(exp)
n = config.train.eval_every
start = time.perf_counter()
state, metrics = chunk(state, data, n)
jax.block_until_ready(metrics)
first_call = time.perf_counter() - start
first_step_done = time.time()
start = time.perf_counter()
state, metrics = chunk(state, data, n)
jax.block_until_ready(metrics)
second_call = time.perf_counter() - start
print(json.dumps({"imported": imported, "first_step": first_step_done, "compile_s": first_call - second_call}))
