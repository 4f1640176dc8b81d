# %% [markdown]
# # A grokkit run in a notebook
#
# Open the newest run (`grokkit train` first), look at its metrics, and ask its model some sums.
# Cells are marked `# %%` (VS Code, Jupytext, Spyder); or run the file: .venv/bin/python examples/notebook.py

# %%
import numpy as np

import grokkit

run = grokkit.load_run("runs/latest")
print(run)
print("checkpoints at steps:", run.checkpoints)
print("milestones:", run.summary.get("memorized_step"), run.summary.get("generalized_step"))

# %% Metrics: one row per evaluation, nested fields as flat columns ("param_norms.blocks/0")
metrics = run.metrics  # a pandas DataFrame, or a dict of NumPy arrays without pandas
steps, val_acc = np.asarray(metrics["step"]), np.asarray(metrics["val_acc"])
print([name for name in metrics if name.startswith("param_norms.")])
for step, acc in list(zip(steps, val_acc, strict=True))[:: max(1, len(steps) // 10)]:
    print(f"step {step:>7,}  validation accuracy {acc:.3f}")

# %% Curves (needs matplotlib: pip install 'grokkit[plot]')
try:
    import matplotlib.pyplot as plt
except ImportError:
    plt = None
if plt is not None:
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(steps, metrics["train_acc"], label="train")
    ax.plot(steps, val_acc, label="validation")
    ax.set_xscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("accuracy")
    ax.legend()
    plt.show()

# %% The model at the newest checkpoint, on a few validation examples
model = run.model()  # or run.model(step) for any step in run.checkpoints
examples = run.split.val_idx[:8]
tokens, labels = run.dataset.tokens[examples], run.dataset.labels[examples]
predictions = np.asarray(model(tokens)).argmax(-1)
for row, label, predicted in zip(tokens, labels, predictions, strict=True):
    print(f"{row.tolist()} -> {predicted} (answer {label})")

# %% Its parameters: nested dicts of arrays, named as in the model
params = run.params()
print({name: np.shape(value) for name, value in params.items() if not isinstance(value, dict)})
