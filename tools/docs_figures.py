"""Regenerate the README's run figures from the commands that print them (`make docs-figures`).

README.md marks every generated block with `<!-- figures: NAME -->` and `<!-- /figures: NAME -->` on lines of
their own. Each block's commands run again (the `grokkit` of this Python, as subprocesses, in a temporary
folder: the user's runs/ is never touched) and only the marked blocks are rewritten, atomically.

    python tools/docs_figures.py                        regenerate every block
    python tools/docs_figures.py --only main-command    only these blocks (comma-separated)
    python tools/docs_figures.py --check                exit 1, with a diff, where a block differs from its output
    python tools/docs_figures.py --list                 the blocks, their commands and what they cost

`--check` compares with the fields in VARYING masked (timings, memory, dates: they differ between identical
runs); every other figure is deterministic on one machine kind and must match exactly.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = re.compile(r"^<!-- (/?)figures: ([a-z0-9-]+) -->$")

# What legitimately varies between identical runs: masked (both sides) before --check compares.
VARYING: list[tuple[str, re.Pattern[str], str]] = [
    ("speed", re.compile(r"\s+\d[\d,]*(?:\.\d+)?\s*steps/s"), " <speed> steps/s"),
    ("ETA", re.compile(r"ETA (?:≤ )?(?:\?|(?:\d+m)?\d+s)"), "ETA <eta>"),
    ("seconds", re.compile(r"\b\d[\d,]*(?:\.\d+)?\s?s\b"), "<seconds>"),
    ("memory", re.compile(r"\b\d[\d,]*(?:\.\d+)?\s?[MG]B\b"), "<memory>"),
    ("date", re.compile(r"\b\d{4}-\d{2}-\d{2}\b"), "<date>"),
    ("run timestamp", re.compile(r"\b\d{8}-\d{6}\b"), "<timestamp>"),
]


class FiguresError(Exception):
    """A README whose markers cannot be paired, or a command whose output is not what a block expects."""


def mask(text: str) -> str:
    """`text` with every VARYING field replaced by its placeholder."""
    for _, pattern, placeholder in VARYING:
        text = pattern.sub(placeholder, text)
    return text


def block_spans(text: str) -> dict[str, tuple[int, int]]:
    """Each block's name -> the character span of its content (the lines between its two marker lines)."""
    spans: dict[str, tuple[int, int]] = {}
    open_name, open_end, open_line = None, 0, 0
    offset = 0
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        found = MARKER.match(line.rstrip("\r\n"))
        if found is None and "figures:" in line and line.lstrip().startswith("<!--"):
            raise FiguresError(f"line {number}: malformed figures marker {line.strip()!r}")
        if found is not None:
            closing, name = found.group(1) == "/", found.group(2)
            if not closing:
                if open_name is not None:
                    raise FiguresError(f"line {number}: block {name!r} opens inside {open_name!r} (line {open_line})")
                if name in spans:
                    raise FiguresError(f"line {number}: block {name!r} appears twice")
                open_name, open_end, open_line = name, offset + len(line), number
            elif name != open_name:
                raise FiguresError(f"line {number}: closing marker for {name!r} without its opening marker")
            else:
                spans[name] = (open_end, offset)
                open_name = None
        offset += len(line)
    if open_name is not None:
        raise FiguresError(f"line {open_line}: block {open_name!r} is never closed (<!-- /figures: {open_name} -->)")
    return spans


def blocks(text: str) -> dict[str, str]:
    """Each block's name -> its content, without the blank lines around it."""
    return {name: text[start:end].strip("\n") for name, (start, end) in block_spans(text).items()}


def replace_blocks(text: str, new: dict[str, str]) -> str:
    """`text` with the named blocks' contents replaced; every byte outside them is kept."""
    spans = block_spans(text)
    missing = sorted(set(new) - set(spans))
    if missing:
        raise FiguresError(f"no block named {', '.join(missing)} (add <!-- figures: NAME --> ... markers)")
    for name, (start, end) in sorted(spans.items(), key=lambda item: -item[1][0]):
        if name in new:
            content = new[name].strip("\n")
            text = text[:start] + (content + "\n" if content else "") + text[end:]
    return text


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` by `text` through a temp file in the same folder (fsync, os.replace), keeping its mode."""
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, path.stat().st_mode & 0o7777)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


@dataclass
class Output:
    stdout: str
    wall_s: float
    peak_mb: float


def run(args: list[str], cwd: Path, columns: int = 80, python: tuple[str, ...] = ("-m", "grokkit")) -> Output:
    """One command of this Python's grokkit in `cwd`, with its stdout, wall-clock and peak resident memory."""
    env = {**os.environ, "COLUMNS": str(columns)}
    command = [sys.executable, *python, *args]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=err)
        # wait4: this child's own rusage (RUSAGE_CHILDREN would mix in every earlier command)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if process.returncode != 0:
        shown = " ".join(["grokkit", *args]) if python[-1] == "grokkit" else " ".join(command)
        raise FiguresError(f"`{shown}` exited with {process.returncode}:\n{stderr[-2000:]}")
    peak = usage.ru_maxrss / (1e6 if sys.platform == "darwin" else 1e3)  # bytes on macOS, KiB elsewhere
    return Output(stdout, wall, peak)


def lines_of(text: str) -> list[str]:
    """Output lines without the padding Rich adds to fill its width."""
    return [line.rstrip() for line in text.splitlines()]


def fenced(lines: list[str]) -> str:
    return "\n".join(["```", *lines, "```"])


def vector_unit() -> str:
    """The widest x86 vector extension: XLA compiles for it, so float sums (and a long run's figures) depend on it."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return "unknown vector unit"
    words = set(flags.split())
    return "AVX-512" if "avx512f" in words else "AVX2" if "avx2" in words else "no AVX2"


def machine_words() -> str:
    """What the deterministic figures depend on: the jax version, the core count and the vector unit."""
    return f"jax {version('jax')}, {os.cpu_count()} cores, {vector_unit()}"


# --- main-command: `grokkit train --task mod-add --p 97 | cat` -----------------------------------------------

MAIN_ARGS = ["train", "--task", "mod-add", "--p", "97"]
MAIN_EXCERPT_STEPS = (100, 400, 700, 900)
EVAL_LINE = re.compile(r"^step\s+([\d,]+)/[\d,]+\s+train acc\s+([\d.]+)%.*?val acc\s+([\d.]+)%")
MILESTONE_LINE = re.compile(r"^(memorized|circuit formed|generalized)\b")


def step_number(text: str) -> int:
    return int(text.replace(",", ""))


def find(pattern: str, text: str, what: str) -> re.Match[str]:
    found = re.search(pattern, text, re.MULTILINE)
    if found is None:
        raise FiguresError(f"the output has no {what} (pattern {pattern!r}); has the command's output changed?")
    return found


def main_command(work: Path) -> dict[str, str]:
    """The main command's excerpt (the evaluations at MAIN_EXCERPT_STEPS, every milestone and the outcome line, in
    the order printed) and a sentence of its figures."""
    output = run(MAIN_ARGS, work, columns=250)  # wide: each milestone and the outcome on one line
    lines = lines_of(output.stdout)
    ending = next((i for i, line in enumerate(lines) if line.startswith("Run directory: ")), None)
    if ending is None or ending == 0:
        raise FiguresError("the output has no outcome line before 'Run directory: ...'")
    excerpt = []
    for line in lines[: ending - 1]:
        evaluation = EVAL_LINE.match(line)
        if (evaluation and step_number(evaluation.group(1)) in MAIN_EXCERPT_STEPS) or MILESTONE_LINE.match(line):
            excerpt.append(line)
    excerpt.append(lines[ending - 1])
    text = output.stdout
    memorized = step_number(find(r"^memorized: .*from step ([\d,]+)", text, "memorized line").group(1))
    generalized = step_number(find(r"^generalized: .*from step ([\d,]+)", text, "generalized line").group(1))
    circuit = find(r"^circuit formed: .* at step ([\d,]+) \(validation accuracy ([\d.]+%)\)", text, "circuit line")
    ratio = find(r"\(([\d.]+)x the memorization step\)", text, "delay ratio").group(1)
    stopped = find(r"Stopped early at step ([\d,]+)", text, "early exit").group(1)
    at_memorized = next((m for m in map(EVAL_LINE.match, lines) if m and step_number(m.group(1)) == memorized), None)
    if at_memorized is None:
        raise FiguresError(f"the output has no evaluation line at the memorized step {memorized:,}")
    circuit_step = step_number(circuit.group(1))
    summary = [  # one sentence a line: a timing's width never moves a line break (masks work line by line)
        f"Training accuracy is {at_memorized.group(2)}% at step {memorized:,} while validation accuracy is "
        f"{at_memorized.group(3)}%; validation accuracy holds 99% from step {generalized:,}, {ratio}× the "
        "memorization step.",
        f"The circuit formed at step {circuit_step:,} (validation accuracy {circuit.group(2)}), "
        f"{generalized - circuit_step:,} steps before that.",
        f"The run stopped early at step {stopped}; the whole command took {output.wall_s:.0f} s of wall-clock time, "
        f"start-up and compilation included, with a peak resident memory of {output.peak_mb:.0f} MB (measured by "
        f"`make docs-figures`, {time.strftime('%Y-%m-%d')}, {machine_words()}).",
    ]
    run_dir = lines[ending].removeprefix("Run directory: ").strip()
    report = run(["report", run_dir, "--no-plot"], work)  # an 80-column terminal
    return {
        "main-command": fenced(excerpt),
        "main-command-summary": "\n".join(summary),
        "main-report": fenced(lines_of(report.stdout)),
    }


# --- nanda2023: the preset's run, its report's phases and `grokkit inspect` ----------------------------------

NANDA_RUN = "runs/nanda"
NANDA_PAPER = "the paper's run found 5 of 56"


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def report_phases(report_text: str) -> list[str]:
    """`grokkit report`'s phases: from the "phases (" line through the early-warning sentence."""
    lines = lines_of(report_text)
    start = next((i for i, line in enumerate(lines) if line.startswith("phases (")), None)
    warning = next((i for i, line in enumerate(lines) if line.startswith("early warning: ")), None)
    if start is None or warning is None or warning < start:
        raise FiguresError("the report has no 'phases (' section ending in an 'early warning: ' sentence")
    for end in range(warning, len(lines)):
        if re.search(r"reached 99%\S*$", " ".join(lines[warning : end + 1])):
            return lines[start : end + 1]
    raise FiguresError("the report's early-warning sentence does not end in 'reached 99%'")


def by_step(history: list[dict[str, Any]], step: int) -> dict[str, Any]:
    return next(r for r in history if r["step"] >= step)


def passing_keys(history: list[dict[str, Any]], final: list[int], since: int) -> str:
    """Frequencies that were key for a while from `since` on but not at the end, with the steps they were."""
    seen: dict[int, list[int]] = {}
    for record in history:
        if record["step"] >= since:
            for k in set(record.get("key_frequencies") or []) - set(final):
                seen.setdefault(k, []).append(record["step"])
    if not seen:
        return ""
    if len(seen) > 3:
        return f"; {len(seen)} others key at times"
    parts = [f"k = {k} from step {min(steps):,} to {max(steps):,}" for k, steps in sorted(seen.items())]
    return "; also " + ", ".join(parts)


def nanda_text(work: Path, run_dir: str) -> str:
    """The figures of a trained run as the README's nanda2023 block: outcome sentence, the report's phases, the
    measures' course in words and `grokkit inspect`."""
    report_text = run(["report", run_dir, "--no-plot"], work).stdout
    found = json.loads(run(["report", "--json", run_dir], work).stdout.splitlines()[0])
    inspected = lines_of(run(["inspect", run_dir], work).stdout)
    history = read_history(work / run_dir)
    memorized, generalized, circuit = found["memorized_step"], found["generalized_step"], found["circuit_step"]
    if None in (memorized, generalized, circuit):
        raise FiguresError(f"the run did not memorize, form its circuit and generalize: {found['status']}")
    first, last = history[0], history[-1]
    at_memorized, at_circuit = by_step(history, memorized), by_step(history, circuit)
    keys = found["key_frequencies"] or []
    of = found["p"] // 2
    outcome = [
        f"It memorized by step {memorized:,} and generalized at step {generalized:,} (early exit at step "
        f"{found['steps']:,} of its {found['budget']:,}-step budget; {time.strftime('%Y-%m-%d')}, {machine_words()}).",
        "The report's phases:",
    ]
    course = [
        f"Over the run, the restricted loss fell from {first['restricted_loss']:.3g} (step {first['step']:,}) to "
        f"{at_circuit['restricted_loss']:.3g} (step {circuit:,}) while validation accuracy was still "
        f"{100 * at_circuit['val_acc']:.0f}% and the validation loss {at_circuit['val_loss']:.3g};",
        f"the excluded loss rose from {at_memorized['excluded_loss']:.3g} (step {memorized:,}) to "
        f"{at_circuit['excluded_loss']:.3g} (step {circuit:,}) while the train loss was "
        f"{at_circuit['train_loss']:.2g};",
        f"the embedding Gini went from {first['embed_gini']:.2f} to {last['embed_gini']:.2f}.",
        f"The model ended with **{len(keys)} key frequencies of {of}** (k = {', '.join(map(str, keys))}"
        f"{passing_keys(history, keys, memorized)}; {NANDA_PAPER}):",
    ]
    return "\n\n".join(["\n".join(outcome), fenced(report_phases(report_text)), "\n".join(course), fenced(inspected)])


def nanda2023(work: Path) -> dict[str, str]:
    """Train the nanda2023 preset and describe it."""
    run(["train", "--preset", "nanda2023", "--keep-checkpoints", "50", "--run-dir", NANDA_RUN], work)
    return {"nanda2023": nanda_text(work, NANDA_RUN)}


# --- reproduce-table: the recorded reproductions ------------------------------------------------------------

TABLE_CODE = "from grokkit.reproduce import load_records, markdown_table; print(markdown_table(load_records()))"


def reproduce_table(work: Path) -> dict[str, str]:
    """The table of every preset against its paper, from grokkit/reproductions.json (no training)."""
    return {"reproduce-table": run([], work, python=("-c", TABLE_CODE)).stdout.strip("\n")}


@dataclass
class Figures:
    names: tuple[str, ...]
    commands: tuple[str, ...]
    cost: str
    make: Callable[[Path], dict[str, str]]


REGISTRY = [
    Figures(("main-command", "main-command-summary", "main-report"),
            ("grokkit train --task mod-add --p 97", "grokkit report RUN --no-plot"), "~30-60 s",
            main_command),
    Figures(("nanda2023",), (f"grokkit train --preset nanda2023 --keep-checkpoints 50 --run-dir {NANDA_RUN}",
            f"grokkit report {NANDA_RUN}", f"grokkit report --json {NANDA_RUN}", f"grokkit inspect {NANDA_RUN}"),
            "~8-10 min", nanda2023),
    Figures(("reproduce-table",), ("python -c 'markdown_table(load_records())' (grokkit.reproduce)",), "~2 s",
            reproduce_table),
]  # fmt: skip
NAMES = [name for figures in REGISTRY for name in figures.names]


def regenerate(names: list[str]) -> dict[str, str]:
    """The named blocks' new contents, each group of commands run once in its own temporary folder."""
    new: dict[str, str] = {}
    for figures in REGISTRY:
        wanted = [name for name in figures.names if name in names]
        if wanted:
            print(f"running {', '.join(wanted)} ({figures.cost}) ...", file=sys.stderr, flush=True)
            with tempfile.TemporaryDirectory(prefix="grokkit-docs-figures-") as work:
                made = figures.make(Path(work))
            new.update({name: made[name] for name in wanted})
    return new


def differences(text: str, new: dict[str, str]) -> list[str]:
    """A unified diff per block whose content differs from `new` once VARYING fields are masked."""
    current = blocks(text)
    missing = sorted(set(new) - set(current))
    if missing:
        raise FiguresError(f"README has no block named {', '.join(missing)}")
    diffs = []
    for name, fresh in new.items():
        if mask(current[name]) != mask(fresh):
            before, after = (current[name] + "\n").splitlines(True), (fresh + "\n").splitlines(True)
            diffs.append("".join(difflib.unified_diff(before, after, f"README.md [{name}]", f"now printed [{name}]")))
    return diffs


def parse_only(value: str | None) -> list[str]:
    if value is None:
        return NAMES
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in NAMES]
    if unknown or not names:
        raise FiguresError(f"unknown block {', '.join(unknown) or repr(value)}; known: {', '.join(NAMES)}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 on a difference")
    parser.add_argument("--only", metavar="NAME[,NAME]", help="only these blocks")
    parser.add_argument("--list", action="store_true", help="the blocks, their commands and their cost")
    parser.add_argument("--readme", type=Path, default=README, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        names = parse_only(args.only)
        if args.list:
            for figures in REGISTRY:
                print(f"{', '.join(figures.names)} ({figures.cost}):")
                for command in figures.commands:
                    print(f"    {command}")
            return 0
        missing = sorted(set(names) - set(blocks(args.readme.read_text(encoding="utf-8"))))
        if missing:  # before any training, as unbalanced markers are
            raise FiguresError(f"{args.readme} has no block named {', '.join(missing)}")
        new = regenerate(names)
        if args.check:
            diffs = differences(args.readme.read_text(encoding="utf-8"), new)
            sys.stdout.write("".join(diffs))
            print(f"{len(diffs)} of {len(new)} block(s) differ" if diffs else f"{len(new)} block(s) match",
                  file=sys.stderr)  # fmt: skip
            return 1 if diffs else 0
        current = args.readme.read_text(encoding="utf-8")  # again: others may have edited it while we ran
        updated = replace_blocks(current, new)
        if updated != current:
            write_atomically(args.readme, updated)
        print(f"{'rewrote' if updated != current else 'unchanged:'} {', '.join(new)} in {args.readme}", file=sys.stderr)
        return 0
    except FiguresError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
