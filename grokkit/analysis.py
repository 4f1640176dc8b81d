"""Pure functions from metrics records to milestones (no JAX, no I/O)."""

from __future__ import annotations

from typing import Any

MEMORIZED_ACC = 0.99
GENERALIZED_ACC = 0.99


def first_step_at(history: list[dict[str, Any]], key: str, threshold: float) -> int | None:
    """The first evaluation step at which `key` reached `threshold`, or None."""
    return next((r["step"] for r in history if r.get(key, float("-inf")) >= threshold), None)


def milestones(history: list[dict[str, Any]]) -> dict[str, Any]:
    """Memorization (train acc >= 99%) and generalization (val acc >= 99%) steps, and the gap."""
    memorized = first_step_at(history, "train_acc", MEMORIZED_ACC)
    generalized = first_step_at(history, "val_acc", GENERALIZED_ACC)
    best = max(history, key=lambda r: r["val_acc"], default=None)
    both = memorized is not None and generalized is not None
    return {
        "memorized_step": memorized,
        "generalized_step": generalized,
        "grokking_delay": generalized - memorized if both else None,
        "delay_ratio": round(generalized / memorized, 3) if both and memorized > 0 else None,
        "best_val_acc": best["val_acc"] if best else None,
        "best_val_step": best["step"] if best else None,
    }
