"""grokkit: grokking experiments from the command line, on JAX and Flax."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Run", "__version__", "load_run"]

if TYPE_CHECKING:
    from grokkit.api import Run, load_run


def __getattr__(name: str) -> Any:
    """`grokkit.load_run` and `grokkit.Run`, imported on first use so `import grokkit` (and the CLI) stays light."""
    if name in ("Run", "load_run"):
        from grokkit import api

        return getattr(api, name)
    raise AttributeError(f"module 'grokkit' has no attribute {name!r}")
