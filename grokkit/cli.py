"""The `grokkit` command line: parse options into a config, call the library, print what it returns."""

from __future__ import annotations

import copy
import csv
import functools
import inspect as pyinspect
import io
import time
import typing
from enum import Enum, StrEnum
from inspect import cleandoc as inspect_cleandoc
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape

from grokkit import __version__
from grokkit.config import (
    PRESETS,
    Activation,
    Config,
    DecayTarget,
    Embed,
    Grokfast,
    Loss,
    LossDtype,
    ModelKind,
    OptimizerName,
    load_config_file,
    resolve,
)
from grokkit.errors import GrokkitError, UsageError

app = typer.Typer(
    name="grokkit",
    help="Grokking experiments from the command line: datasets, training, resuming, reports.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
)

DATA = "Data"
MODEL = "Model"
OPTIM = "Optimizer"
GROK = "Grokking interventions"
RUN = "Run"


def _default(key: str) -> str:
    """'[default: value]' for a config field, read from the one place defaults live (the dataclasses)."""
    value = Config()
    for part in key.split("."):
        value = getattr(value, part)
    if isinstance(value, bool):
        shown = "on" if value else "off"
    elif value is None:
        shown = "full batch"
    elif isinstance(value, Enum):
        shown = value.value
    elif isinstance(value, float):
        shown = f"{value:g}"
    else:
        shown = str(value)
    return f"\\[default: {shown}]"


def _stdout() -> Console:
    return Console(highlight=False)


def _stderr() -> Console:
    return Console(stderr=True, highlight=False)


def _user_errors(command):
    """Turn a GrokkitError into one line on stderr and its exit code, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except GrokkitError as err:
            _stderr().print(f"[bold red]error:[/] {escape(str(err))}", soft_wrap=True)
            raise typer.Exit(err.exit_code) from None

    wrapper.__doc__ = _reflowed(command.__doc__)
    return wrapper


def _reflowed(doc: str | None) -> str | None:
    """Join each paragraph's lines: Rich help keeps single newlines, which breaks lines twice on narrow terminals."""
    if doc is None:
        return None
    paragraphs = inspect_cleandoc(doc).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


def _version(value: bool) -> None:
    if value:
        _stdout().print(f"grokkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Grokking experiments from the command line: datasets, training, resuming, reports."""


@app.command()
@_user_errors
def tasks(
    p: Annotated[int, typer.Option(help="Modulus used for the example counts.", min=2)] = 97,
) -> None:
    """List the algorithmic tasks: name, formula, input-space size and source paper."""
    from grokkit.render import tasks_table

    _stdout().print(tasks_table(p))


class DataFormat(StrEnum):
    npz = "npz"
    csv = "csv"


@app.command()
@_user_errors
def data(
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write.")],
    task: Annotated[str, typer.Option(help="Task name (see `grokkit tasks`).")] = "mod-add",
    p: Annotated[int, typer.Option(help="Modulus (modular tasks and rand).")] = 97,
    train_frac: Annotated[float, typer.Option(help="Fraction of examples in the train split, in (0, 1).")] = 0.35,
    seed: Annotated[int, typer.Option(help="Seed of the split (and of rand / sparse-parity tables).", min=0)] = 0,
    n_bits: Annotated[int, typer.Option(help="sparse-parity: bits per input.")] = 12,
    k_bits: Annotated[int, typer.Option(help="sparse-parity: relevant bits.")] = 3,
    n_samples: Annotated[int, typer.Option(help="sparse-parity: distinct inputs drawn.")] = 2000,
    fmt: Annotated[DataFormat, typer.Option("--format", help="npz (arrays) or csv (one row per example).")] = (
        DataFormat.npz
    ),
) -> None:
    """Generate a task's full dataset and its train/validation split, and write it to a file.

    The npz holds tokens \\[n, seq] (int32; `\\[x, y, =]`, '=' is the token after the
    operands), labels \\[n], train_idx and val_idx. The csv has one row per example
    with its operands, label and split.
    """
    from grokkit.data import make_dataset, split_dataset
    from grokkit.render import dataset_summary

    dataset = make_dataset(task, p, seed=seed, n_bits=n_bits, k_bits=k_bits, n_samples=n_samples)
    split = split_dataset(len(dataset), train_frac, seed)
    _write_dataset(out, dataset, split, fmt)
    _stdout().print(dataset_summary(dataset, split, str(out), fmt.value))


def _write_dataset(out: Path, dataset, split, fmt: DataFormat) -> None:
    from grokkit.atomic import atomic_write_bytes

    buffer = io.BytesIO()
    if fmt == DataFormat.npz:
        np.savez(buffer, tokens=dataset.tokens, labels=dataset.labels, train_idx=split.train_idx, val_idx=split.val_idx)
        payload = buffer.getvalue()
    else:
        text = io.StringIO()
        writer = csv.writer(text)
        operands = [f"x{i}" for i in range(dataset.n_operands)] if dataset.n_operands > 2 else ["x", "y"]
        writer.writerow([*operands, "label", "split"])
        is_train = np.zeros(len(dataset), bool)
        is_train[split.train_idx] = True
        rows = zip(dataset.tokens[:, :-1].tolist(), dataset.labels.tolist(), is_train.tolist(), strict=True)
        for tokens, label, train in rows:
            writer.writerow([*tokens, label, "train" if train else "val"])
        payload = text.getvalue().encode()
    if out.is_dir():
        raise UsageError(f"{out} is a folder; give a file name", option="--out")
    try:
        atomic_write_bytes(out, payload)
    except OSError as err:
        raise UsageError(f"cannot write {out}: {err.strerror}", option="--out") from None


OPTION_KEYS = {
    "task": "data.task", "p": "data.p", "train_frac": "data.train_frac", "seed": "seed",
    "data_seed": "data.data_seed", "model": "model.kind", "layers": "model.layers", "d_model": "model.d_model",
    "heads": "model.heads", "d_mlp": "model.d_mlp", "activation": "model.activation",
    "layer_norm": "model.layer_norm", "width": "model.width", "depth": "model.depth", "embed": "model.embed",
    "bias": "model.bias", "init_scale": "model.init_scale", "optimizer": "optim.name", "lr": "optim.lr",
    "wd": "optim.wd", "beta1": "optim.beta1", "beta2": "optim.beta2", "momentum": "optim.momentum",
    "warmup": "optim.warmup", "batch_size": "optim.batch_size", "decay_to": "optim.decay_to",
    "orthograd": "optim.orthograd", "grokfast": "optim.grokfast", "grokfast_alpha": "optim.grokfast_alpha",
    "grokfast_lambda": "optim.grokfast_lambda", "grokfast_window": "optim.grokfast_window", "loss": "train.loss",
    "loss_dtype": "train.loss_dtype", "steps": "train.steps", "eval_every": "train.eval_every",
    "checkpoint_every": "train.checkpoint_every", "keep_checkpoints": "train.keep_checkpoints",
    "early_exit": "train.early_exit", "early_exit_window": "train.early_exit_window",
}  # fmt: skip
"""Each `train`/`sweep` option's config key."""


@app.command()
@_user_errors
def train(
    task: Annotated[
        str | None, typer.Option(help=f"Task (see `grokkit tasks`). {_default('data.task')}", rich_help_panel=DATA)
    ] = None,
    p: Annotated[int | None, typer.Option(help=f"Modulus. {_default('data.p')}", rich_help_panel=DATA)] = None,
    train_frac: Annotated[
        float | None,
        typer.Option(
            help=f"Fraction of all pairs used for training. {_default('data.train_frac')}", rich_help_panel=DATA
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help=f"Seed of the model init and the split. {_default('seed')}", rich_help_panel=DATA)
    ] = None,
    data_seed: Annotated[
        int | None, typer.Option(help="Seed of the split only. \\[default: --seed]", rich_help_panel=DATA)
    ] = None,
    model: Annotated[
        ModelKind | None, typer.Option(help=f"Model family. {_default('model.kind')}", rich_help_panel=MODEL)
    ] = None,
    layers: Annotated[
        int | None, typer.Option(help=f"Transformer layers. {_default('model.layers')}", rich_help_panel=MODEL)
    ] = None,
    d_model: Annotated[
        int | None, typer.Option(help=f"Transformer width. {_default('model.d_model')}", rich_help_panel=MODEL)
    ] = None,
    heads: Annotated[
        int | None,
        typer.Option(help=f"Attention heads; must divide d-model. {_default('model.heads')}", rich_help_panel=MODEL),
    ] = None,
    d_mlp: Annotated[
        int | None, typer.Option(help=f"Transformer MLP width. {_default('model.d_mlp')}", rich_help_panel=MODEL)
    ] = None,
    activation: Annotated[
        Activation | None,
        typer.Option(
            help=f"Nonlinearity (quadratic: Gromov 2023). {_default('model.activation')}", rich_help_panel=MODEL
        ),
    ] = None,
    layer_norm: Annotated[
        bool | None,
        typer.Option(
            "--layer-norm/--no-layer-norm",
            help=f"Pre-LayerNorm in the transformer. {_default('model.layer_norm')}",
            rich_help_panel=MODEL,
        ),
    ] = None,
    width: Annotated[
        int | None, typer.Option(help=f"MLP model: hidden width. {_default('model.width')}", rich_help_panel=MODEL)
    ] = None,
    depth: Annotated[
        int | None, typer.Option(help=f"MLP model: hidden layers. {_default('model.depth')}", rich_help_panel=MODEL)
    ] = None,
    embed: Annotated[
        Embed | None,
        typer.Option(
            help=f"MLP model: concat (one table per operand) or sum (shared). {_default('model.embed')}",
            rich_help_panel=MODEL,
        ),
    ] = None,
    bias: Annotated[
        bool | None,
        typer.Option("--bias/--no-bias", help=f"MLP model: biases. {_default('model.bias')}", rich_help_panel=MODEL),
    ] = None,
    init_scale: Annotated[
        float | None,
        typer.Option(
            help=f"Multiply every initial weight by this (Omnigrok: large scales delay generalization). "
            f"{_default('model.init_scale')}",
            rich_help_panel=MODEL,
        ),
    ] = None,
    optimizer: Annotated[
        OptimizerName | None,
        typer.Option(
            help=f"adamw (decoupled decay), adam (coupled L2) or sgd. {_default('optim.name')}", rich_help_panel=OPTIM
        ),
    ] = None,
    lr: Annotated[
        float | None, typer.Option(help=f"Peak learning rate. {_default('optim.lr')}", rich_help_panel=OPTIM)
    ] = None,
    wd: Annotated[
        float | None, typer.Option(help=f"Weight decay. {_default('optim.wd')}", rich_help_panel=OPTIM)
    ] = None,
    beta1: Annotated[
        float | None, typer.Option(help=f"Adam beta1. {_default('optim.beta1')}", rich_help_panel=OPTIM)
    ] = None,
    beta2: Annotated[
        float | None, typer.Option(help=f"Adam beta2. {_default('optim.beta2')}", rich_help_panel=OPTIM)
    ] = None,
    momentum: Annotated[
        float | None, typer.Option(help=f"SGD momentum. {_default('optim.momentum')}", rich_help_panel=OPTIM)
    ] = None,
    warmup: Annotated[
        int | None, typer.Option(help=f"Linear warmup steps. {_default('optim.warmup')}", rich_help_panel=OPTIM)
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(help=f"Minibatch size; 0 = full batch. {_default('optim.batch_size')}", rich_help_panel=OPTIM),
    ] = None,
    decay_to: Annotated[
        DecayTarget | None,
        typer.Option(
            help=f"Weight decay pulls toward zero, or toward the initial weights (Power et al.). "
            f"{_default('optim.decay_to')}",
            rich_help_panel=OPTIM,
        ),
    ] = None,
    orthograd: Annotated[
        bool | None,
        typer.Option(
            "--orthograd/--no-orthograd",
            help="⊥Grad (Prieto et al. 2025): remove each gradient's component along its weights, keep its norm. "
            + _default("optim.orthograd"),
            rich_help_panel=GROK,
        ),
    ] = None,
    grokfast: Annotated[
        Grokfast | None,
        typer.Option(
            help="Grokfast (Lee et al. 2024): add lambda x the EMA (or the moving average over a window) of "
            f"past gradients. {_default('optim.grokfast')}",
            rich_help_panel=GROK,
        ),
    ] = None,
    grokfast_alpha: Annotated[
        float | None,
        typer.Option(help=f"Grokfast EMA decay. {_default('optim.grokfast_alpha')}", rich_help_panel=GROK),
    ] = None,
    grokfast_lambda: Annotated[
        float | None,
        typer.Option(help=f"Grokfast amplification. {_default('optim.grokfast_lambda')}", rich_help_panel=GROK),
    ] = None,
    grokfast_window: Annotated[
        int | None,
        typer.Option(help=f"Grokfast MA window. {_default('optim.grokfast_window')}", rich_help_panel=GROK),
    ] = None,
    loss: Annotated[
        Loss | None,
        typer.Option(
            help="softmax cross-entropy, StableMax cross-entropy (Prieto et al. 2025), or squared error to the "
            f"one-hot label (Gromov 2023). {_default('train.loss')}",
            rich_help_panel=GROK,
        ),
    ] = None,
    loss_dtype: Annotated[
        LossDtype | None,
        typer.Option(
            help=f"Precision of the logits inside the loss. {_default('train.loss_dtype')}", rich_help_panel=GROK
        ),
    ] = None,
    steps: Annotated[
        int | None, typer.Option(help=f"Step budget. {_default('train.steps')}", rich_help_panel=RUN)
    ] = None,
    eval_every: Annotated[
        int | None,
        typer.Option(
            help=f"Evaluate the full train and validation sets every N steps. {_default('train.eval_every')}",
            rich_help_panel=RUN,
        ),
    ] = None,
    checkpoint_every: Annotated[
        int | None,
        typer.Option(
            help=f"Checkpoint every N steps (a multiple of --eval-every). {_default('train.checkpoint_every')}",
            rich_help_panel=RUN,
        ),
    ] = None,
    keep_checkpoints: Annotated[
        int | None, typer.Option(help=f"Checkpoints kept. {_default('train.keep_checkpoints')}", rich_help_panel=RUN)
    ] = None,
    early_exit: Annotated[
        bool | None,
        typer.Option(
            "--early-exit/--no-early-exit",
            help="Stop once validation accuracy has stayed >= 99% for --early-exit-window steps "
            f"(never on rising validation loss). {_default('train.early_exit')}",
            rich_help_panel=RUN,
        ),
    ] = None,
    early_exit_window: Annotated[
        int | None,
        typer.Option(
            help="Steps validation accuracy must stay >= 99% before an early exit. "
            + _default("train.early_exit_window"),
            rich_help_panel=RUN,
        ),
    ] = None,
    run_dir: Annotated[
        Path | None, typer.Option(help="Run directory. \\[default: runs/<task>-p<p>-<timestamp>]", rich_help_panel=RUN)
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="TOML file of settings (\\[data], \\[model], \\[optim], \\[train] tables, seed, preset); "
            "flags override it.",
            rich_help_panel=RUN,
        ),
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            help="Start from a paper's setup: "
            + "; ".join(f"[bold]{p.name}[/] = {p.source}" for p in PRESETS.values())
            + ". Explicit flags override its values.",
            rich_help_panel=RUN,
        ),
    ] = None,
) -> None:
    """Train a model on an algorithmic task and watch it grok.

    The defaults (mod-add, p=97, 35% train, 1-layer transformer, AdamW lr 3e-3, wd 1,
    full batch) memorize within ~100 steps and generalize several times later, in under
    a minute on a laptop CPU. Metrics, checkpoints and the resolved config go to the run
    directory; runs/latest points to the newest. Ctrl-C saves a checkpoint and exits;
    `grokkit resume` continues bit-exactly.
    """
    options = locals()
    overrides = {key: options[name] for name, key in OPTION_KEYS.items()}
    given = load_config_file(config_file) if config_file else {}
    given.update({key: value for key, value in overrides.items() if value is not None})
    if batch_size == 0:
        given["optim.batch_size"] = None
    config = resolve(preset, given)
    from grokkit.render import describe_config
    from grokkit.runner import start_run

    console = _stdout()
    console.print(describe_config(config))
    _run_with_progress(console, config.train.steps, lambda **kw: start_run(config, run_dir, **kw))


def sweep(**options: Any) -> None:
    """Train a grid of runs (seeds, train fractions, learning rates, ...) together in one compiled program.

    Every train option is accepted; numeric and choice options also take a comma list
    (--train-frac 0.3,0.4,0.5) and integer options a range start:stop[:step], stop excluded
    (--seed 0:8). The grid is the product of the lists. Members that share array shapes
    train as one vmapped program, sharded over all local devices; each member is an
    ordinary run directory inside the sweep folder (report, resume and inspect work on
    it). `grokkit report SWEEP_DIR` aggregates over seeds; `grokkit resume SWEEP_DIR`
    continues the whole sweep. --shard i/n runs one of n slices of the grid, so a job
    array on many machines can share one sweep folder.
    """
    from grokkit.render import sweep_plan
    from grokkit.runner import start_sweep
    from grokkit.sweep import SweepSpec, parse_shard, parse_values

    shard = parse_shard(options["shard"])
    given = load_config_file(options["config_file"]) if options["config_file"] else {}
    axes: dict[str, list[Any]] = {}
    for name, key in OPTION_KEYS.items():
        raw = options[name]
        if raw is None:
            continue
        if isinstance(raw, bool):
            given[key] = raw
            continue
        values = parse_values(key, raw, option="--" + name.replace("_", "-"))
        if key == "optim.batch_size":
            values = [None if v == 0 else v for v in values]
        if len(values) == 1:
            given[key] = values[0]
        else:
            given.pop(key, None)
            axes[key] = values
    base = resolve(options["preset"], given)
    spec = SweepSpec(base, axes)
    members = spec.members()
    run_dir = options["run_dir"] or _default_sweep_dir(base)
    console = _stdout()
    console.print(sweep_plan(spec, members, shard, str(run_dir)))
    _sweep_with_progress(console, lambda **kw: start_sweep(spec, run_dir, shard=shard, **kw))


def _default_sweep_dir(config: Config) -> Path:
    return Path("runs") / f"sweep-{config.data.task}-p{config.data.p}-{time.strftime('%Y%m%d-%H%M%S')}"


def _sweep_signature() -> pyinspect.Signature:
    """`train`'s options, each as a string that may hold a list or range; plus --shard."""
    params = []
    for param in pyinspect.signature(train, eval_str=True).parameters.values():
        hint, info = typing.get_args(param.annotation)
        info = copy.copy(info)
        if param.name == "run_dir":
            info.help = "Sweep folder. \\[default: runs/sweep-<task>-p<p>-<timestamp>]"
        elif bool not in typing.get_args(hint) and param.name in OPTION_KEYS:
            ranges = " or a range a:b." if int in typing.get_args(hint) else "."
            info.help = f"{info.help} A list a,b,c{ranges}"
            hint = str | None
        params.append(param.replace(annotation=Annotated[hint, info]))
    shard = Annotated[
        str | None,
        typer.Option(
            help="Run only slice i of n of the grid (0 <= i < n), e.g. a Slurm array task: "
            "--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT. Shards share one sweep folder.",
            rich_help_panel=RUN,
        ),
    ]
    params.append(pyinspect.Parameter("shard", pyinspect.Parameter.KEYWORD_ONLY, default=None, annotation=shard))
    return pyinspect.Signature(params)


sweep = _user_errors(sweep)
sweep.__signature__ = _sweep_signature()
app.command()(sweep)


@app.command()
@_user_errors
def resume(
    run_dir: Annotated[Path, typer.Argument(help="Run directory to continue.")] = Path("runs/latest"),
    steps: Annotated[int | None, typer.Option(help="New total step budget. \\[default: the run's]")] = None,
    early_exit: Annotated[
        bool | None, typer.Option("--early-exit/--no-early-exit", help="Override the run's early-exit rule.")
    ] = None,
    force: Annotated[bool, typer.Option(help="Resume even if versions or devices differ from env.json.")] = False,
    shard: Annotated[
        str | None, typer.Option(help="Sweeps: continue only slice i of n of the grid (as in `grokkit sweep`).")
    ] = None,
) -> None:
    """Continue a run (or a whole sweep) from its newest valid checkpoint, bit-exactly.

    metrics.jsonl is trimmed back to the checkpoint's step; a checkpoint that fails to
    load is named and the previous one used. A run stopped before its first checkpoint
    starts again from step 0. Given a sweep folder, every unfinished member continues
    (members with a different step train in their own group).
    """
    from grokkit.rundir import RunDir
    from grokkit.runner import resume_run, resume_sweep
    from grokkit.sweep import is_sweep, parse_shard

    if is_sweep(run_dir):
        if steps is not None or early_exit is not None:
            raise UsageError("--steps and --early-exit apply to single runs; resume the member's folder instead")
        chosen = parse_shard(shard)
        _sweep_with_progress(_stdout(), lambda **kw: resume_sweep(run_dir, shard=chosen, force=force, **kw))
        return
    if shard is not None:
        raise UsageError(f"{run_dir} is a single run, not a sweep folder", option="--shard")

    total = steps or RunDir.open(run_dir).config().train.steps
    _run_with_progress(
        _stdout(),
        total,
        lambda **kw: resume_run(run_dir, steps=steps, early_exit=early_exit, force=force, **kw),
        resuming=True,
    )


@app.command()
@_user_errors
def report(
    run_dirs: Annotated[
        list[Path] | None, typer.Argument(help="Run directories. \\[default: runs/latest]", show_default=False)
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object per run (one per line).")] = False,
    patience: Annotated[int, typer.Option(help="Early-stopping patience, in evaluations, for the counterfactual.")] = 5,
    png: Annotated[
        Path | None, typer.Option(help="Also write a figure (needs the plot extra: pip install 'grokkit\\[plot]').")
    ] = None,
    plot: Annotated[bool, typer.Option("--plot/--no-plot", help="Draw the terminal plots.")] = True,
) -> None:
    """Summarize runs (or a sweep): milestones, grokking delay, verdict, what early stopping would have done.

    One run: setup, first steps at 50/95/99% train and validation accuracy, the grokking
    delay and ratio, a verdict (grokked, comprehension, memorization only, not yet fit,
    still training), the early-stopping counterfactual (stop after --patience evaluations
    without a new best validation loss, ship the best weights), the parameter-norm
    trajectory, and accuracy/loss curves on a log step axis. Several runs: one comparison
    table and overlaid validation curves. A sweep folder: one row per grid point pooled over
    seeds (median and range of the 99% steps, how many generalized, verdicts) and a phase
    diagram of time to grok against the swept hyperparameter(s); --json gives per-member rows
    and the aggregates. Works on runs still training or interrupted.
    """
    import json

    from grokkit.render import comparison_view, report_view, sweep_view
    from grokkit.reporting import load_run, load_sweep, write_figure, write_sweep_figure
    from grokkit.sweep import is_sweep

    paths = run_dirs or [Path("runs/latest")]
    if any(is_sweep(path) for path in paths):
        if len(paths) != 1:
            raise UsageError("pass one sweep folder at a time (or several single runs)")
        sweep = load_sweep(paths[0], patience)
        if png is not None:
            write_sweep_figure(sweep, png)
        console = _stdout()
        if json_out:
            console.out(json.dumps(sweep.as_json()), highlight=False)
            return
        console.print(sweep_view(sweep, min(console.width, 100), plot=plot))
        if png is not None:
            console.print(f"figure written to {escape(str(png))}")
        return
    runs = [load_run(path, patience) for path in paths]
    console, errors = _stdout(), _stderr()
    for run in runs:
        if run.bad_lines:
            errors.print(
                f"[yellow]warning:[/] {escape(str(run.path))}/metrics.jsonl: skipped unreadable line(s) "
                f"{escape(str(run.bad_lines))}"
            )
        if not run.history:
            errors.print(f"[yellow]warning:[/] {escape(str(run.path))}: no evaluations recorded yet")
    if png is not None:
        if len(runs) != 1:
            raise UsageError("--png draws one run; pass a single run directory", option="--png")
        write_figure(runs[0], png)
    if json_out:
        for run in runs:
            console.out(json.dumps(run.as_json()), highlight=False)
        return
    width = min(console.width, 100)
    if len(runs) == 1:
        run = runs[0]
        view = report_view(run.name, run.config, run.report, run.history, width, plot=plot)
    else:
        view = comparison_view([(r.name, r.config, r.report, r.history) for r in runs], width, plot=plot)
    console.print(view)
    if png is not None:
        console.print(f"figure written to {escape(str(png))}")


@app.command()
@_user_errors
def compare(
    baseline: Annotated[Path, typer.Argument(help="Baseline run directory or sweep folder.")],
    candidate: Annotated[Path, typer.Argument(help="Candidate run directory or sweep folder.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print the comparison as one JSON object.")] = False,
) -> None:
    """Is the candidate faster to generalize than the baseline, and is the comparison fair?

    For 50/95/99% validation accuracy: the median step (and seconds) at which each side first
    got there, pooled over seeds when sweep folders are given, and the speed-up. A baseline
    that never got there gives a lower bound (its trained steps). Warns about what makes the
    claim unfair: a different task, model, learning rate or effective learning rate (Grokfast),
    weight decay or loss; a single seed; a baseline whose learning rate and weight decay were
    not swept.
    """
    import json

    from grokkit.comparison import compare as compare_sides
    from grokkit.render import comparison_report
    from grokkit.reporting import load_side

    result = compare_sides(load_side(baseline, "baseline"), load_side(candidate, "candidate"))
    console = _stdout()
    if json_out:
        console.out(json.dumps(result), highlight=False)
        return
    console.print(comparison_report(result))


@app.command()
@_user_errors
def inspect(
    run_dir: Annotated[Path, typer.Argument(help="Run directory.")] = Path("runs/latest"),
    step: Annotated[int | None, typer.Option(help="Checkpoint step. \\[default: the newest]")] = None,
    png: Annotated[
        Path | None,
        typer.Option(
            help="Write figures to this folder: spectrum over training, neuron clusters, attention patterns "
            "(needs: pip install 'grokkit\\[plot]')."
        ),
    ] = None,
) -> None:
    """Look inside a checkpoint: the embedding's Fourier spectrum, key frequencies, neurons, restricted accuracy.

    For modular addition (and subtraction): Nanda et al. 2023 showed the trained model embeds
    residues on a few key frequencies and computes the answer from cos/sin(w_k(a+b)). This
    shows the spectrum as a bar chart, the key frequencies with how many MLP neurons each one
    dominates, and the accuracy of the model restricted to its key frequencies.
    """
    from grokkit.inspection import inspect_run, write_figures
    from grokkit.render import inspect_view

    result = inspect_run(run_dir, step)
    console = _stdout()
    console.print(inspect_view(result))
    if png is not None:
        for path in write_figures(run_dir, result, png):
            console.print(f"wrote {escape(str(path))}")


@app.command()
@_user_errors
def export(
    run_dir: Annotated[Path, typer.Argument(help="Run directory.")] = Path("runs/latest"),
    csv_out: Annotated[Path | None, typer.Option("--csv", help="Write the metrics as CSV to this file.")] = None,
    tensorboard: Annotated[
        Path | None,
        typer.Option(
            help="Write TensorBoard event files to this folder (needs: pip install 'grokkit\\[tensorboard]')."
        ),
    ] = None,
) -> None:
    """Export a run's metrics to CSV or TensorBoard event files."""
    from grokkit.reporting import export_csv, export_tensorboard, load_run

    if csv_out is None and tensorboard is None:
        raise UsageError("nothing to do: pass --csv FILE and/or --tensorboard DIR")
    run = load_run(run_dir)
    console = _stdout()
    if csv_out is not None:
        console.print(f"wrote {export_csv(run, csv_out)} rows to {escape(str(csv_out))}")
    if tensorboard is not None:
        console.print(f"wrote {export_tensorboard(run, tensorboard)} scalars to {escape(str(tensorboard))}")


def _run_with_progress(console: Console, steps: int, launch, resuming: bool = False) -> None:
    """Run `launch` with a live panel on a terminal, or one plain line per evaluation otherwise."""
    from rich.live import Live

    from grokkit.analysis import CIRCUIT_LOSS, GENERALIZED_ACC, MEMORIZED_ACC, milestones
    from grokkit.render import eval_line, progress_panel, run_outcome
    from grokkit.runner import StopRequest

    state: dict[str, Any] = {"memorized": None, "generalized": None, "circuit": None, "last": None, "speed": None}
    live = (
        Live(progress_panel(None, 1, None, None, None), console=console, refresh_per_second=4, transient=False)
        if console.is_terminal
        else None
    )

    def notify(message: str) -> None:
        console.print(f"[dim]{escape(message)}[/]")

    def on_history(history: list[dict[str, Any]]) -> None:
        found = milestones(history)
        state.update(memorized=found["memorized_step"], generalized=found["generalized_step"])
        state["circuit"] = next((r["step"] for r in history if r.get("restricted_loss", 1.0) < CIRCUIT_LOSS), None)
        state["last"] = history[-1] if history else None

    def on_eval(record: dict[str, Any]) -> None:
        last = state["last"]
        if last is not None and record["elapsed_s"] > last["elapsed_s"] and record["step"] > last["step"]:
            state["speed"] = (record["step"] - last["step"]) / (record["elapsed_s"] - last["elapsed_s"])
        state["last"] = record
        if state["memorized"] is None and record["train_acc"] >= MEMORIZED_ACC:
            state["memorized"] = record["step"]
            console.print(f"[yellow]memorized[/]: train accuracy >= 99% at step {record['step']:,}")
        circuit_formed = record.get("restricted_loss", float("inf")) < CIRCUIT_LOSS
        if state["memorized"] is not None and state["circuit"] is None and circuit_formed:
            state["circuit"] = record["step"]
            if state["generalized"] is None:
                console.print(
                    f"[cyan]circuit forming[/]: restricted loss {record['restricted_loss']:.3g} < {CIRCUIT_LOSS} at "
                    f"step {record['step']:,} (validation accuracy {100 * record['val_acc']:.1f}%): "
                    "generalization is on its way"
                )
        if state["generalized"] is None and record["val_acc"] >= GENERALIZED_ACC:
            state["generalized"] = record["step"]
            console.print(f"[green]generalized[/]: validation accuracy >= 99% at step {record['step']:,}")
        if live is not None:
            live.update(
                progress_panel(
                    record, steps, state["speed"], state["memorized"], state["generalized"], state["circuit"]
                )
            )
        else:
            console.print(eval_line(record, steps, state["speed"]), soft_wrap=True)

    start = time.perf_counter()
    stop = StopRequest()
    callbacks = {"on_eval": on_eval, "notify": notify, "stop": stop}
    if resuming:
        callbacks["on_history"] = on_history
    with stop.installed():
        if live is not None:
            with live:
                result = launch(**callbacks)
        else:
            result = launch(**callbacks)
    console.print(run_outcome(str(result.run_dir), result.reason, result.summary, time.perf_counter() - start))
    if result.reason == "interrupted":
        raise typer.Exit(130)


PLAIN_PROGRESS_EVERY_S = 20.0
"""Without a terminal, a sweep prints a group's line when a member finishes, or after this many seconds."""


def _sweep_with_progress(console: Console, launch) -> None:
    """Run a sweep with one line per group (members done and generalized), live on a terminal."""
    from rich.live import Live

    from grokkit.render import sweep_group_line, sweep_outcome
    from grokkit.runner import StopRequest

    lines: dict[int, str] = {}
    last_printed: dict[int, tuple[int, float]] = {}
    clock = {"start": time.perf_counter()}
    live = Live("", console=console, refresh_per_second=4, transient=False) if console.is_terminal else None

    def notify(message: str) -> None:
        console.print(f"[dim]{escape(message)}[/]")

    def on_group(group: int, groups: int, step: int, steps: int, lanes: list) -> None:
        line = sweep_group_line(group, groups, step, steps, lanes, time.perf_counter() - clock["start"])
        lines[group] = line
        if live is not None:
            live.update("\n".join(lines[g] for g in sorted(lines)))
            return
        done = sum(lane.reason is not None for lane in lanes)
        previous_done, previous_time = last_printed.get(group, (-1, 0.0))
        now = time.perf_counter()
        if done != previous_done or now - previous_time >= PLAIN_PROGRESS_EVERY_S:
            last_printed[group] = (done, now)
            console.print(line, soft_wrap=True)

    stop = StopRequest()
    with stop.installed():
        if live is not None:
            with live:
                result = launch(notify=notify, on_group=on_group, stop=stop)
        else:
            result = launch(notify=notify, on_group=on_group, stop=stop)
    console.print(sweep_outcome(result))
    if result.interrupted:
        raise typer.Exit(130)


def main() -> None:
    app(prog_name="grokkit")
