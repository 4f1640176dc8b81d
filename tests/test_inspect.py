"""`grokkit inspect` for every task family: S5 irreps, the discrete-log basis, spectrum-only tasks, sparse parity.

Tiny runs trained through the CLI (a few hundred steps, far from grokked): the tests check what is shown and
written, and that the measures equal the ones the training evaluation recorded; the measures themselves are
checked on hand-built logits.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from grokkit import bases
from grokkit.cli import app
from grokkit.data import make_dataset, s5_tables
from grokkit.inspection import coset_shares, inspect_run, logit_component_norms

ENV = {"COLUMNS": "80"}
PNG_MAGIC = b"\x89PNG"


def train(tmp_path_factory, name: str, *flags: str) -> str:
    run_dir = str(tmp_path_factory.mktemp(name) / "run")
    result = CliRunner().invoke(app, ["train", *flags, "--run-dir", run_dir], env=ENV)
    assert result.exit_code == 0, result.output
    return run_dir


def inspect(run_dir: str, *flags: str):
    return CliRunner().invoke(app, ["inspect", run_dir, *flags], env=ENV)


def last_record(run_dir: str) -> dict:
    return json.loads(Path(run_dir, "metrics.jsonl").read_text().splitlines()[-1])


def assert_pngs(folder, *names: str) -> None:
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)
    for name in names:
        assert (folder / name).read_bytes()[:4] == PNG_MAGIC


TINY_STEPS = ["--train-frac", "0.5", "--lr", "1e-2", "--steps", "100", "--eval-every", "50",
              "--checkpoint-every", "50"]  # fmt: skip
TINY_TRANSFORMER = ["--d-model", "16", "--heads", "2", "--d-mlp", "32"]


@pytest.fixture(scope="module")
def s5_run(tmp_path_factory):
    return train(tmp_path_factory, "s5", "--task", "s5-compose", "--model", "mlp", "--width", "32", *TINY_STEPS)


@pytest.fixture(scope="module")
def mul_run(tmp_path_factory):
    return train(tmp_path_factory, "mul", "--task", "mod-mul", "--p", "13", *TINY_TRANSFORMER, *TINY_STEPS)


@pytest.fixture(scope="module")
def parity_run(tmp_path_factory):
    flags = ["--task", "sparse-parity", "--n-bits", "8", "--k-bits", "3", "--n-samples", "200"]
    return train(tmp_path_factory, "parity", *flags, *TINY_TRANSFORMER, *TINY_STEPS)


# --- the per-irrep logit norms and the coset view on hand-built logits ---


@pytest.mark.parametrize("irrep", range(1, 7))
def test_logit_power_of_one_character_is_all_in_its_irrep(irrep):
    """Logits w chi_rho(s c^-1), s = x . y the answer: Chughtai et al.'s algorithm on one irrep rho."""
    _, compose, inverse = s5_tables()
    characters, _ = bases.s5_characters()
    dataset = make_dataset("s5-compose")
    basis = bases.s5_basis()
    answer = basis.answer_elements(dataset)
    logits = 3.0 * characters[irrep][compose[answer[:, None], inverse[None, :]]]
    norms = logit_component_norms(logits, answer, basis.basis_GG, basis.component_of_row)
    assert norms.shape == (6,)
    assert np.argmax(norms) == irrep - 1
    np.testing.assert_allclose(np.delete(norms, irrep - 1), 0.0, atol=1e-3)
    # all of F's variation with the answer: ||F - mean over answers||
    centered = logits[np.argsort(answer)].reshape(120, 120, 120).mean(axis=1)
    expected = np.linalg.norm(centered - centered.mean(axis=0))
    assert norms[irrep - 1] == pytest.approx(expected, rel=1e-4)


def test_logit_power_in_the_cyclic_basis():
    p, k = 13, 4
    dataset = make_dataset("mod-add", p)
    basis = bases.task_basis("mod-add", p)
    answer = basis.answer_elements(dataset)
    logits = np.cos(2 * np.pi * k * (answer[:, None] - np.arange(p)[None]) / p)
    norms = logit_component_norms(logits, answer, basis.basis_GG, basis.component_of_row)
    assert np.argmax(norms) == k - 1 and np.delete(norms, k - 1).max() < 1e-4


def test_coset_shares():
    perms, _, _ = s5_tables()
    rng = np.random.default_rng(0)
    table = rng.normal(size=(5, 120))  # F[s, c] = table[s(2), c]: a function of the left coset s S4_2
    left, right = coset_shares(table[perms[:, 2]])
    assert left[2] == pytest.approx(1.0) and right.max() < 1.0
    characters, _ = bases.s5_characters()  # the 5d irrep holds no function of a coset: every share is 0
    left, right = coset_shares(characters[4][:, None] * rng.normal(size=(1, 120)))
    np.testing.assert_allclose(np.concatenate([left, right]), 0.0, atol=1e-9)


# --- end to end, per family ---


def test_s5_inspect(s5_run, tmp_path):
    result = inspect(s5_run, "--png", str(tmp_path / "figs"))
    assert result.exit_code == 0, result.output
    out = result.stdout
    for text in ("per irrep of S5", *bases.S5_IRREPS, "Key irreps:", "Restricted to its key irreps",
                 "Chughtai et al. 2023", "cosets of the point stabilizers", "s⁻¹(i): right cosets"):  # fmt: skip
        assert text in out, text
    assert_pngs(tmp_path / "figs", "irrep_power.png", "irrep_power_over_training.png")
    # the same measures as the training evaluation at that step
    found, record = inspect_run(s5_run), last_record(s5_run)
    assert found.step == record["step"] == 100
    assert found.key_irreps == record["key_irreps"]
    assert found.restricted_loss == pytest.approx(record["restricted_loss"], rel=1e-4)
    assert found.excluded_loss == pytest.approx(record["excluded_loss"], rel=1e-4)
    assert found.embed_gini == pytest.approx(record["embed_gini"], rel=1e-4)
    assert found.irrep_dims == [1, 4, 4, 5, 5, 6]


def test_s5_conjugate_says_what_the_logit_measure_asks(s5_run):
    found = inspect_run(s5_run)
    from grokkit.render import inspect_view

    console = Console(width=80, record=True, file=io.StringIO())
    for task in ("s5-conjugate", "s5-xyx"):
        console.print(inspect_view(dataclasses.replace(found, task=task)))
        text = " ".join(console.export_text().split())
        assert "asks only whether the logits depend on the answer through the key irreps" in text
        assert "stated for composition (s5-compose)" in text


def test_mod_mul_inspect(mul_run, tmp_path):
    result = inspect(mul_run, "--png", str(tmp_path / "figs"))
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    for text in ("g = 2 generates", "log_2(x) of Z_12", "The 25 pairs involving 0", "discrete-log basis Z_12",
                 "additive basis Z_13", "Key frequencies (log basis)", "excluded loss"):  # fmt: skip
        assert text in out, text
    assert_pngs(tmp_path / "figs", "spectrum_over_training.png", "spectra.png")
    found, record = inspect_run(mul_run), last_record(mul_run)
    assert found.key_frequencies == record["key_frequencies"]
    assert found.restricted_loss == pytest.approx(record["restricted_loss"], rel=1e-4)
    assert found.log_gini == pytest.approx(record["embed_gini"], rel=1e-4)
    assert len(found.log_spectrum) == 6 and len(found.additive_spectrum) == 6


def test_spectrum_only_inspect(tmp_path_factory, tmp_path):
    run = train(tmp_path_factory, "x2", "--task", "mod-x2-y2", "--p", "11", "--model", "mlp", "--width", "32",
                "--steps", "20", "--eval-every", "10", "--checkpoint-every", "10")  # fmt: skip
    result = inspect(run, "--png", str(tmp_path / "figs"))
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert "embedding Fourier spectrum (Z_11" in out and "Strongest frequencies" in out
    assert "Restricted and excluded loss are not defined for mod-x2-y2" in out
    assert_pngs(tmp_path / "figs", "spectrum_over_training.png")


def test_parity_inspect(parity_run, tmp_path):
    result = inspect(parity_run, "--png", str(tmp_path / "figs"))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "first-layer weight per input bit" in out and "attention from the final position" in out
    assert len(re.findall(r"^ *\d+ .*relevant$", out, flags=re.MULTILINE)) == 3 and "Relevant weight share" in out
    assert_pngs(tmp_path / "figs", "bit_weights.png", "bit_weights_over_training.png")
    found, record = inspect_run(parity_run), last_record(parity_run)
    assert len(found.weights) == 8
    assert found.relevant_weight_share == pytest.approx(record["relevant_weight_share"], rel=1e-4)


def test_parity_with_summed_embeddings(tmp_path_factory, tmp_path):
    run = train(tmp_path_factory, "parity-sum", "--task", "sparse-parity", "--n-bits", "8", "--n-samples", "200",
                "--model", "mlp", "--embed", "sum", "--width", "16", "--steps", "10", "--eval-every", "10",
                "--checkpoint-every", "10")  # fmt: skip
    result = inspect(run, "--png", str(tmp_path / "figs"))
    assert result.exit_code == 0, result.output
    assert "does not apply" in result.stdout and "embed=sum" in result.stdout and "no figures" in result.stdout


def test_rand_names_what_is_available(tmp_path):
    """Refused from the run's config alone, before any checkpoint is read: a bare run folder will do."""
    from grokkit.config import resolve
    from grokkit.data import split_dataset
    from grokkit.rundir import RunDir

    run = RunDir.create(tmp_path / "rand", resolve(None, {"data.task": "rand", "data.p": 5}), {},
                        split_dataset(25, 0.5, 0), link_latest=False)  # fmt: skip
    result = inspect(str(run.path))
    assert result.exit_code == 2 and "Traceback" not in result.output
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith("error:")
    assert "task rand" in line and "grokkit report" in line and "grokkit export" in line
