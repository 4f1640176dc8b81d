"""grokkit against a PyTorch restatement of the same recipe: steps/s of each and the ratio, same run, same machine.

Usage: python benchmarks/bench_torch.py [--only PRESET ...] [--rounds N] [--steps N] [--no-eval] [--threads N]
       [--settle S] [--check] [--json]   (`make bench-torch ARGS=...` runs it in .venv-bench-torch, which has torch)

For `nanda2023` and `power2022`: a PyTorch model written the straightforward way a user would write it
(nn.Embedding, nn.Linear, manual causal attention; every position computed through the model as Nanda et al.'s
code does, the loss on the last; torch.optim.AdamW with LambdaLR warm-up; full batch, or `randperm` batches of
512), on grokkit's own data and split and from grokkit's initial weights, and grokkit's compiled chunk (many steps
per dispatch, as benchmarks/bench.py measures it). Timed in interleaved rounds, PyTorch then grokkit, median of
each. By default both sides run the same evaluation schedule: every `eval_every` steps, a full evaluation on the
train and validation sets (grokkit's is its own, with progress measures and signals: more work than PyTorch's
loss and accuracy); --no-eval drops evaluation from both. Before timing, the PyTorch model is checked against
grokkit's: same logits from the same weights, the same losses over 5 steps on the same batch, its loss at its
own initialization (ln(classes) without LayerNorm, near grokkit's with it), and that it learns.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError:  # torch is a bench-only extra, never a dependency of grokkit
    sys.exit("bench_torch.py needs torch: run `make bench-torch` (it installs torch in .venv-bench-torch)")

import jax
import numpy as np
from flax import nnx
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from bench import matmul_peak_gflops

from grokkit.config import Activation, resolve
from grokkit.jax_setup import configure_jax
from grokkit.train import Batch, init_state, make_chunk_fn, make_experiment, select_batch, train_step

PRESETS = ("nanda2023", "power2022")


# ---- the PyTorch restatement -------------------------------------------------------------------------------


class TorchBlock(nn.Module):
    """Pre-LayerNorm (or no-LayerNorm) attention + MLP block, causal attention at every position."""

    def __init__(self, d_model: int, heads: int, d_mlp: int, activation: str, layer_norm: bool, seq_len: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(d_model, d_model, bias=False)
        self.k = nn.Linear(d_model, d_model, bias=False)
        self.v = nn.Linear(d_model, d_model, bias=False)
        self.o = nn.Linear(d_model, d_model, bias=False)
        self.mlp_in = nn.Linear(d_model, d_mlp)
        self.mlp_out = nn.Linear(d_mlp, d_model)
        # jax.nn.gelu is the tanh approximation; ReLU for Nanda et al.
        self.act = nn.ReLU() if activation == "relu" else nn.GELU(approximate="tanh")
        self.ln_attn = nn.LayerNorm(d_model) if layer_norm else nn.Identity()
        self.ln_mlp = nn.LayerNorm(d_model) if layer_norm else nn.Identity()
        self.register_buffer("causal", torch.tril(torch.ones(seq_len, seq_len, dtype=torch.bool)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, d_model = x.shape
        head_dim = d_model // self.heads
        a = self.ln_attn(x)
        q, k, v = (f(a).view(batch, seq, self.heads, head_dim).transpose(1, 2) for f in (self.q, self.k, self.v))
        scores = q @ k.transpose(-1, -2) / math.sqrt(head_dim)
        scores = scores.masked_fill(~self.causal[:seq, :seq], float("-inf"))
        z = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, seq, d_model)
        x = x + self.o(z)
        return x + self.mlp_out(self.act(self.mlp_in(self.ln_mlp(x))))


class TorchTransformer(nn.Module):
    """Token + learned positional embedding, blocks, optional final LayerNorm, untied unembedding; logits at
    every position [B, T, C]. Initialization as Nanda et al. (and grokkit): N(0, 1/d_model), unembedding
    N(0, 1/classes), biases 0."""

    def __init__(self, vocab: int, seq_len: int, n_classes: int, d_model: int, heads: int, d_mlp: int, layers: int,
                 activation: str, layer_norm: bool):  # fmt: skip
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.pos = nn.Parameter(torch.zeros(seq_len, d_model))
        self.blocks = nn.ModuleList(
            [TorchBlock(d_model, heads, d_mlp, activation, layer_norm, seq_len) for _ in range(layers)]
        )
        self.ln_final = nn.LayerNorm(d_model) if layer_norm else nn.Identity()
        self.unembed = nn.Linear(d_model, n_classes, bias=False)
        for name, p in self.named_parameters():
            if name.endswith("bias") or ".ln_" in name or name.startswith("ln_"):
                continue  # biases 0, LayerNorm scale 1 (PyTorch's defaults)
            std = 1 / math.sqrt(n_classes) if name.startswith("unembed") else 1 / math.sqrt(d_model)
            nn.init.normal_(p, std=std)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.pos
        for block in self.blocks:
            x = block(x)
        return self.unembed(self.ln_final(x))


class TorchRun:
    """The PyTorch training loop for one preset, on grokkit's data and split."""

    def __init__(self, exp, params=None, seed: int = 0):
        torch.manual_seed(seed)
        c = exp.config
        m, o = c.model, c.optim
        ds = exp.dataset
        self.model = TorchTransformer(
            vocab=int(ds.tokens.max()) + 1, seq_len=ds.tokens.shape[1], n_classes=ds.n_classes,
            d_model=m.d_model, heads=m.heads, d_mlp=m.d_mlp, layers=m.layers,
            activation="relu" if m.activation == Activation.relu else "gelu", layer_norm=m.layer_norm,
        )  # fmt: skip
        if params is not None:
            load_grokkit_params(self.model, nnx.merge(exp.graphdef, params))
        self.tokens = torch.as_tensor(np.asarray(ds.tokens), dtype=torch.long)
        self.labels = torch.as_tensor(np.asarray(ds.labels), dtype=torch.long)
        self.train_idx = torch.as_tensor(np.asarray(exp.train_idx), dtype=torch.long)
        self.val_idx = torch.as_tensor(np.asarray(exp.split.val_idx), dtype=torch.long)
        self.train_tokens, self.train_labels = self.tokens[self.train_idx], self.labels[self.train_idx]
        self.batch_size = o.batch_size
        self.opt = torch.optim.AdamW(
            self.model.parameters(), lr=o.lr, betas=(o.beta1, o.beta2), eps=1e-8, weight_decay=o.wd
        )
        warmup = o.warmup
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: min(s / warmup, 1.0) if warmup else 1.0)

    def step(self, tokens: torch.Tensor | None = None, labels: torch.Tensor | None = None) -> torch.Tensor:
        if tokens is None:
            tokens, labels = self.train_tokens, self.train_labels
            if self.batch_size is not None:
                idx = torch.randperm(len(self.train_idx))[: self.batch_size]
                tokens, labels = tokens[idx], labels[idx]
        logits = self.model(tokens)[:, -1]  # every position through the model, the loss on the last
        loss = F.cross_entropy(logits, labels)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()
        return loss.detach()

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        logits = self.model(self.tokens)[:, -1]
        out = {}
        for split, idx in (("train", self.train_idx), ("val", self.val_idx)):
            out[f"{split}_loss"] = F.cross_entropy(logits[idx], self.labels[idx]).item()
            out[f"{split}_acc"] = (logits[idx].argmax(-1) == self.labels[idx]).float().mean().item()
        return out

    def window(self, n_steps: int, with_eval: bool) -> float:
        """Seconds for `n_steps` steps (and one evaluation)."""
        start = time.perf_counter()
        for _ in range(n_steps):
            loss = self.step()
        loss.item()
        if with_eval:
            self.evaluate()
        return time.perf_counter() - start


def load_grokkit_params(model: TorchTransformer, g) -> None:
    """Copy a grokkit Transformer's weights (an nnx module) into the PyTorch model."""

    def put(p: torch.Tensor, value) -> None:
        p.copy_(torch.from_numpy(np.array(value)).reshape(p.shape))

    with torch.no_grad():
        put(model.embed.weight, g.embed_VD[...])
        put(model.pos, g.pos_TD[...])
        for tb, gb in zip(model.blocks, g.blocks, strict=True):
            d = gb.w_q_DHK.shape[0]
            for lin, w in ((tb.q, gb.w_q_DHK), (tb.k, gb.w_k_DHK), (tb.v, gb.w_v_DHK)):
                put(lin.weight, np.asarray(w[...]).reshape(d, -1).T)
            put(tb.o.weight, np.asarray(gb.w_o_HKD[...]).reshape(-1, d).T)
            put(tb.mlp_in.weight, np.asarray(gb.w_in_DF[...]).T)
            put(tb.mlp_in.bias, gb.b_in_F[...])
            put(tb.mlp_out.weight, np.asarray(gb.w_out_FD[...]).T)
            put(tb.mlp_out.bias, gb.b_out_D[...])
            for tln, gln in ((tb.ln_attn, gb.ln_attn), (tb.ln_mlp, gb.ln_mlp)):
                if gln is not None:
                    put(tln.weight, gln.scale[...])
                    put(tln.bias, gln.bias[...])
        if g.ln_final is not None:
            put(model.ln_final.weight, g.ln_final.scale[...])
            put(model.ln_final.bias, g.ln_final.bias[...])
        put(model.unembed.weight, np.asarray(g.unembed_DC[...]).T)


# ---- checks ----------------------------------------------------------------------------------------------------


def check(exp, learn_steps: int = 30) -> dict:
    """The PyTorch model against grokkit's: logits from the same weights, 5 steps' losses on one batch; its loss at
    its own initialization (another seed) against grokkit's (ln(classes) without a final LayerNorm; 0.5-1 above it
    with one, whose unit-variance output meets an N(0, 1/classes) unembedding), and that it learns: the loss falls
    over `learn_steps` steps."""
    state = init_state(exp)
    data = exp.device_data()
    size = exp.config.optim.batch_size or exp.n_train
    tokens, labels = np.array(data.train.tokens_BT[:size]), np.array(data.train.labels_B[:size])
    run = TorchRun(exp, state.params)
    t_tokens, t_labels = torch.as_tensor(tokens, dtype=torch.long), torch.as_tensor(labels, dtype=torch.long)
    with torch.no_grad():
        torch_logits = run.model(t_tokens)[:, -1].numpy()
    jax_logits = np.asarray(nnx.merge(exp.graphdef, state.params)(tokens))
    logits_diff = float(np.abs(torch_logits - jax_logits).max())

    step = jax.jit(lambda s: train_step(exp, s, Batch(jax.numpy.asarray(tokens), jax.numpy.asarray(labels))))
    jax_losses, torch_losses = [], []
    for _ in range(5):
        state, metrics = step(state)
        jax_losses.append(float(metrics["loss"]))
        torch_losses.append(float(run.step(t_tokens, t_labels)))
    loss_diff = max(abs(a - b) for a, b in zip(jax_losses, torch_losses, strict=True))

    own = TorchRun(exp, None, seed=1)
    losses = [float(own.step()) for _ in range(learn_steps)]
    n_classes = exp.dataset.n_classes
    result = {
        "logits_max_abs_diff": logits_diff,
        "loss_max_abs_diff_5_steps": loss_diff,
        "torch_init_loss": round(losses[0], 4),
        "grokkit_init_loss": round(jax_losses[0], 4),
        "ln_classes": round(math.log(n_classes), 4),
        f"torch_loss_after_{learn_steps}_steps": round(losses[-1], 4),
    }
    result["ok"] = bool(
        logits_diff < 1e-4
        and loss_diff < 1e-4
        and (
            abs(losses[0] - math.log(n_classes)) < 0.1
            if not exp.config.model.layer_norm
            else abs(losses[0] - jax_losses[0]) < 0.75  # the seed-to-seed spread with a final LayerNorm
        )
        and losses[-1] < losses[0] - 0.05
    )
    return result


# ---- timing ----------------------------------------------------------------------------------------------------


def steps_only_fn(exp):
    """grokkit's chunk without its evaluation (make_chunk_fn's scan body): for --no-eval."""

    def run_steps(state, data, n_steps: int):
        def body(state, _):
            state, _ = train_step(exp, state, select_batch(exp, state, data.train), data.init_params)
            return state, None

        return jax.lax.scan(body, state, None, length=n_steps)[0]

    return jax.jit(run_steps, static_argnums=2, donate_argnums=0)


SETTLE_S = 1.0
"""Idle time between a PyTorch window and a grokkit window. PyTorch's OpenMP workers keep spinning on the cores
for a while after each parallel region: timed straight after a PyTorch window, grokkit's power2022 did 54 steps/s
where it did 69 with OMP_WAIT_POLICY=PASSIVE (which made PyTorch 19% slower, so it is not the fix)."""


def bench_preset(preset: str, rounds: int, steps: int | None, with_eval: bool, settle_s: float) -> dict:
    exp = make_experiment(resolve(preset))
    state, data = init_state(exp), exp.device_data()
    n = steps or exp.config.train.eval_every
    run = TorchRun(exp, state.params)
    chunk = make_chunk_fn(exp) if with_eval else steps_only_fn(exp)

    def grokkit_window() -> float:
        nonlocal state
        start = time.perf_counter()
        if with_eval:
            state, metrics = chunk(state, data, n)
            jax.block_until_ready(metrics)
        else:
            state = jax.block_until_ready(chunk(state, data, n))
        return time.perf_counter() - start

    run.window(n, with_eval)  # warm-up: PyTorch's allocator, grokkit's compilation
    grokkit_window()
    torch_s, grokkit_s = [], []
    for _ in range(rounds):
        torch_s.append(run.window(n, with_eval))
        time.sleep(settle_s)
        grokkit_s.append(grokkit_window())
        time.sleep(settle_s)
    torch_rate, grokkit_rate = n / statistics.median(torch_s), n / statistics.median(grokkit_s)
    c = exp.config
    return {
        "name": preset,
        "task": f"{c.data.task} p={c.data.p} frac={c.data.train_frac}, {c.model.layers} layer(s)",
        "batch": c.optim.batch_size or exp.n_train,
        "steps_per_window": n,
        "torch_steps_per_s": round(torch_rate, 2),
        "grokkit_steps_per_s": round(grokkit_rate, 2),
        "ratio": round(grokkit_rate / torch_rate, 2),
        "torch_window_s": [round(t, 3) for t in torch_s],
        "grokkit_window_s": [round(t, 3) for t in grokkit_s],
    }


def torch_matmul_peak_gflops(n: int = 2048, repeats: int = 20) -> float:
    """Best-of float32 GFLOP/s of an n x n matmul through PyTorch, at its thread setting."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=PRESETS, help="these presets only")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timed rounds (median reported)")
    parser.add_argument("--steps", type=int, help="steps per timed window (default: the preset's eval_every)")
    parser.add_argument("--no-eval", action="store_true", help="time training steps only, on both sides")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--settle", type=float, default=SETTLE_S, help=f"seconds idle between the sides' windows "
                        f"(default {SETTLE_S})")  # fmt: skip
    parser.add_argument("--check", action="store_true", help="run the correctness checks only")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    args = parser.parse_args()
    if not 0 <= args.settle <= 60:
        parser.error(f"--settle must be in [0, 60] seconds, got {args.settle}")
    configure_jax()
    torch.set_num_threads(args.threads)
    presets = args.only or PRESETS
    checks = {p: check(make_experiment(resolve(p))) for p in presets}
    report: dict = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "jax": jax.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "evaluation": "none, either side" if args.no_eval else "every eval_every steps, both sides",
        "checks": checks,
    }
    if not args.check:
        report["matmul_peak_gflops"] = round(matmul_peak_gflops(), 1)
        report["torch_matmul_peak_gflops"] = round(torch_matmul_peak_gflops(), 1)
        report["configs"] = [bench_preset(p, args.rounds, args.steps, not args.no_eval, args.settle) for p in presets]
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        render(report)
    if not all(c["ok"] for c in checks.values()):
        sys.exit(1)


def render(report: dict) -> None:
    console = Console()
    console = console if console.is_terminal else Console(width=140)
    for name, c in report["checks"].items():
        console.print(
            f"check {name}: {'ok' if c['ok'] else 'FAILED'}: same weights -> logits within "
            f"{c['logits_max_abs_diff']:.1e}, 5 steps' losses within {c['loss_max_abs_diff_5_steps']:.1e} of "
            f"grokkit's; PyTorch's own init loss {c['torch_init_loss']} (grokkit's {c['grokkit_init_loss']}, "
            f"ln C = {c['ln_classes']}), "
            + ", ".join(f"{k[6:].replace('_', ' ')} {v}" for k, v in c.items() if k.startswith("torch_loss_after"))
        )
    if "configs" not in report:
        return
    table = Table(
        title=f"grokkit vs PyTorch {report['date']}: jax {report['jax']}, torch {report['torch']} "
        f"({report['torch_threads']} threads), {report['machine']}"
    )
    for column in ("config", "batch", "steps/window", "PyTorch steps/s", "grokkit steps/s", "grokkit / PyTorch"):
        table.add_column(column, justify="left" if column == "config" else "right")
    for r in report["configs"]:
        table.add_row(
            r["name"], f"{r['batch']:,}", str(r["steps_per_window"]), f"{r['torch_steps_per_s']:.1f}",
            f"{r['grokkit_steps_per_s']:.1f}", f"{r['ratio']:.1f}x",
        )  # fmt: skip
    console.print(table)
    for r in report["configs"]:
        console.print(f"  {r['name']}: {r['task']}")
    console.print(
        f"evaluation: {report['evaluation']}; interleaved rounds (PyTorch window, grokkit window), medians; "
        f"float32 matmul peak (2048x2048) {report['matmul_peak_gflops']:.0f} GFLOP/s through XLA, "
        f"{report['torch_matmul_peak_gflops']:.0f} GFLOP/s through PyTorch"
    )


if __name__ == "__main__":
    main()
