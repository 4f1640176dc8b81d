"""JAX process settings: the persistent compilation cache, configured before the first JAX op."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

CACHE_MAX_BYTES = 2 * 1024**3


def compilation_cache_dir() -> Path:
    """JAX_COMPILATION_CACHE_DIR, else GROKKIT_CACHE_DIR/jax, else the per-user cache folder."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return Path(os.environ["JAX_COMPILATION_CACHE_DIR"])
    base = (
        os.environ.get("GROKKIT_CACHE_DIR")
        or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "grokkit"
    )
    return Path(base) / "jax"


def configure_jax() -> None:
    """Turn on the persistent compilation cache so repeated and resumed runs skip compiling.

    Set GROKKIT_NO_COMPILE_CACHE=1 to turn it off.
    """
    import jax

    if os.environ.get("GROKKIT_NO_COMPILE_CACHE"):
        return
    cache = compilation_cache_dir()
    try:
        cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError:
        return  # an unwritable cache folder only costs compile time
    jax.config.update("jax_compilation_cache_dir", str(cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    jax.config.update("jax_compilation_cache_max_size", CACHE_MAX_BYTES)


def one_device_per_core(members: int) -> None:
    """Split the CPU into one XLA device per core (at most one per member) for a sweep, unless the user chose a
    device count (XLA_FLAGS' --xla_force_host_platform_device_count, JAX_NUM_CPU_DEVICES) or JAX already started.

    On a CPU a sweep trains member i on device i mod the count (`grokkit.group`), so with two devices two members
    train at once and fill the time one run leaves a core idle; each is still bit-identical to its standalone run
    (tests/test_sweep.py). Measured in README, Sweeps."""
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "") or "JAX_NUM_CPU_DEVICES" in os.environ:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if min(cores, members) <= 1:
        return
    import jax

    # RuntimeError: JAX already runs in this process (the Python API, the tests), whose devices stay as they are
    with contextlib.suppress(RuntimeError):
        jax.config.update("jax_num_cpu_devices", min(cores, members))
