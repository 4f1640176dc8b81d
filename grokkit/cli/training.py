"""`grokkit train`, `grokkit sweep` and `grokkit resume`: options from the table, the library does the work."""

from __future__ import annotations

import dataclasses
import inspect
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from grokkit.cli.app import command, stdout
from grokkit.cli.options import (
    ROWS,
    RUN,
    WANDB,
    given_values,
    option_parameter,
    run_parameters,
    single_values,
    table_parameters,
)
from grokkit.cli.progress import run_with_progress, sweep_with_progress
from grokkit.config import Config, load_config_file, resolve
from grokkit.errors import UsageError
from grokkit.rundir import RunDir
from grokkit.runner import ExtraSinks, no_extra_sinks


def config_from_options(options: dict[str, Any]) -> Config:
    """The config file, then the preset, then the flags a user gave; validated."""
    given = load_config_file(options["config_file"]) if options["config_file"] else {}
    given.update(single_values(given_values(options)))
    return resolve(options["preset"], given)


def wandb_sinks(project: str | None) -> ExtraSinks:
    """Extra sinks for `--wandb PROJECT`: checked before any run folder is made, started once it exists."""
    if project is None:
        return no_extra_sinks
    from grokkit.wandb_sink import require_wandb, wandb_sink

    require_wandb()

    def make(run: RunDir, config: Config, history: list[dict[str, Any]]) -> list[Any]:
        sink = wandb_sink(config, run.path, project, history=history)
        sink.start()
        return [sink]

    return make


def train_command(**options: Any) -> None:
    """Train a model on an algorithmic task and watch it grok.

    The defaults (mod-add, p=97, 35% train, 1-layer transformer, AdamW lr 3e-3, wd 1,
    full batch) memorize within ~100 steps and generalize several times later, in under
    a minute on a laptop CPU. Metrics, checkpoints and the resolved config go to the run
    directory; runs/latest points to the newest. Ctrl-C saves a checkpoint and exits;
    `grokkit resume` continues bit-exactly.
    """
    from grokkit.render import describe_config
    from grokkit.runner import start_run

    config = config_from_options(options)
    console = stdout()
    console.print(describe_config(config))
    run_dir = options["run_dir"]
    sinks = wandb_sinks(options["wandb"])
    run_with_progress(console, config.train, lambda **kw: start_run(config, run_dir, extra_sinks=sinks, **kw))


train_command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [*table_parameters(lists=False), *run_parameters(sweep=False)]
)
command("train", switches=True)(train_command)

SHARD = Annotated[
    str | None,
    typer.Option(
        help="Run only slice i of n of the grid (0 <= i < n), e.g. a Slurm array task: "
        "--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT. Shards share one sweep folder.",
        rich_help_panel=RUN,
    ),
]


def sweep_command(**options: Any) -> None:
    """Train a grid of runs (seeds, train fractions, learning rates, ...), each shape compiled once.

    Every train option is accepted; every option marked so also takes a comma list
    (--train-frac 0.3,0.4,0.5, --orthograd on,off) and integer options a range
    start:stop[:step], stop excluded (--seed 0:8). The grid is the product of the lists.
    Members that share array shapes share one compiled program: on a CPU they train one
    after another (each bit-identical to a standalone `grokkit train`), on an accelerator
    vmapped, sharded over all local devices. Each member is an ordinary run directory inside the sweep folder (report,
    resume and inspect work on it). `grokkit report SWEEP_DIR` aggregates over seeds;
    `grokkit resume SWEEP_DIR` continues the whole sweep. --shard i/n runs one of n slices
    of the grid, so a job array on many machines can share one sweep folder.
    """
    from grokkit.lineage import pin_sources
    from grokkit.render import sweep_plan
    from grokkit.rundir import default_run_dir
    from grokkit.runner import start_sweep
    from grokkit.sweep import MAX_MEMBERS, SweepSpec, parse_shard, parse_values

    shard = parse_shard(options["shard"])
    given = load_config_file(options["config_file"]) if options["config_file"] else {}
    axes: dict[str, list[Any]] = {}
    for key, text in given_values(options).items():
        row = ROWS[key]
        values = parse_values(key, text, row.flag) if row.listable else list(single_values({key: text}).values())
        if len(values) == 1:
            given[key] = values[0]
        else:
            given.pop(key, None)
            axes[key] = values
    base = pin_sources(resolve(options["preset"], given))  # a bad --init-from/--mask-from before any folder
    if (size := math.prod(len(values) for values in axes.values())) > MAX_MEMBERS:
        raise UsageError(f"the grid has {size:,} members, over the limit of {MAX_MEMBERS:,} runs in a sweep")
    spec = SweepSpec(base, axes)
    members = spec.members()
    run_dir = options["run_dir"] or default_run_dir(base, prefix="sweep-")
    console = stdout()
    console.print(sweep_plan(spec, members, shard, str(run_dir)))
    sinks = wandb_sinks(options["wandb"])
    sweep_with_progress(console, lambda **kw: start_sweep(spec, run_dir, shard=shard, extra_sinks=sinks, **kw))


sweep_command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [
        *table_parameters(lists=True),
        *run_parameters(sweep=True),
        inspect.Parameter("shard", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=SHARD),
    ]
)
command("sweep", switches=True)(sweep_command)


def resume_command(**options: Any) -> None:
    """Continue a run (or a whole sweep) from its newest valid checkpoint, bit-exactly.

    metrics.jsonl is trimmed back to the checkpoint's step; a checkpoint that fails to
    load is named and the previous one used. A run stopped before its first checkpoint
    starts again from step 0. Resume never destroys progress: if no checkpoint loads,
    or one belongs to another config (config.json edited, or copied from another run),
    it stops with one line and changes nothing; --restart starts over, keeping the old
    files in RUN_DIR/previous-<time>/. Given a sweep folder, every unfinished member continues
    (members with a different step train in their own group). A run that already
    finished (its budget spent or its early exit taken) is left as it is, with the
    flag that would continue it: --steps for a larger budget, --no-early-exit to train
    past the early exit.
    """
    from grokkit.rundir import RunDir
    from grokkit.runner import nothing_to_resume, resume_run, resume_sweep
    from grokkit.sweep import is_sweep, parse_shard

    run_dir: Path = options["run_dir"]
    given = single_values(given_values(options, ["train.steps", "train.early_exit"]))
    steps, early_exit = given.get("train.steps"), given.get("train.early_exit")
    force, shard, restart = options["force"], options["shard"], options["restart"]
    if is_sweep(run_dir):
        if restart:
            raise UsageError("--restart applies to single runs; resume the member's folder instead", option="--restart")
        if early_exit is not None:
            raise UsageError("--early-exit applies to single runs; resume the member's folder instead")
        chosen = parse_shard(shard)
        sinks = wandb_sinks(options["wandb"])
        sweep_with_progress(
            stdout(),
            lambda **kw: resume_sweep(run_dir, shard=chosen, force=force, steps=steps, extra_sinks=sinks, **kw),
        )
        return
    if shard is not None:
        raise UsageError(f"{run_dir} is a single run, not a sweep folder", option="--shard")
    run = RunDir.open(run_dir)
    config = run.config()
    train = dataclasses.replace(
        config.train,
        steps=config.train.steps if steps is None else steps,
        early_exit=config.train.early_exit if early_exit is None else early_exit,
    )
    why = None if restart else nothing_to_resume(run, dataclasses.replace(config, train=train))
    if why is not None:
        stdout().print(f"nothing to do: {escape(str(run_dir))} is left as it is: {escape(why)}", soft_wrap=True)
        return
    run_with_progress(
        stdout(),
        train,
        lambda **kw: resume_run(
            run_dir,
            steps=steps,
            early_exit=early_exit,
            force=force,
            restart=restart,
            extra_sinks=wandb_sinks(options["wandb"]),
            **kw,
        ),
        resuming=True,
    )


resume_command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [
        inspect.Parameter(
            "run_dir",
            inspect.Parameter.KEYWORD_ONLY,
            default=Path("runs/latest"),
            annotation=Annotated[Path, typer.Argument(help="Run directory or sweep folder to continue.")],
        ),
        option_parameter(
            ROWS["train.steps"], lists=False, help="New total step budget (runs and sweeps). \\[default: the run's]"
        ),
        option_parameter(
            ROWS["train.early_exit"],
            lists=False,
            help="Override the run's early-exit rule (--no-early-exit trains past it).",
        ),
        inspect.Parameter("wandb", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=WANDB),
        inspect.Parameter(
            "force",
            inspect.Parameter.KEYWORD_ONLY,
            default=False,
            annotation=Annotated[bool, typer.Option(help="Resume even if versions or devices differ from env.json.")],
        ),
        inspect.Parameter(
            "restart",
            inspect.Parameter.KEYWORD_ONLY,
            default=False,
            annotation=Annotated[
                bool,
                typer.Option(
                    help="Start over from step 0 with config.json as it is; the old checkpoints, metrics, summary, "
                    "split, env and label noise are moved to RUN_DIR/previous-<time>/, never deleted."
                ),
            ],
        ),
        inspect.Parameter(
            "shard",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[
                str | None, typer.Option(help="Sweeps: continue only slice i of n of the grid (as in `grokkit sweep`).")
            ],
        ),
    ]
)
command("resume", switches=True)(resume_command)
