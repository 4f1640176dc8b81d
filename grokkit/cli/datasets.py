"""`grokkit tasks` and `grokkit data`: the task list and datasets written to files."""

from __future__ import annotations

import csv
import inspect
import io
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from grokkit.cli.app import command, stdout
from grokkit.cli.options import given_values, single_values, table_parameters
from grokkit.data import MAX_P, Dataset, Split
from grokkit.errors import UsageError


@command("tasks")
def tasks_command(
    p: Annotated[int, typer.Option(help="Modulus used for the example counts.", min=2, max=MAX_P)] = 97,
) -> None:
    """List the algorithmic tasks: name, formula, input-space size and source paper."""
    from grokkit.render import tasks_table

    stdout().print(tasks_table(p))


class DataFormat(StrEnum):
    npz = "npz"
    csv = "csv"


DATA_KEYS = ["data.task", "data.p", "data.train_frac", "seed", "data.data_seed", "data.n_bits", "data.k_bits",
             "data.n_samples"]  # fmt: skip


def data_command(**options: Any) -> None:
    """Generate a task's full dataset and its train/validation split, and write it to a file.

    The npz holds tokens \\[n, seq] (int32; `\\[x, y, =]`, '=' is the token after the
    operands), labels \\[n], train_idx and val_idx. The csv has one row per example
    with its operands, label and split. The split is the one `grokkit train` makes with
    the same settings.
    """
    from grokkit.config import resolve
    from grokkit.data import make_dataset, split_dataset
    from grokkit.render import dataset_summary

    config = resolve(None, single_values(given_values(options, DATA_KEYS)))
    d = config.data
    dataset = make_dataset(d.task, d.p, seed=config.data_seed, n_bits=d.n_bits, k_bits=d.k_bits, n_samples=d.n_samples)
    split = split_dataset(len(dataset), d.train_frac, config.data_seed)
    out, fmt = options["out"], options["fmt"]
    _write_dataset(out, dataset, split, fmt)
    stdout().print(dataset_summary(dataset, split, str(out), fmt.value))


data_command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [
        inspect.Parameter(
            "out",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Annotated[Path, typer.Option("--out", "-o", help="File to write.")],
        ),
        *table_parameters(lists=False, keys=DATA_KEYS),
        inspect.Parameter(
            "fmt",
            inspect.Parameter.KEYWORD_ONLY,
            default=DataFormat.npz,
            annotation=Annotated[
                DataFormat, typer.Option("--format", help="npz (arrays) or csv (one row per example).")
            ],
        ),
    ]
)
command("data")(data_command)


def _write_dataset(out: Path, dataset: Dataset, split: Split, fmt: DataFormat) -> None:
    from grokkit.atomic import atomic_write_bytes

    buffer = io.BytesIO()
    if fmt == DataFormat.npz:
        np.savez(buffer, tokens=dataset.tokens, labels=dataset.labels, train_idx=split.train_idx, val_idx=split.val_idx)
        payload = buffer.getvalue()
    else:
        text = io.StringIO()
        writer = csv.writer(text)
        image = np.issubdtype(dataset.tokens.dtype, np.floating)  # features, no '=' token to drop
        inputs = dataset.tokens if image else dataset.tokens[:, :-1]
        if image:
            operands = [f"f{i}" for i in range(inputs.shape[1])]
        else:
            operands = [f"x{i}" for i in range(dataset.n_operands)] if dataset.n_operands > 2 else ["x", "y"]
        writer.writerow([*operands, "label", "split"])
        is_train = np.zeros(len(dataset), bool)
        is_train[split.train_idx] = True
        rows = zip(inputs.tolist(), dataset.labels.tolist(), is_train.tolist(), strict=True)
        for tokens, label, train in rows:
            writer.writerow([*tokens, label, "train" if train else "val"])
        payload = text.getvalue().encode()
    if out.is_dir():
        raise UsageError(f"{out} is a folder; give a file name", option="--out")
    try:
        atomic_write_bytes(out, payload, follow=True)  # a link is followed; a device or FIFO written as it is
    except OSError as err:
        raise UsageError(f"cannot write {out}: {err.strerror}", option="--out") from None
