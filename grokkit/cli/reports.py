"""`grokkit report`, `compare`, `inspect` and `export`: read run folders, print or write what they hold."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from grokkit.cli.app import command, stderr, stdout
from grokkit.errors import UsageError


@command("report")
def report_command(
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
        console = stdout()
        if json_out:
            console.out(json.dumps(sweep.as_json()), highlight=False)
            return
        console.print(sweep_view(sweep, min(console.width, 100), plot=plot))
        if png is not None:
            console.print(f"figure written to {escape(str(png))}")
        return
    runs = [load_run(path, patience) for path in paths]
    console, errors = stdout(), stderr()
    for run in runs:
        if run.bad_lines:
            errors.print(
                f"[yellow]warning:[/] {escape(str(run.path))}/metrics.jsonl: skipped unreadable line(s) "
                f"{escape(run.bad_detail or str(run.bad_lines))}"
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


@command("compare")
def compare_command(
    baseline: Annotated[Path, typer.Argument(help="Baseline run directory or sweep folder.")],
    candidate: Annotated[Path, typer.Argument(help="Candidate run directory or sweep folder.")],
    baseline_point: Annotated[
        list[str] | None,
        typer.Option(
            "--baseline-point",
            metavar="KEY=VALUE",
            help="Use the baseline sweep's members at this grid point (repeatable), e.g. train_frac=0.3 or "
            "optim.lr=1e-3: how a problem setting is matched, or a tuned one pinned.",
            show_default=False,
        ),
    ] = None,
    candidate_point: Annotated[
        list[str] | None,
        typer.Option(
            "--candidate-point",
            metavar="KEY=VALUE",
            help="The same for the candidate sweep (repeatable).",
            show_default=False,
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the comparison as one JSON object.")] = False,
) -> None:
    """Is the candidate faster to generalize than the baseline, and is the comparison fair?

    For 50/95/99% validation accuracy: the median step (and seconds) at which each side first
    got there and the speed-up (baseline median / candidate median). Seeds are pooled by
    Kaplan-Meier: a seed that never got there counts as censored at its last step, and a
    median is "> N" when half or more never got there within N steps; the speed-up is then a
    bound (>= or <=). With 3 or more seeds a side, a 95% bootstrap interval for the speed-up.

    Both sides must solve the same problem (task and its parameters, train fraction, label
    noise, model shape): a sweep over such a setting is narrowed with --baseline-point or
    --candidate-point, never pooled or picked. Over the other swept settings (learning rate,
    weight decay, Grokfast, ...) each side contributes its fastest grid point, named with the
    number of points tried. Warns about what makes the claim unfair: a different learning
    rate or effective learning rate (Grokfast), weight decay, loss or budget; a single seed; a
    baseline whose learning rate and weight decay were not swept; one side tuned over many
    more grid points than the other.
    """
    import json

    from grokkit.comparison import compare as compare_sides
    from grokkit.comparison import parse_point, select_point
    from grokkit.render import comparison_report
    from grokkit.reporting import load_side

    pins = parse_point(baseline_point, "--baseline-point"), parse_point(candidate_point, "--candidate-point")
    sides = load_side(baseline, "baseline"), load_side(candidate, "candidate")
    result = compare_sides(
        *(
            select_point(side, pin, option) if pin else side
            for side, pin, option in zip(sides, pins, ("--baseline-point", "--candidate-point"), strict=True)
        )
    )
    console = stdout()
    if json_out:
        console.out(json.dumps(result), highlight=False)
        return
    console.print(comparison_report(result))


@command("inspect")
def inspect_command(
    run_dir: Annotated[Path, typer.Argument(help="Run directory.")] = Path("runs/latest"),
    step: Annotated[int | None, typer.Option(help="Checkpoint step. \\[default: the newest]")] = None,
    png: Annotated[
        Path | None,
        typer.Option(
            help="Write the task's figures to this folder: the spectrum (or per-irrep or per-bit weight) over "
            "training and at this step, and for mod-add/sub neuron clusters and attention patterns "
            "(needs: pip install 'grokkit\\[plot]')."
        ),
    ] = None,
) -> None:
    """Look inside a checkpoint: how its model represents the task, in the task's own basis.

    mod-add/sub (Nanda et al. 2023): the embedding's Fourier spectrum, key frequencies, MLP
    neurons per frequency, and the accuracy of the model restricted to its key frequencies.
    mod-mul/div with p prime: the same in the discrete-log basis (Z_{p-1}, pairs with 0 left
    out) beside the additive Z_p spectrum, which looks dense. S5 tasks (Chughtai et al. 2023):
    embedding and logit norm per irrep, key irreps, restricted and excluded loss, and the
    logits' dependence on the answer's cosets of S4. Other modular tasks: the Z_p spectrum
    only. sparse-parity: the first layer's weight per input bit. rand has no structure to inspect
    (use report or export).
    """
    from grokkit.inspection import inspect_run, write_figures
    from grokkit.render import inspect_view

    result = inspect_run(run_dir, step)
    console = stdout()
    console.print(inspect_view(result, min(console.width, 100)))
    if png is not None:
        written = write_figures(run_dir, result, png)
        for path in written:
            console.print(f"wrote {escape(str(path))}")
        if not written:
            console.print("no figures: the per-bit weight does not apply to this model")


@command("export")
def export_command(
    run_dir: Annotated[Path, typer.Argument(help="Run directory.")] = Path("runs/latest"),
    csv_out: Annotated[
        Path | None,
        typer.Option("--csv", help="Write the metrics as CSV to this file: one number per cell, flat column names."),
    ] = None,
    jsonl_out: Annotated[
        Path | None, typer.Option("--jsonl", help="Write every metrics record, nested as in metrics.jsonl.")
    ] = None,
    transformerlens: Annotated[
        Path | None,
        typer.Option(
            "--transformerlens",
            help="Write transformer checkpoints under TransformerLens HookedTransformer names and shapes "
            "(W_E, W_pos, blocks.0.attn.W_Q, ..., W_U) to this folder, with config.json and a loader script.",
        ),
    ] = None,
    steps: Annotated[
        list[int] | None, typer.Option("--step", help="--transformerlens: this checkpoint only (repeatable).")
    ] = None,
    tensorboard: Annotated[
        Path | None,
        typer.Option(
            help="Write TensorBoard event files to this folder, tags named as the metrics "
            "(needs: pip install 'grokkit\\[tensorboard]')."
        ),
    ] = None,
) -> None:
    """Export a run's metrics (CSV, JSON lines, TensorBoard) or its checkpoints (TransformerLens).

    Nested metrics become flat names: `param_norms.blocks/0` for a per-layer norm,
    `key_frequencies.0` for the first item of a list, in CSV columns and TensorBoard tags alike.
    """
    from grokkit.reporting import export_csv, export_jsonl, export_tensorboard, load_run

    if csv_out is None and jsonl_out is None and tensorboard is None and transformerlens is None:
        raise UsageError("nothing to do: pass --csv FILE, --jsonl FILE, --tensorboard DIR or --transformerlens DIR")
    if steps and transformerlens is None:
        raise UsageError("--step chooses checkpoints for --transformerlens DIR", option="--step")
    run = load_run(run_dir)
    console = stdout()
    if transformerlens is not None:
        from grokkit.transformerlens import export_transformerlens

        written = export_transformerlens(run_dir, transformerlens, steps or None)
        console.print(
            f"wrote {len(written)} checkpoint(s) to {escape(str(transformerlens))}; "
            f"load them with: python {escape(str(transformerlens / 'load_in_transformerlens.py'))}"
        )
    if csv_out is not None:
        console.print(f"wrote {export_csv(run, csv_out)} rows to {escape(str(csv_out))}")
    if jsonl_out is not None:
        console.print(f"wrote {export_jsonl(run, jsonl_out)} records to {escape(str(jsonl_out))}")
    if tensorboard is not None:
        console.print(f"wrote {export_tensorboard(run, tensorboard)} scalars to {escape(str(tensorboard))}")
