"""tools/docs_figures.py: blocks found and replaced byte-exactly, varying fields masked, README figures checked."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
from conftest import GROKS

ROOT = Path(__file__).resolve().parents[1]


def load_tool():
    spec = importlib.util.spec_from_file_location("docs_figures", ROOT / "tools" / "docs_figures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


figures = load_tool()

SYNTHETIC = (
    "# Title  \n\nProse with a trailing space \nand ünïcode.\n\n"
    "<!-- figures: first -->\n```\nold output 1\n```\n<!-- /figures: first -->\n"
    "Between, no blank line.\n\n"
    "<!-- figures: second -->\nold sentence.\n<!-- /figures: second -->\n\n"
    "<!-- figures: empty -->\n<!-- /figures: empty -->\n"
    "Tail without a final newline"
)


def test_blocks_are_found_between_their_markers():
    assert figures.blocks(SYNTHETIC) == {"first": "```\nold output 1\n```", "second": "old sentence.", "empty": ""}


def test_replacing_blocks_keeps_every_other_byte():
    new = figures.replace_blocks(SYNTHETIC, {"first": "```\nnew 1\nnew 2\n```\n", "empty": "filled"})
    assert figures.blocks(new) == {"first": "```\nnew 1\nnew 2\n```", "second": "old sentence.", "empty": "filled"}
    head = SYNTHETIC.index("<!-- figures: first -->\n") + len("<!-- figures: first -->\n")
    assert new[:head] == SYNTHETIC[:head]
    tail = SYNTHETIC.index("<!-- /figures: first -->")
    middle = SYNTHETIC[tail : SYNTHETIC.index("<!-- figures: empty -->\n") + len("<!-- figures: empty -->\n")]
    assert middle in new
    assert new.endswith("filled\n<!-- /figures: empty -->\nTail without a final newline")
    assert figures.replace_blocks(new, figures.blocks(new)) == new
    assert figures.replace_blocks(new, {"empty": ""}).count("<!-- figures: empty -->\n<!-- /figures: empty -->") == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<!-- figures: a -->\nx\n", "'a' is never closed"),
        ("x\n<!-- /figures: a -->\n", "closing marker for 'a' without its opening"),
        ("<!-- figures: a -->\n<!-- figures: b -->\n<!-- /figures: b -->\n<!-- /figures: a -->\n", "opens inside 'a'"),
        ("<!-- figures: a -->\n<!-- /figures: b -->\n", "closing marker for 'b'"),
        ("<!-- figures: a -->\n<!-- /figures: a -->\n<!-- figures: a -->\n<!-- /figures: a -->\n", "appears twice"),
        ("<!-- figures: A B -->\n", "malformed figures marker"),
    ],
)
def test_unbalanced_or_malformed_markers_are_clear_errors(text, message):
    with pytest.raises(figures.FiguresError, match=message):
        figures.blocks(text)


def test_replacing_a_block_the_readme_lacks_is_an_error():
    with pytest.raises(figures.FiguresError, match="no block named missing"):
        figures.replace_blocks(SYNTHETIC, {"missing": "x"})


LINE = (
    "step     400/10,000  train acc 100.0% loss 0.000763  val acc  12.4% loss 10.7  |w| 52.7 {speed} steps/s  ETA {eta}"
)
OUTCOME = "Stopped early at step 1,850: validation accuracy had stayed >= 99% long enough, {s}s."
SUMMARY = "the whole command took {s} s of wall-clock time, with a peak resident memory of {mb} MB ({date}, jax 0.10.2)"


def test_timings_memory_and_dates_are_masked():
    assert figures.mask(LINE.format(speed="  75.6", eta="≤ 2m10s")) == figures.mask(
        LINE.format(speed="123.4", eta="9s")
    )
    assert figures.mask(LINE.format(speed="75.6", eta="?")) == figures.mask(LINE.format(speed="7.0", eta="≤ 12m03s"))
    assert figures.mask(OUTCOME.format(s="25.7")) == figures.mask(OUTCOME.format(s="112.0"))
    assert figures.mask(SUMMARY.format(s=26, mb=385, date="2026-11-25")) == figures.mask(
        SUMMARY.format(s=1034, mb="1,020", date="2027-01-02")
    )


def test_steps_accuracies_and_losses_are_not_masked():
    line = LINE.format(speed="75.6", eta="≤ 2m10s")
    for changed in (line.replace("400/", "450/"), line.replace("12.4%", "12.5%"), line.replace("0.000763", "0.000764")):
        assert figures.mask(changed) != figures.mask(line)
    outcome = OUTCOME.format(s="25.7")
    assert figures.mask(outcome.replace("1,850", "1,900")) != figures.mask(outcome)
    assert figures.mask("jax 0.10.2, 2 cores") != figures.mask("jax 0.10.3, 2 cores")


@pytest.fixture
def fake_registry(monkeypatch):
    """The registry replaced by one block group whose output the test sets."""
    printed = {"first": "```\nold output 1\n```", "second": "old sentence."}
    group = figures.Figures(("first", "second"), ("echo",), "0 s", lambda work: dict(printed))
    monkeypatch.setattr(figures, "REGISTRY", [group])
    monkeypatch.setattr(figures, "NAMES", ["first", "second"])
    return printed, group


def test_check_passes_when_only_varying_fields_differ(tmp_path, fake_registry, capsys):
    printed, _ = fake_registry
    readme = tmp_path / "README.md"
    readme.write_text(SYNTHETIC.replace("old sentence.", "took 26 s on 2026-11-25."))
    printed["second"] = "took 31 s on 2026-11-26."
    assert figures.main(["--check", "--readme", str(readme)]) == 0
    assert "2 block(s) match" in capsys.readouterr().err


def test_check_fails_with_a_diff_per_changed_block(tmp_path, fake_registry, capsys):
    printed, _ = fake_registry
    readme = tmp_path / "README.md"
    readme.write_text(SYNTHETIC)
    printed["first"] = "```\nnew output 1\n```"
    assert figures.main(["--check", "--readme", str(readme)]) == 1
    captured = capsys.readouterr()
    assert "--- README.md [first]" in captured.out and "-old output 1\n+new output 1" in captured.out
    assert "[second]" not in captured.out and "1 of 2 block(s) differ" in captured.err
    assert readme.read_text() == SYNTHETIC  # --check never writes


def test_regenerating_keeps_edits_made_meanwhile(tmp_path, fake_registry):
    printed, group = fake_registry
    readme = tmp_path / "README.md"
    readme.write_text(SYNTHETIC)

    def make(work):
        readme.write_text(readme.read_text().replace("Prose with", "Prose someone edited, with"))
        return {**printed, "first": "```\nnew output 1\n```"}

    group.make = make
    assert figures.main(["--only", "first", "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "Prose someone edited, with" in text and figures.blocks(text)["first"] == "```\nnew output 1\n```"
    assert figures.blocks(text)["second"] == "old sentence."  # not named by --only
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"]  # no temp file left


def test_unknown_block_and_bad_markers_fail_before_running_anything(tmp_path, fake_registry, capsys):
    _, group = fake_registry
    group.make = lambda work: pytest.fail("ran the commands")
    readme = tmp_path / "README.md"
    readme.write_text(SYNTHETIC)
    assert figures.main(["--only", "frist", "--readme", str(readme)]) == 2
    assert "unknown block frist; known: first, second" in capsys.readouterr().err
    readme.write_text(SYNTHETIC.replace("second", "third"))
    assert figures.main(["--check", "--readme", str(readme)]) == 2
    assert "has no block named second" in capsys.readouterr().err
    readme.write_text("<!-- figures: first -->\n")
    assert figures.main(["--check", "--readme", str(readme)]) == 2
    assert "never closed" in capsys.readouterr().err


def test_list_names_every_readme_block_with_its_commands(capsys):
    assert figures.main(["--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in figures.NAMES) and "grokkit train --task mod-add --p 97" in listed
    assert set(figures.NAMES) <= set(figures.blocks((ROOT / "README.md").read_text()))


def test_a_failing_command_is_an_error_with_its_stderr(tmp_path):
    with pytest.raises(figures.FiguresError, match="exited with 3:\nboom"):
        figures.run([], tmp_path, python=("-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"))
    assert figures.run([], tmp_path, python=("-c", "print('ok')")).stdout == "ok\n"


def test_reproduce_table_in_the_readme_is_what_the_code_prints(capsys):
    assert figures.main(["--check", "--only", "reproduce-table"]) == 0, capsys.readouterr().out


@pytest.mark.slow
def test_main_command_in_the_readme_is_what_the_command_prints(capsys):
    measured_on = re.search(r"`make docs-figures`, [\d-]+, ([^)]+)\)", figures.blocks(figures.README.read_text())[
        "main-command-summary"])  # fmt: skip
    assert measured_on, "the main-command summary names the machine its figures were measured on"
    if measured_on.group(1) != figures.machine_words():
        pytest.skip(f"README figures are from {measured_on.group(1)}; this is {figures.machine_words()} (XLA compiles "
                    "for the host's vector unit and jax version, and a long run's float sums follow them)")  # fmt: skip
    assert figures.main(["--check", "--only", "main-command,main-command-summary,main-report"]) == 0, (
        capsys.readouterr().out
    )


@pytest.mark.slow
def test_nanda_block_reads_a_grokked_run(tmp_path):
    flags = [part for key, value in GROKS.items() for part in ("--" + key.split(".")[1].replace("_", "-"), str(value))]
    figures.run(["train", *flags, "--run-dir", "runs/small"], tmp_path)
    text = figures.nanda_text(tmp_path, "runs/small")
    assert text.startswith("It memorized by step 100 and generalized at step ")
    phases = text.split("```")[1].strip("\n").splitlines()
    assert phases[0].startswith("phases (") and phases[-1].endswith("reached 99%")
    assert "The model ended with **" in text and "small @ step " in text.split("```")[3]
