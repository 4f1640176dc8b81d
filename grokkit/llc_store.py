"""The local learning coefficient's defaults and its stored trajectory, llc.json (no JAX: `report` reads it).

The estimator itself is `grokkit.llc`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from grokkit.errors import UsageError

LLC_FILE = "llc.json"
CALIBRATION_FILE = "llc_calibration.json"
FORMAT_VERSION = 1

DEFAULT_EPSILON = 3e-4
DEFAULT_GAMMA = 1000.0
DEFAULT_CHAINS = 4
DEFAULT_DRAWS = 200
DEFAULT_BURN_IN = 100
DEFAULT_MAX_BATCH = 512
"""Default SGLD batch: the run's own batch size, at most this many examples."""

CALIBRATION_EPSILON_FACTORS = (0.1, 0.3, 1.0, 3.0)
CALIBRATION_NBETA_FACTORS = (0.1, 1.0, 10.0)
MAX_DRIFT = 0.1
"""Stationary: the mean loss of the last quarter of draws is within this share of the estimated excess
loss (mean over draws − L_n(w*)) of the first quarter's."""
ESCAPE_SHARE = 0.5
"""Escaped: the chains' mean loss exceeds L_n(w*) by more than this share of the loss of uniform predictions
(log C for softmax cross-entropy with C classes)."""
AGREEMENT = 0.25
"""Recommended ε: the largest stationary ε whose λ̂ is within this share of the next smaller stationary ε's."""

RECOMMENDATION_RULE = (
    f"a setting is stationary when no chain diverged (NaN/Inf), lambda-hat > 0, |drift| <= {MAX_DRIFT:g} "
    "(drift: the chains' mean loss in the last quarter of draws minus the first quarter, over the mean excess "
    "loss above L_n(w*)) and the chains did not escape (mean loss above L_n(w*) by more than "
    f"{ESCAPE_SHARE:g} x the loss of uniform predictions); per nbeta, take the largest stationary epsilon "
    "whose lambda-hat is within "
    f"{AGREEMENT:.0%} of the next smaller stationary epsilon's (a smaller step changes little: the step-size "
    "bias is small), else the smallest stationary epsilon; recommend the nbeta closest (in log) to the "
    "default m/log m that has one"
)


def default_nbeta(batch_size: int) -> float:
    """m / log m (devinterp's `default_nbeta`); 1 for m = 1, where it is undefined."""
    return batch_size / math.log(batch_size) if batch_size > 1 else 1.0


def load_llc(run_dir: Path) -> list[dict[str, Any]] | None:
    """The stored λ̂ trajectory of a run (rows with step, llc_mean, llc_sd, ..., train_acc, val_acc), or
    None if `grokkit llc` has not been run on it. A damaged llc.json is a one-line usage error."""
    document = load_llc_document(run_dir)
    return None if document is None else document["trajectory"]


def load_llc_document(run_dir: Path) -> dict[str, Any] | None:
    """All of llc.json (settings, trajectory, cost), or None if there is none."""
    import json

    from grokkit.rundir import read_regular_file

    path = Path(run_dir) / LLC_FILE
    if not path.exists():
        return None
    fix = "run 'grokkit llc' on the run again to rewrite it"
    try:
        document = json.loads(read_regular_file(path))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise UsageError(f"{path}: cannot be read ({err}); {fix}", option="RUN_DIR") from None
    rows = document.get("trajectory") if isinstance(document, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and isinstance(r.get("step"), int) for r in rows):
        raise UsageError(f"{path}: has no list of trajectory rows with integer steps; {fix}", option="RUN_DIR")
    return document
