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


def trained_on(split: Split, config: Config, dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(indices into `dataset`, labels) of the examples a run trains on, as grokkit.train.Experiment does:
    --train-subset's part of `split`'s training examples, with --label-noise's replaced labels."""
    from grokkit.lineage import corrupt_labels, subset_split

    train_idx = subset_split(split, config).train_idx
    labels, _ = corrupt_labels(dataset.labels[train_idx], dataset.n_classes, config.data.label_noise, config.data_seed)
    return train_idx, labels


class Run:
    """One run directory, read for analysis.

    `metrics` (flat columns, one row per evaluation, sorted by step), `records` (the nested metrics.jsonl
    records), `config` and `summary` are read once, at `load_run`; `checkpoints` looks at the disk each time,
    so a run still training shows its newest checkpoints.

    `split` is the split stored in split.npz; `train_idx` and `train_labels` are what the run actually trained
    on (and what its recorded `train_acc` measures): the same as `split.train_idx` and `dataset.labels[...]`
    except with --train-subset (a part of the split's training examples) or --label-noise (some labels
    replaced by another class). Validation is always `split.val_idx` with the true `dataset.labels`.
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
        """The run's train and validation indices into `dataset`, as stored in split.npz (before --train-subset:
        see `train_idx` for the examples trained on)."""
        return self._dir.split()

    @cached_property
    def _trained_on(self) -> tuple[np.ndarray, np.ndarray]:
        return trained_on(self.split, self.config, self.dataset)

    @property
    def train_idx(self) -> np.ndarray:
        """Indices into `dataset` of the examples the run trained on (--train-subset's part of `split.train_idx`)."""
        return self._trained_on[0]

    @property
    def train_labels(self) -> np.ndarray:
        """The labels the run trained on, one per `train_idx` (with --label-noise, some are not the true label)."""
        return self._trained_on[1]

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
