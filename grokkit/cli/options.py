"""The option table: one row per config option, from which `train`, `sweep`, `resume` and `data` get their flags."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from grokkit.config import Config, field_kind, option_name, parse_text
from grokkit.errors import UsageError
from grokkit.presets import PRESETS

DATA = "Data"
MODEL = "Model"
OPTIM = "Optimizer"
GROK = "Grokking interventions"
RUN = "Run"
LINEAGE = "From another run"


@dataclass(frozen=True)
class Row:
    key: str  # the config field, "section.field" or "seed"
    help: str
    panel: str
    listable: bool = True  # `sweep` takes a list of values (a grid axis)

    @property
    def flag(self) -> str:
        return option_name(self.key)

    @property
    def param(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")

    @property
    def is_switch(self) -> bool:
        return field_kind(self.key) is bool


TABLE: tuple[Row, ...] = (
    Row("data.task", "Task (see `grokkit tasks`).", DATA),
    Row("data.p", "Modulus (modular tasks and rand).", DATA),
    Row(
        "data.train_frac",
        "Fraction of the examples used for training (1,000 images: 0.5565 for digits, 0.2 for mnist1d).",
        DATA,
    ),
    Row("seed", "Seed of the model init and the split.", DATA),
    Row("data.data_seed", "Seed of the split only. \\[default: --seed]", DATA),
    Row("data.n_bits", "sparse-parity: bits per input.", DATA),
    Row("data.k_bits", "sparse-parity: relevant bits.", DATA),
    Row("data.n_samples", "sparse-parity: distinct inputs drawn.", DATA),
    Row("model.kind", "Model family.", MODEL),
    Row("model.layers", "Transformer layers.", MODEL),
    Row("model.d_model", "Transformer width.", MODEL),
    Row("model.heads", "Attention heads; must divide d-model.", MODEL),
    Row("model.d_mlp", "Transformer MLP width.", MODEL),
    Row("model.activation", "Nonlinearity (quadratic: Gromov 2023).", MODEL),
    Row("model.layer_norm", "Pre-LayerNorm in the transformer.", MODEL),
    Row("model.width", "MLP model: hidden width.", MODEL),
    Row("model.depth", "MLP model: hidden layers.", MODEL),
    Row("model.embed", "MLP model: concat (one table per operand) or sum (shared).", MODEL),
    Row("model.bias", "MLP model: biases.", MODEL),
    Row(
        "model.init_scale",
        "Multiply every initial weight by this (Omnigrok: large scales delay generalization).",
        MODEL,
    ),
    Row(
        "model.output_scale",
        "Kumar et al. 2024's output scale alpha: train alpha x (f - f at init) on the loss / alpha^2 (with SGD, "
        "lr / alpha^2); large alpha trains lazily. \\[default: off, the plain network]",
        MODEL,
    ),
    Row("optim.name", "AdamW (decoupled decay), Adam (L2), SGD.", OPTIM),
    Row("optim.lr", "Peak learning rate.", OPTIM),
    Row("optim.wd", "Weight decay.", OPTIM),
    Row("optim.beta1", "Adam beta1.", OPTIM),
    Row("optim.beta2", "Adam beta2.", OPTIM),
    Row("optim.adam_eps", "Adam epsilon, added to the root of the second moment (Prieto et al.'s code: 1e-25).", OPTIM),
    Row("optim.momentum", "SGD momentum.", OPTIM),
    Row("optim.warmup", "Linear warmup steps.", OPTIM),
    Row("optim.batch_size", "Minibatch size; 0 = full batch.", OPTIM),
    Row("optim.decay_to", "Weight decay pulls toward zero, or toward the initial weights (Power et al.).", OPTIM),
    Row(
        "optim.orthograd",
        "⊥Grad (Prieto et al. 2025): remove each gradient's component along its weights, keep its norm.",
        GROK,
    ),
    Row(
        "optim.grokfast",
        "Grokfast (Lee et al. 2024): add lambda x the EMA (or the moving average over a window) of past gradients.",
        GROK,
    ),
    Row("optim.grokfast_alpha", "Grokfast EMA decay.", GROK),
    Row("optim.grokfast_lambda", "Grokfast amplification.", GROK),
    Row("optim.grokfast_window", "Grokfast MA window.", GROK),
    Row(
        "train.loss",
        "softmax cross-entropy, StableMax cross-entropy (Prieto et al. 2025), "
        "or squared error to the one-hot label (Gromov 2023).",
        GROK,
    ),
    Row("train.loss_dtype", "Precision of the logits inside the loss.", GROK),
    Row("train.steps", "Step budget.", RUN),
    Row("train.eval_every", "Evaluate the full train and validation sets every N steps.", RUN),
    Row("train.checkpoint_every", "Checkpoint every N steps (a multiple of --eval-every).", RUN, listable=False),
    Row("train.keep_checkpoints", "Checkpoints kept.", RUN, listable=False),
    Row(
        "train.early_exit",
        "Stop once validation accuracy has stayed >= 99% for --early-exit-window steps "
        "(never on rising validation loss).",
        RUN,
    ),
    Row("train.early_exit_window", "Steps validation accuracy must stay >= 99% before an early exit.", RUN),
    Row(
        "train.watch_after",
        "Keep training N x the steps it took to generalize before the early exit, to watch what comes after "
        "(slingshots, anti-grokking; `report` shows them); 0 = exit as usual.",
        RUN,
    ),
    Row(
        "train.init_from",
        "RUN\\[@STEP]: start from that run's parameters at STEP (default: its newest checkpoint); same task, data "
        "and model shapes.",
        LINEAGE,
        listable=False,
    ),
    Row(
        "train.init_optimizer",
        "With --init-from: also take its optimizer state and step counter (training continues at STEP).",
        LINEAGE,
    ),
    Row("train.init_sha256", "Checksum the --init-from checkpoint must have (recorded when the run starts).", LINEAGE),
    Row(
        "data.train_subset",
        "With --init-from: train on this fraction of the source run's training split (ungrokking, Varma et al. "
        "2023); validation unchanged.",
        LINEAGE,
    ),
    Row(
        "data.label_noise",
        "Replace this fraction of training labels by another class (Doshi et al. 2024), drawn from the data seed.",
        DATA,
    ),
    Row(
        "optim.mask_from",
        "RUN@STEP: prune a fresh init with that checkpoint's weight magnitudes (grokking tickets, Minegishi et "
        "al. 2023); the pruned weights stay 0.",
        LINEAGE,
        listable=False,
    ),
    Row("optim.prune", "With --mask-from: fraction of each weight matrix pruned (smallest magnitudes).", LINEAGE),
    Row(
        "optim.mask_random",
        "The control for --mask-from: prune the same number of entries per tensor at random (drawn from --seed).",
        LINEAGE,
    ),
    Row("optim.mask_sha256", "Checksum the --mask-from checkpoint must have (recorded when the run starts).", LINEAGE),
)
ROWS = {row.key: row for row in TABLE}
SWITCH_WORDS = "on|off"


def shown_default(key: str) -> str:
    """'[default: value]' for a config field, read from the one place defaults live (the dataclasses)."""
    value: Any = Config()
    for part in key.split("."):
        value = getattr(value, part)
    if isinstance(value, bool):
        shown = "on" if value else "off"
    elif value is None:
        shown = {"optim.batch_size": "full batch"}.get(key, "")
    elif isinstance(value, Enum):
        shown = value.value
    elif isinstance(value, float):
        shown = f"{value:g}"
    else:
        shown = str(value)
    return f"\\[default: {shown}]" if shown else ""


def _metavar(row: Row, lists: bool) -> str:
    kind = field_kind(row.key)
    if row.is_switch:
        base = SWITCH_WORDS
    elif issubclass(kind, Enum):
        base = "|".join(m.value for m in kind)
    elif row.key == "data.task":
        base = "TASK"
    else:
        base = {int: "INT", float: "FLOAT"}.get(kind, "TEXT")
    return f"{base}[,...]" if lists and row.listable else base


def _help(row: Row, lists: bool) -> str:
    parts = [row.help]
    if row.is_switch:
        parts.append(f"({row.flag.replace('--', '--no-', 1)}: off)")
    if lists and row.listable:
        ranges = " or a range a:b" if field_kind(row.key) is int and not row.is_switch else ""
        parts.append(f"A list a,b,c{ranges}.")
    default = "" if row.key == "data.data_seed" else shown_default(row.key)
    return " ".join(p for p in [*parts, default] if p)


def option_parameter(row: Row, lists: bool, help: str | None = None) -> inspect.Parameter:
    """A command parameter for a table row: text that `coerce` (or, for lists, `parse_values`) converts."""
    option = typer.Option(
        row.flag,
        help=help or _help(row, lists),
        rich_help_panel=row.panel,
        metavar=_metavar(row, lists),
        show_default=False,
    )
    annotation = Annotated[str | None, option]
    return inspect.Parameter(row.param, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)


def table_parameters(lists: bool, keys: list[str] | None = None) -> list[inspect.Parameter]:
    """The table's options (all of them, or those named), in table order."""
    chosen = TABLE if keys is None else [ROWS[key] for key in keys]
    return [option_parameter(row, lists) for row in chosen]


def run_parameters(sweep: bool) -> list[inspect.Parameter]:
    """--run-dir, --config and --preset, shared by `train` and `sweep`."""
    where = (
        "Sweep folder. \\[default: runs/sweep-<task>-<timestamp>]"
        if sweep
        else ("Run directory. \\[default: runs/<task>-<timestamp>]")
    )
    presets = "; ".join(f"[bold]{p.name}[/] = {p.source}" for p in PRESETS.values())
    params: dict[str, Any] = {  # parameter name -> its annotation (an Annotated[...] form)
        "run_dir": Annotated[Path | None, typer.Option(help=where, rich_help_panel=RUN)],
        "config_file": Annotated[
            Path | None,
            typer.Option(
                "--config",
                help="TOML file of settings (\\[data], \\[model], \\[optim], \\[train] tables, seed, preset); "
                "flags override it.",
                rich_help_panel=RUN,
            ),
        ],
        "preset": Annotated[
            str | None,
            typer.Option(
                help=f"Start from a paper's setup: {presets}. Explicit flags override its values.",
                rich_help_panel=RUN,
                metavar="|".join(PRESETS),
            ),
        ],
    }
    params["wandb"] = WANDB
    return [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=a) for n, a in params.items()]


WANDB = Annotated[
    str | None,
    typer.Option(
        metavar="PROJECT",
        help="Also log every metric to this Weights & Biases project (needs: pip install 'grokkit\\[wandb]'; "
        "WANDB_MODE=offline writes only under RUN_DIR/wandb).",
        rich_help_panel=RUN,
    ),
]


def given_values(options: dict[str, Any], keys: list[str] | None = None) -> dict[str, str]:
    """{config key: text} for the table options a user gave."""
    rows = TABLE if keys is None else [ROWS[key] for key in keys]
    return {row.key: options[row.param] for row in rows if options.get(row.param) is not None}


def single_values(texts: dict[str, str]) -> dict[str, Any]:
    """One typed value per option (`train`, `data`, `resume`): a list is refused with a pointer to `sweep`."""
    values = {}
    for key, text in texts.items():
        if "," in text:
            raise UsageError(f"takes one value, got '{text}'; `grokkit sweep` takes lists", option=option_name(key))
        values[key] = parse_text(key, text)
    return values
