"""Runs on disk as Python objects for notebooks: metrics, config, summary, checkpoints, parameters, the model."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from grokkit.checkpoint import CheckpointError, CheckpointInfo, list_checkpoints, load_checkpoint
from grokkit.config import Config
from grokkit.data import Dataset, Split, make_dataset
from grokkit.errors import UsageError
from grokkit.reporting import flat_columns, flatten_record
from grokkit.rundir import RunDir

if TYPE_CHECKING:
    from flax import nnx

    from grokkit.train import Experiment, TrainState


def metrics_table(records: list[dict[str, Any]]) -> Any:
    """Records as a pandas DataFrame of flat columns (see reporting.flatten_record), or a dict of NumPy arrays."""
    columns = flat_columns(records)
    rows = [flatten_record(record) for record in records]
    try:
        import pandas
    except ImportError:
        return {column: _column_array([row.get(column) for row in rows]) for column in columns}
    return pandas.DataFrame.from_records(rows, columns=columns)


def _column_array(values: list[Any]) -> np.ndarray:
    """Integers stay integers when none is missing; a missing number becomes NaN; anything else is an object array."""
    present = [v for v in values if v is not None]
    if len(present) == len(values) and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=np.int64)
    if all(isinstance(v, int | float) for v in present):
        return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    return np.asarray(values, dtype=object)


class Run:
    """One run directory, read for analysis.

    `metrics` (flat columns, one row per evaluation, sorted by step), `records` (the nested metrics.jsonl
    records), `config` and `summary` are read once, at `load_run`; `checkpoints` looks at the disk each time,
    so a run still training shows its newest checkpoints.
    """

    def __init__(self, path: str | Path):
        self._dir = RunDir.open(Path(path))
        self.path: Path = self._dir.path
        self.name: str = self.path.name
        self.config: Config = self._dir.config()
        self.summary: dict[str, Any] = self._dir.summary()
        self.records: list[dict[str, Any]] = sorted(self._dir.read_metrics().records, key=lambda r: r["step"])
        self.metrics: Any = metrics_table(self.records)  # pandas.DataFrame, or dict[str, np.ndarray] without pandas

    def __repr__(self) -> str:
        status = self.summary.get("status", "unknown")
        return f"Run({str(self.path)!r}, {self.config.data.task} p={self.config.data.p}, {status})"

    @property
    def checkpoints(self) -> list[int]:
        """Steps of the checkpoints on disk, oldest first (those whose checksum sidecar has been written)."""
        return [info.step for info in self._checkpoint_files()]

    @cached_property
    def dataset(self) -> Dataset:
        """Every example of the run's task: tokens [n, seq] and labels [n], in dataset order."""
        d = self.config.data
        return make_dataset(
            d.task, d.p, seed=self.config.data_seed, n_bits=d.n_bits, k_bits=d.k_bits, n_samples=d.n_samples
        )

    @cached_property
    def split(self) -> Split:
        """The run's train and validation indices into `dataset`, as stored in split.npz."""
        return self._dir.split()

    def params(self, step: int | None = None) -> dict[str, Any]:
        """The model parameters at checkpoint `step` (default: the newest valid one): nested dicts of JAX arrays.

        Keys follow the model's attributes (`params["blocks"][0]["w_in_DF"]`, `params["embed_VD"]`); `model` gives
        the same weights as a callable Flax model.
        """
        from flax import nnx

        return nnx.to_pure_dict(self._state(step).params)

    def model(self, step: int | None = None) -> nnx.Module:
        """Checkpoint `step`'s Flax model (default: the newest valid one): tokens [n, seq] -> logits [n, classes]."""
        from flax import nnx

        return nnx.merge(self._experiment.graphdef, self._state(step).params)

    @cached_property
    def _experiment(self) -> Experiment:
        from grokkit.jax_setup import configure_jax
        from grokkit.train import make_experiment

        configure_jax()
        return make_experiment(self.config, split=self.split)

    def _checkpoint_files(self) -> list[CheckpointInfo]:
        return [info for info in list_checkpoints(self._dir.checkpoints) if info.sidecar.is_file()]

    def _state(self, step: int | None) -> TrainState:
        from grokkit.train import abstract_state, state_from_arrays

        infos = self._checkpoint_files()
        available = ", ".join(str(info.step) for info in infos) or "none yet"
        if step is not None:
            infos = [info for info in infos if info.step == step]
            if not infos:
                raise UsageError(f"{self.name} has no checkpoint at step {step}; available steps: {available}")
        if not infos:
            raise UsageError(f"{self.name} has no checkpoint yet; train it further (grokkit resume {self.path})")
        template = abstract_state(self._experiment)
        failures = []
        for info in reversed(infos):  # without a step asked for, a damaged newest one falls back to the one before
            try:
                arrays, _ = load_checkpoint(info)
                return state_from_arrays(template, arrays)
            except (CheckpointError, ValueError) as err:
                failures.append(f"step {info.step}: {err}")
        raise UsageError(f"{self.name}: no loadable checkpoint ({'; '.join(failures)}); available steps: {available}")


def load_run(path: str | Path) -> Run:
    """Open a run directory (a `latest` link is followed) for analysis; a bad path raises UsageError."""
    return Run(path)
