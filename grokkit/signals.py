"""Task-agnostic signals (issue #14): cheap numbers for every task and model, computed in the compiled evaluation.

Each is a pure JAX function of the parameters and the run's data, recorded in metrics.jsonl under the name in
`grokkit.bases.SIGNAL_NAMES` at every evaluation, whatever the task (including `rand` and any task without a
known algorithm) and the model (transformer or MLP):

- `dist_from_init`: ||theta - theta_0||, the L2 distance of all parameters from the run's initialization
  (`distance_from_init`).
- `last_layer_norm`: the norm of the output layer, Thilak et al. 2022 ("The slingshot mechanism")
  (`last_layer_norm`).
- `neuron_gini`: the Gini coefficient of the first MLP layer's per-neuron weight norms, Merrill et al. 2023
  ("A tale of two circuits") (`neuron_norms`).
- `embed_eff_rank`: the effective rank of the operand embedding (transformer) or first-layer weights (MLP),
  Roy & Vetterli 2007 (`effective_rank`, `first_layer_matrix`).
- `softmax_collapse`: the share of training examples whose float32 cross-entropy is exactly 0, Prieto et al.
  2025 ("Grokking at the edge of numerical stability") (`softmax_collapse`).
- `grad_cosine`: the cosine between the full-batch training-loss gradient and the parameters, Prieto et al.
  2025's naive-loss-minimization direction (`grad_cosine`).

theta_0 is not stored anywhere: `train.Experiment.device_data` recomputes it from the seed (the parameters
`train.make_init_fn(exp)(config)` gives at step 0), so checkpoints and resume are untouched and a resumed
run records the same numbers as an uninterrupted one. For a run started with `--init-from` it is still the
seed's initialization, not the source run's weights: the run reads its source only once, when it starts
(`grokkit.lineage`), and resumes from its own checkpoints, so the source's weights are not available to a
resumed evaluation. Such a run's `dist_from_init` therefore counts the source's own travel from the same seed
(with `--init-optimizer` and the source's seed it continues the source's curve exactly); with `--mask-from`
the pruned weights stay 0 and add their initial values' norm as a constant.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from grokkit.models import MLP, Transformer
from grokkit.progress import gini


def _sum_of_squares(leaves: list[jax.Array]) -> jax.Array:
    return sum((jnp.sum(jnp.square(leaf.astype(jnp.float32))) for leaf in leaves), jnp.zeros((), jnp.float32))


def distance_from_init(params: Any, init_params: Any) -> jax.Array:
    """`dist_from_init` = ||theta - theta_0||_2 = sqrt(sum over every parameter entry of (theta - theta_0)^2).

    Kumar, Bordelon, Gershman & Pehlevan 2024 ("Grokking as the transition from lazy to rich training
    dynamics"): a run memorizes near its initialization (lazy) and generalizes once the weights travel away
    from it (rich), so a late rise of this distance marks the transition."""
    diffs = jax.tree.map(lambda a, b: a - b, params, init_params)
    return jnp.sqrt(_sum_of_squares(jax.tree.leaves(diffs)))


def output_layer(model: nnx.Module) -> list[jax.Array]:
    """The output layer's parameters: the transformer's unembedding `unembed_DC`; the MLP's `out` kernel and bias."""
    if isinstance(model, Transformer):
        return [model.unembed_DC[...]]
    if isinstance(model, MLP):
        return [model.out.kernel[...]] + ([] if model.out.bias is None else [model.out.bias[...]])
    raise TypeError(f"no output layer known for {type(model).__name__}")


def last_layer_norm(model: nnx.Module) -> jax.Array:
    """`last_layer_norm` = sqrt(||W_out||_F^2 + ||b_out||^2) over `output_layer`.

    Thilak et al. 2022 ("The slingshot mechanism"): under adaptive optimizers the last layer's norm grows in
    cycles, each ending in a training-loss spike, and generalization tends to arrive at those spikes."""
    return jnp.sqrt(_sum_of_squares(output_layer(model)))


def neuron_norms(model: nnx.Module, n_values: int) -> jax.Array:
    """Each hidden unit j of the first MLP layer: ||incoming_j|| * ||outgoing_j|| -> [F].

    - transformer: the first block's MLP; incoming_j = (w_in_DF[:, j], b_in_F[j]), outgoing_j = w_out_FD[j, :].
    - MLP: the first hidden layer; incoming_j = every operand table's weights into j, embed_OVF[:, :n_values, j]
      (the rows operands can reach), and b_embed_F[j] when there is a bias; outgoing_j = row j of the next
      layer's kernel (`hidden[0]`, or `out` for a one-layer MLP).

    The product is the unit's scale that a ReLU network can move between its two sides without changing the
    function (relu(c x) = c relu(x)), so it measures how much the unit is used, whichever side carries it."""
    if isinstance(model, Transformer):
        block = model.blocks[0]
        incoming = [block.w_in_DF[...], block.b_in_F[...][None]]
        outgoing = block.w_out_FD[...]
    elif isinstance(model, MLP):
        embed_OVF = model.embed_OVF[...][:, :n_values]
        incoming = [embed_OVF.reshape(-1, embed_OVF.shape[-1])]
        if model.b_embed_F is not None:
            incoming.append(model.b_embed_F[...][None])
        outgoing = (model.hidden[0] if len(model.hidden) else model.out).kernel[...]
    else:
        raise TypeError(f"no first MLP layer known for {type(model).__name__}")
    in_F = jnp.sqrt(sum(jnp.sum(jnp.square(w_xF), axis=0) for w_xF in incoming))
    out_F = jnp.sqrt(jnp.sum(jnp.square(outgoing), axis=1))
    return in_F * out_F


def neuron_gini(model: nnx.Module, n_values: int) -> jax.Array:
    """`neuron_gini` = Gini(`neuron_norms`) (`grokkit.progress.gini`): 0 when every unit has the same norm,
    (F - 1) / F when one unit holds all of it.

    Merrill, Tsilivis & Shukla 2023 ("A tale of two circuits: grokking as competition of sparse and dense
    subnetworks"): on sparse parity, generalization comes with a few neurons' norms growing while the dense
    memorizing rest decays, so the norms concentrate."""
    return gini(neuron_norms(model, n_values))


def first_layer_matrix(model: nnx.Module, n_values: int) -> jax.Array:
    """The matrix whose effective rank `embed_eff_rank` reports.

    - transformer: the operand tokens' embedding, `operand_embedding(n_values)` = embed_VD[:n_values], [V, D];
    - MLP: its first layer's weights on the concatenated one-hot operands, embed_OVF[:, :n_values] as
      [O * V, F] (one row per (operand position, value)); for a shared embedding (O = 1) that is
      `operand_embedding(n_values)`. Not `operand_embedding`'s [V, O * F] view: with many operands and few
      values (sparse parity: 40 positions, 2 values) that matrix has rank <= 2 whatever was learned."""
    if isinstance(model, Transformer):
        return model.operand_embedding(n_values)
    if isinstance(model, MLP):
        embed_OVF = model.embed_OVF[...][:, :n_values]
        return embed_OVF.reshape(-1, embed_OVF.shape[-1])
    raise TypeError(f"no first layer known for {type(model).__name__}")


JACOBI_MAX_SWEEPS = 12
"""`singular_values` stops after this many sweeps (9 suffice for float32 at the sizes here)."""


def _householder_r(a_MN: jax.Array) -> jax.Array:
    """The [N, N] factor R of a_MN = QR (M > N; signs of its rows arbitrary), by N Householder reflections."""
    rows = jnp.arange(a_MN.shape[0])

    def reflect(k, a_MN):
        x_M = jnp.where(rows >= k, a_MN[:, k], 0.0)
        alpha = -jnp.where(x_M[k] >= 0, 1.0, -1.0) * jnp.sqrt(jnp.sum(x_M * x_M))
        v_M = x_M - alpha * (rows == k)
        vv = jnp.sum(v_M * v_M)
        v_M = v_M * jnp.where(vv > 0, jax.lax.rsqrt(jnp.where(vv > 0, vv, 1.0)), 0.0)
        return a_MN - 2 * v_M[:, None] * (v_M @ a_MN)[None, :]

    return jax.lax.fori_loop(0, a_MN.shape[1], reflect, a_MN)[: a_MN.shape[1]]


def singular_values(matrix: jax.Array) -> jax.Array:
    """The singular values of a float32 matrix, largest first, computed with XLA's own operations only:
    a Householder QR down to the smaller side, then one-sided (Hestenes) Jacobi on R's columns in the
    round-robin order, whole rounds of disjoint column pairs at once, until every pair's cosine is below
    8 sqrt(N) float32 eps (at most `JACOBI_MAX_SWEEPS` sweeps); the singular values are the column norms.
    Accurate to ~1e-6 of the largest (checked against LAPACK in tests/test_signals_eval.py).

    Not `jnp.linalg.svd`: on a CPU that calls LAPACK through a multi-threaded OpenBLAS, whose threads
    contend with XLA's on a loaded machine: 0.3 s per call instead of 0.3 ms (2-core machine, measured),
    more than the rest of a training chunk. This costs ~3-5 ms for a [97, 128] to [80, 1000] matrix."""
    a = matrix.astype(jnp.float32)
    if a.shape[0] < a.shape[1]:
        a = a.T
    if a.shape[0] > a.shape[1]:
        a = _householder_r(a)
    n = a.shape[1]
    cols_NM = a.T  # the rows here are the matrix's columns
    if n % 2:
        cols_NM = jnp.concatenate([cols_NM, jnp.zeros((1, cols_NM.shape[1]), cols_NM.dtype)])
        n += 1
    half = n // 2
    eps = jnp.finfo(jnp.float32).eps
    tol = 8 * math.sqrt(n) * eps
    floor = eps * jnp.sum(cols_NM * cols_NM)  # below this |x . y| a rotation is rounding noise

    def rotate(carry, _):
        """One round: rotate every pair (top[k], bottom[k]) to orthogonal, then the circle method's shift
        (the first column stays, the others move one place round), so n - 1 rounds pair every two columns."""
        top, bottom, worst = carry
        alpha, beta, gamma = jnp.sum(top * top, 1), jnp.sum(bottom * bottom, 1), jnp.sum(top * bottom, 1)
        scale = jnp.maximum(jnp.sqrt(alpha * beta), floor)
        cosine = jnp.where(scale > 0, jnp.abs(gamma) / jnp.where(scale > 0, scale, 1.0), 0.0)
        active = cosine > tol
        zeta = (beta - alpha) / (2 * jnp.where(active, gamma, 1.0))
        t = jnp.where(active, jnp.where(zeta >= 0, 1.0, -1.0) / (jnp.abs(zeta) + jnp.hypot(1.0, zeta)), 0.0)
        c = jax.lax.rsqrt(1 + t * t)[:, None]
        s = c * t[:, None]
        top, bottom = c * top - s * bottom, s * top + c * bottom
        if half > 1:
            top, bottom = (
                jnp.concatenate([top[:1], bottom[:1], top[1:-1]]),
                jnp.concatenate([bottom[1:], top[-1:]]),
            )
        return (top, bottom, jnp.maximum(worst, jnp.max(cosine))), None

    def sweep(state):
        top, bottom, _, done = state
        (top, bottom, worst), _ = jax.lax.scan(rotate, (top, bottom, jnp.zeros((), jnp.float32)), None, n - 1)
        return top, bottom, worst, done + 1

    start = (cols_NM[:half], cols_NM[half:][::-1], jnp.full((), jnp.inf, jnp.float32), 0)
    top, bottom, _, _ = jax.lax.while_loop(lambda s: (s[2] > tol) & (s[3] < JACOBI_MAX_SWEEPS), sweep, start)
    cols_NM = jnp.concatenate([top, bottom])
    return -jnp.sort(-jnp.sqrt(jnp.sum(cols_NM * cols_NM, 1)))[: min(matrix.shape)]


def effective_rank(matrix: jax.Array) -> jax.Array:
    """Roy & Vetterli 2007: exp(H(p)), p_k = sigma_k / sum_i sigma_i over the singular values sigma
    (`singular_values`), H the Shannon entropy (0 log 0 = 0). r equal non-zero singular values give exactly r;
    singular values (3, 1) give exp(-(3/4) log(3/4) - (1/4) log(1/4)) ~ 1.755. 0 for the zero matrix."""
    sigma = singular_values(matrix)
    total = jnp.sum(sigma)
    p = sigma / jnp.where(total > 0, total, 1)
    return jnp.where(total > 0, jnp.exp(jnp.sum(jax.scipy.special.entr(p))), 0.0)


def embed_eff_rank(model: nnx.Module, n_values: int) -> jax.Array:
    """`embed_eff_rank` = `effective_rank`(`first_layer_matrix`). A generalizing first layer is structured and
    low-rank (modular arithmetic: a few Fourier frequencies' cos/sin pairs, Nanda et al. 2023; sparse parity:
    the k relevant bits, Merrill et al. 2023); a memorizing one spreads over every direction."""
    return effective_rank(first_layer_matrix(model, n_values))


def softmax_collapse(logits_BC: jax.Array, labels_B: jax.Array) -> jax.Array:
    """`softmax_collapse` = the share of examples whose float32 softmax cross-entropy
    (`optax.softmax_cross_entropy_with_integer_labels` on the logits cast to float32) is exactly 0.

    Prieto, Barsbey, Mediano & Birdal 2025 ("Grokking at the edge of numerical stability"): once the correct
    logit leads every other by more than about 17 + ln(C - 1) (float32 rounds 1 + (C - 1) e^-margin to 1)
    the loss and its gradient are exactly 0, so those examples stop training ("softmax collapse"); a high share
    before generalization says the run will not grok. The evaluation applies it to the training examples with
    the labels trained on, whatever loss and loss dtype the run trains with (it is a statement about float32
    softmax)."""
    loss_B = optax.softmax_cross_entropy_with_integer_labels(logits_BC.astype(jnp.float32), labels_B)
    return jnp.mean((loss_B == 0).astype(jnp.float32))


def tree_cosine(a: Any, b: Any) -> jax.Array:
    """cos(a, b) = <a, b> / (||a|| ||b||) over every leaf flattened and concatenated; 0 when either is zero.
    Each tree is first divided by its largest |entry| (the cosine is scale-free), so gradients of 1e-30 do not
    underflow when squared in float32."""

    def scaled(tree):
        leaves = [leaf.astype(jnp.float32) for leaf in jax.tree.leaves(tree)]
        top = jnp.max(jnp.stack([jnp.max(jnp.abs(leaf)) for leaf in leaves]))
        return [leaf / jnp.where(top > 0, top, 1) for leaf in leaves]

    a_leaves, b_leaves = scaled(a), scaled(b)
    dot = sum((jnp.vdot(x, y) for x, y in zip(a_leaves, b_leaves, strict=True)), jnp.zeros((), jnp.float32))
    norms = jnp.sqrt(_sum_of_squares(a_leaves)) * jnp.sqrt(_sum_of_squares(b_leaves))
    return jnp.where(norms > 0, dot / jnp.where(norms > 0, norms, 1), 0.0)


GRADIENT_CHUNK = 64
"""A minibatch run's full training-set gradient is accumulated over chunks of max(batch size, this) examples."""


def gradient_chunk(batch_size: int | None, n_train: int) -> int:
    """How many training examples `full_batch_gradient` differentiates at once: all of them for a full-batch run
    (one more training step's work per evaluation), else max(batch size, GRADIENT_CHUNK). One pass over a whole
    large training set materializes per-example activations that no longer fit in cache: merrill2023-parity's
    MLP (1,000 examples, batch 32) adds 33 ms to a 200 ms chunk in chunks of 256, 19 in chunks of 128, 9.5 in
    chunks of 64 and 14 in chunks of 32 (2-core CPU, measured), about 60 ms in one pass."""
    return n_train if batch_size is None else min(n_train, max(batch_size, GRADIENT_CHUNK))


def full_batch_gradient(
    batch_loss: Callable[[Any, jax.Array, jax.Array], jax.Array],
    params: Any,
    tokens_NT: jax.Array,
    labels_N: jax.Array,
    chunk: int,
) -> Any:
    """The gradient of the mean of `batch_loss` (a batch's MEAN loss) over all N examples: the gradients of
    N // chunk chunks of `chunk` examples (under lax.scan) and of the remainder, weighted by their sizes."""
    n = tokens_NT.shape[0]
    count, rest = divmod(n, chunk)
    grad = jax.grad(batch_loss)
    total = None
    if count == 1:
        total = jax.tree.map(lambda g: g * chunk, grad(params, tokens_NT[:chunk], labels_N[:chunk]))
    elif count > 1:
        tokens_KBT = tokens_NT[: count * chunk].reshape(count, chunk, *tokens_NT.shape[1:])
        labels_KB = labels_N[: count * chunk].reshape(count, chunk)

        def add(sum_, batch):
            return jax.tree.map(jnp.add, sum_, grad(params, *batch)), None

        total, _ = jax.lax.scan(add, jax.tree.map(jnp.zeros_like, params), (tokens_KBT, labels_KB))
        total = jax.tree.map(lambda g: g * chunk, total)
    if rest:
        last = jax.tree.map(lambda g: g * rest, grad(params, tokens_NT[count * chunk :], labels_N[count * chunk :]))
        total = last if total is None else jax.tree.map(jnp.add, total, last)
    return jax.tree.map(lambda g: g / n, total)


def grad_cosine(grads: Any, params: Any) -> jax.Array:
    """`grad_cosine` = cos(grad L(theta), theta) over all parameters flattened (`tree_cosine`), L the training
    loss on the FULL training set (the run's own loss, `Experiment.loss`, even when it trains on minibatches;
    `full_batch_gradient`).

    Sign: -1 means the gradient is anti-parallel to the weights, so a descent step -lr * grad L points along
    theta and only scales the weights up: Prieto et al. 2025's naive loss minimization (NLM), the direction
    that lowers the loss of an already-fit model by inflating its logits without changing its predictions,
    which drives softmax collapse. Near 0: the gradient does something other than rescale the weights.
    (Weight decay is not part of L.)"""
    return tree_cosine(grads, params)


def task_agnostic_signals(
    model: nnx.Module,
    params: nnx.State,
    init_params: nnx.State,
    batch_loss: Callable[[Any, jax.Array, jax.Array], jax.Array],
    train_tokens_BT: jax.Array,
    train_labels_B: jax.Array,
    train_logits_BC: jax.Array,
    n_values: int,
    grad_chunk: int,
) -> dict[str, jax.Array]:
    """All of `grokkit.bases.SIGNAL_NAMES` for `model` (= nnx.merge(graphdef, params)).

    `batch_loss(params, tokens, labels)` is the run's training loss (a batch's mean); the training examples
    are `train_tokens_BT` with the labels trained on, `train_labels_B`, and `train_logits_BC` the logits the
    evaluation already has for them; `n_values` the operand values; `grad_chunk` (`gradient_chunk`) how many
    examples the gradient for `grad_cosine` takes at once. That gradient is the one extra forward and backward
    pass over the training set; the other signals read the weights and the logits."""
    grads = full_batch_gradient(batch_loss, params, train_tokens_BT, train_labels_B, grad_chunk)
    return {
        "dist_from_init": distance_from_init(params, init_params),
        "last_layer_norm": last_layer_norm(model),
        "neuron_gini": neuron_gini(model, n_values),
        "embed_eff_rank": embed_eff_rank(model, n_values),
        "softmax_collapse": softmax_collapse(train_logits_BC, train_labels_B),
        "grad_cosine": grad_cosine(grads, params),
    }
