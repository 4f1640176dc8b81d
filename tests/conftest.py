"""Shared fixtures: tiny configs, one compile cache for the whole session."""

from __future__ import annotations

import os
import tempfile

import pytest

# One persistent compilation cache for the session (and the subprocesses it starts).
os.environ.setdefault("GROKKIT_CACHE_DIR", tempfile.mkdtemp(prefix="grokkit-test-cache-"))
os.environ.setdefault("COLUMNS", "100")

TINY = {
    "data.task": "mod-add",
    "data.p": 11,
    "data.train_frac": 0.5,
    "model.d_model": 16,
    "model.heads": 2,
    "model.d_mlp": 32,
    "optim.lr": 1e-2,
    "train.steps": 40,
    "train.eval_every": 10,
    "train.checkpoint_every": 20,
}

TINY_FLAGS = [
    "--p", "11", "--train-frac", "0.5", "--d-model", "16", "--heads", "2", "--d-mlp", "32",
    "--lr", "1e-2", "--steps", "40", "--eval-every", "10", "--checkpoint-every", "20",
]  # fmt: skip

# Groks in ~2k steps (a few seconds): seeds 0, 1, 2 memorize at step 100 and generalize at 1,850, 925, 1,300 (measured).
GROKS = {
    "data.task": "mod-add",
    "data.p": 41,
    "data.train_frac": 0.5,
    "model.d_model": 64,
    "model.heads": 2,
    "model.d_mlp": 128,
    "optim.lr": 3e-3,
    "train.steps": 4000,
    "train.eval_every": 25,
    "train.checkpoint_every": 1000,
    "train.early_exit_window": 100,
}


@pytest.fixture
def tiny_config():
    from grokkit.config import resolve

    def make(**overrides):
        return resolve(None, {**TINY, **{k.replace("__", "."): v for k, v in overrides.items()}})

    return make
