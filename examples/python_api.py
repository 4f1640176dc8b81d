"""Train the default grokking run from Python and print its milestones.

Run: .venv/bin/python examples/python_api.py
"""

from grokkit.config import resolve
from grokkit.runner import start_run


def main() -> None:
    config = resolve(None, {"data.p": 97, "seed": 1})
    result = start_run(config, on_eval=lambda r: print(f"step {r['step']:>6}  val acc {r['val_acc']:.3f}"))
    summary = result.summary
    print(f"memorized at {summary['memorized_step']}, generalized at {summary['generalized_step']}")
    print(f"run directory: {result.run_dir}")


if __name__ == "__main__":
    main()
