"""Many runs in one process: grouping by array shapes, then one member after another (CPU) or vmapped (accelerators)."""

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
from grokkit.train import Batch, Data, Experiment, Lane, OneByOne, TrainState, make_chunk_fn, run_lanes

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


def _all_equal(trees: list[Any]) -> bool:
    return all(jax.tree.all(jax.tree.map(np.array_equal, tree, trees[0])) for tree in trees[1:])


def stack_data(members: list[Member]) -> tuple[Data, Data]:
    """The members' data stacked on a leading axis, and the vmap in_axes (shared parts are not stacked).

    Every example and the initial parameters (theta_0, one per seed) are shared when all members have the
    same, stacked otherwise."""
    parts = [m.exp.device_data() for m in members]
    first = parts[0]
    every_shared = _all_equal([p.every for p in parts])
    init_shared = _all_equal([p.init_params for p in parts])

    def stack(trees):
        return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)

    stacked = Data(
        train=stack([p.train for p in parts]),
        every=first.every if every_shared else stack([p.every for p in parts]),
        train_idx=jnp.stack([p.train_idx for p in parts]),
        val_idx=jnp.stack([p.val_idx for p in parts]),
        basis=first.basis,
        init_params=first.init_params if init_shared else stack([p.init_params for p in parts]),
    )
    # vmap's in_axes: Data's own pytree, with 0 (stacked) or None (shared) where the arrays go.
    axis: Any = 0
    every_axes: Any = None if every_shared else Batch(axis, axis)
    init_axes: Any = None if init_shared else axis
    axes = Data(
        train=Batch(axis, axis),
        every=every_axes,
        train_idx=axis,
        val_idx=axis,
        basis=None,
        init_params=init_axes,
    )
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


def vectorize_members(backend: str | None = None) -> bool:
    """THE rule for how a group's members train: vmapped in one program on an accelerator, one
    after another on a CPU.

    On a CPU one run already keeps the cores busy, so batching members buys no speed (README,
    Sweeps), and vmap's batched matmuls sum in an order that depends on how many members the
    program holds: a member would differ from its standalone run, and a resumed sweep (fewer
    members left, regrouped) from the uninterrupted one. One after another, every member runs
    `grokkit train`'s own compiled chunk, so it is bit-identical to a standalone run whatever the
    group, its width, or where an interruption fell. On an accelerator, where one small run leaves
    the device mostly idle, vmap is where a sweep's speed-up comes from; there members match a
    standalone run to float tolerance.
    """
    return (backend or jax.default_backend()) != "cpu"


def train_group(
    members: list[Member],
    *,
    devices: list[Any] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    on_chunk: Callable[[int, list[Lane]], None] = lambda step, lanes: None,
    vectorize: bool | None = None,
) -> None:
    """Train members that share a group key and a step, in lock-step chunks, over `devices`.

    `vectorize` (default: `vectorize_members()`) picks vmapped-in-one-program over one member after
    another; see `vectorize_members` for why and where.
    """
    devices = devices or jax.local_devices()
    if vectorize is None:
        vectorize = vectorize_members()
    if vectorize:
        _train_vectorized(members, devices, should_stop, on_chunk)
    else:
        _train_one_by_one(members, devices, should_stop, on_chunk)


def _member_data(exp: Experiment, device: Any, like: Data | None) -> Data:
    """`exp`'s data on `device`, sharing the arrays equal to `like`'s (every example, the task's basis: the same
    for most members; the initial parameters: the same for members with the same seed and init scale) instead
    of holding a copy per member."""
    data = exp.device_data()
    if like is not None:
        if _all_equal([data.every, like.every]):
            data = data._replace(every=like.every)
        if _all_equal([data.init_params, like.init_params]):
            data = data._replace(init_params=like.init_params)
        mine, theirs = data.basis, like.basis
        if mine is not None and theirs is not None and jax.tree.all(jax.tree.map(np.array_equal, mine, theirs)):
            data = data._replace(basis=theirs)
    return jax.device_put(data, device)


def _train_one_by_one(
    members: list[Member],
    devices: list[Any],
    should_stop: Callable[[], bool],
    on_chunk: Callable[[int, list[Lane]], None],
) -> None:
    """Each member advanced by the single-run chunk in turn; member i lives on device i mod devices,
    so members on different devices train at the same time. Finished members cost nothing."""
    shared: dict[Any, Data] = {}  # the first member's data on each device
    states, data = [], []
    for i, member in enumerate(members):
        device = devices[i % len(devices)]
        data.append(_member_data(member.exp, device, shared.get(device)))
        shared.setdefault(device, data[-1])
        states.append(jax.device_put(member.state, device))
    program = OneByOne(make_chunk_fn(members[0].exp), states, data)
    run_lanes(members[0].exp, program, [m.lane for m in members], should_stop=should_stop, on_chunk=on_chunk)
    for i, member in enumerate(members):
        member.state = jax.device_get(program.state(i))


class Vectorized:
    """Members stacked on a leading axis, trained by one vmapped chunk (a `train.Program`)."""

    def __init__(self, chunk: Any, state: TrainState, data: Data):
        self.chunk, self.stacked, self.data = chunk, state, data
        self._host: TrainState | None = None

    def advance(self, active: list[int], n_steps: int) -> list[dict[str, Any]]:
        self.stacked, metrics = self.chunk(self.stacked, self.data, n_steps)
        self._host = None
        metrics = jax.device_get(metrics)
        return [jax.tree.map(lambda leaf, i=i: leaf[i], metrics) for i in active]

    def state(self, i: int) -> TrainState:
        if self._host is None:
            self._host = jax.device_get(self.stacked)
        return jax.tree.map(lambda leaf: leaf[i], self._host)


def _train_vectorized(
    members: list[Member],
    devices: list[Any],
    should_stop: Callable[[], bool],
    on_chunk: Callable[[int, list[Lane]], None],
) -> None:
    """Every member vmapped in one program, the member axis sharded over `devices`.

    When half of the members still training have finished, the rest are restacked into a
    smaller program (one compile) so finished members stop costing compute.
    """
    mesh = Mesh(np.array(devices), (MEMBER_AXIS,))
    exp = members[0].exp
    chunks: dict[Data, Any] = {}  # by vmap in_axes: after compaction the members left may share their data
    active = list(members)
    while active:
        data, data_axes = stack_data(active)
        if data_axes not in chunks:
            chunks[data_axes] = make_chunk_fn(exp, data_axes)
        padding = -len(active) % len(devices)
        state = jax.tree.map(lambda *xs: np.stack(xs), *[jax.device_get(m.state) for m in active])
        state = _place(state, jax.tree.map(lambda _: 0, state), mesh, padding)
        program = Vectorized(chunks[data_axes], state, _place(data, data_axes, mesh, padding))
        lanes = [m.lane for m in active]
        compact_below = len(active) // 2 if len(active) > 1 else 0

        def compact_due(lanes=lanes, compact_below=compact_below) -> bool:
            return sum(lane.reason is None for lane in lanes) <= compact_below

        started = time.perf_counter()
        run_lanes(exp, program, lanes, should_stop=should_stop, on_chunk=on_chunk, pause=compact_due)
        still = []
        for i, member in enumerate(active):
            if member.lane.reason is None:
                member.state = program.state(i)
                member.lane.elapsed_before += time.perf_counter() - started
                still.append(member)
        active = still
