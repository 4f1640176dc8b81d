"""Many runs in one compiled program: grouping by array shapes, stacking members, sharding them over devices."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from grokkit.config import Config, DataConfig, ModelConfig, OptimConfig
from grokkit.data import input_space_size
from grokkit.optim import INJECTED
from grokkit.train import Batch, Data, Experiment, Lane, TrainState, make_chunk_fn, run_lanes

MEMBER_AXIS = "members"


def group_key(config: Config) -> str:
    """Runs with the same key have the same array shapes and compiled code; they differ only in values
    that live in the state or the data (seed, split, init scale, the optimizer's hyperparameters)."""
    d = config.data
    n_train = round(d.train_frac * input_space_size(d.task, d.p, d.n_bits, d.n_samples))
    neutral = dataclasses.replace(
        config,
        seed=0,
        preset=None,
        data=dataclasses.replace(d, train_frac=DataConfig.train_frac, data_seed=None),
        model=dataclasses.replace(config.model, init_scale=ModelConfig.init_scale),
        optim=dataclasses.replace(config.optim, **{k: getattr(OptimConfig, k) for k in INJECTED}),
    )
    return f"{neutral.to_dict()}|n_train={n_train}"


@dataclass
class Member:
    """One run to train inside a group: its experiment, state, and lane (sink, history, step)."""

    exp: Experiment
    state: TrainState
    lane: Lane


def stack_data(members: list[Member]) -> tuple[Data, Data]:
    """The members' data stacked on a leading axis, and the vmap in_axes (shared parts are not stacked)."""
    parts = [m.exp.device_data() for m in members]
    first = parts[0]
    every_shared = all(jax.tree.all(jax.tree.map(np.array_equal, p.every, first.every)) for p in parts)
    stacked = Data(
        train=jax.tree.map(lambda *xs: jnp.stack(xs), *[p.train for p in parts]),
        every=first.every if every_shared else jax.tree.map(lambda *xs: jnp.stack(xs), *[p.every for p in parts]),
        train_idx=jnp.stack([p.train_idx for p in parts]),
        val_idx=jnp.stack([p.val_idx for p in parts]),
        directions=first.directions,
    )
    # vmap's in_axes: Data's own pytree, with 0 (stacked) or None (shared) where the arrays go.
    axis: Any = 0
    every_axes: Any = None if every_shared else Batch(axis, axis)
    axes = Data(train=Batch(axis, axis), every=every_axes, train_idx=axis, val_idx=axis, directions=None)
    return stacked, axes


def _place(tree: Any, axes: Any, mesh: Mesh, padding: int) -> Any:
    """Shard the mapped leaves over the member axis, padded by repeating the last member so it divides
    evenly over the devices (padding members are trained and ignored); replicate the shared leaves."""
    member_sharding = NamedSharding(mesh, PartitionSpec(MEMBER_AXIS))
    replicated = NamedSharding(mesh, PartitionSpec())

    def mapped(x):
        x = np.asarray(x)
        return jax.device_put(np.concatenate([x, np.repeat(x[-1:], padding, axis=0)]), member_sharding)

    return jax.tree.map(
        lambda axis, sub: jax.tree.map(mapped if axis == 0 else partial(jax.device_put, device=replicated), sub),
        axes,
        tree,
        is_leaf=lambda x: x is None,
    )


def train_group(
    members: list[Member],
    *,
    devices: list[Any] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    on_chunk: Callable[[int, list[Lane]], None] = lambda step, lanes: None,
) -> None:
    """Train members that share a group key and a step, vmapped in one program, sharded over `devices`.

    When half of the members still training have finished, the rest are restacked into a
    smaller program (one compile) so finished members stop costing compute.
    """
    devices = devices or jax.local_devices()
    mesh = Mesh(np.array(devices), (MEMBER_AXIS,))
    exp = members[0].exp
    chunks: dict[Data, Any] = {}  # by vmap in_axes: after compaction the members left may share their data
    active = list(members)
    while active:
        data, data_axes = stack_data(active)
        if data_axes not in chunks:
            chunks[data_axes] = make_chunk_fn(exp, data_axes)
        chunk = chunks[data_axes]
        padding = -len(active) % len(devices)
        state = jax.tree.map(lambda *xs: np.stack(xs), *[jax.device_get(m.state) for m in active])
        state = _place(state, jax.tree.map(lambda _: 0, state), mesh, padding)
        data = _place(data, data_axes, mesh, padding)
        lanes = [m.lane for m in active]
        compact_below = len(active) // 2 if len(active) > 1 else 0

        def compact_due(lanes=lanes, compact_below=compact_below) -> bool:
            return sum(lane.reason is None for lane in lanes) <= compact_below

        started = time.perf_counter()
        state = run_lanes(
            exp, chunk, state, data, lanes, batched=True, should_stop=should_stop, on_chunk=on_chunk,
            pause=compact_due,
        )  # fmt: skip
        host = jax.device_get(state)
        still = []
        for i, member in enumerate(active):
            if member.lane.reason is None:
                member.state = jax.tree.map(lambda leaf, i=i: leaf[i], host)
                member.lane.elapsed_before += time.perf_counter() - started
                still.append(member)
        active = still
