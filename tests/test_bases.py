"""grokkit.bases and the progress measures in each task's basis: known answers (issue #13).

The group algebra is checked in NumPy against facts that do not come from the code under test: S5's
character table by cycle type, the orthogonality relations, the smallest primitive roots. The measures are
checked on hand-built logits that are exactly one irrep's character (S5) or one frequency in the
discrete-log basis (mod-mul), where the restricted loss must equal the full loss and the excluded loss must
be chance. The last tests run the real evaluation of tiny models and check what metrics.jsonl records.
"""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from grokkit import bases, progress
from grokkit import train as T
from grokkit.config import resolve
from grokkit.data import S5_ORDER, TASKS, make_dataset, s5_tables, split_dataset

PERMS, COMPOSE, INVERSE = s5_tables()
CHARACTERS, DIMS = bases.s5_characters()
NAMES = ("trivial", *bases.S5_IRREPS)  # the rows of CHARACTERS

# S5's character table by cycle type, with the class sizes (Fulton & Harris, Representation Theory, section 3.1):
# typed in here on purpose, to check the characters grokkit.bases computes from the permutations.
CYCLE_TYPES = {  # cycle type: class size
    (1, 1, 1, 1, 1): 1,
    (2, 1, 1, 1): 10,
    (2, 2, 1): 15,
    (3, 1, 1): 20,
    (3, 2): 20,
    (4, 1): 30,
    (5,): 24,
}
KNOWN_TABLE = {  # irrep: its character on the cycle types above, in that order
    "trivial": (1, 1, 1, 1, 1, 1, 1),
    "sign": (1, -1, 1, 1, -1, -1, 1),
    "standard": (4, 2, 0, 1, -1, 0, -1),
    "standard_sign": (4, -2, 0, 1, 1, 0, -1),
    "5d": (5, 1, 1, -1, 1, -1, 0),
    "5d_sign": (5, -1, 1, -1, -1, 1, 0),
    "6d": (6, 0, -2, 0, 0, 0, 1),
}


def cycle_type(perm: np.ndarray) -> tuple[int, ...]:
    seen, lengths = set(), []
    for start in range(len(perm)):
        length, i = 0, start
        while i not in seen:
            seen.add(i)
            i = int(perm[i])
            length += 1
        if length:
            lengths.append(length)
    return tuple(sorted(lengths, reverse=True))


def conjugacy_classes() -> list[frozenset[int]]:
    """S5's classes from the tables alone: the class of g is {x g x^-1}."""
    conjugates = COMPOSE[COMPOSE[:, :], INVERSE[:, None]]  # [x, g] = x . g . x^-1
    return sorted({frozenset(conjugates[:, g].tolist()) for g in range(S5_ORDER)}, key=min)


CLASSES = conjugacy_classes()


# --- S5's characters -------------------------------------------------------------------------------------


def test_s5_tables_are_a_group_with_identity_first():
    assert PERMS[0].tolist() == [0, 1, 2, 3, 4]
    assert (COMPOSE[0] == np.arange(S5_ORDER)).all() and (COMPOSE[:, 0] == np.arange(S5_ORDER)).all()
    assert (COMPOSE[np.arange(S5_ORDER), INVERSE] == 0).all()
    for row in COMPOSE:  # a Latin square
        assert sorted(row.tolist()) == list(range(S5_ORDER))


def test_s5_has_seven_classes_of_the_known_sizes_and_characters_are_class_functions():
    assert sorted(len(c) for c in CLASSES) == sorted([1, 10, 15, 20, 20, 30, 24])
    assert sum(len(c) for c in CLASSES) == S5_ORDER
    for members in CLASSES:
        index = sorted(members)
        assert len({cycle_type(PERMS[g]) for g in index}) == 1  # a class is a cycle type in S_n
        np.testing.assert_array_equal(CHARACTERS[:, index], CHARACTERS[:, index[:1]].repeat(len(index), axis=1))


def test_s5_dimensions_and_sum_of_squares():
    assert CHARACTERS.shape == (7, S5_ORDER)
    assert DIMS.tolist() == [1, 1, 4, 4, 5, 5, 6]
    assert int((DIMS**2).sum()) == S5_ORDER
    np.testing.assert_array_equal(CHARACTERS[:, 0], DIMS)  # chi(e) = d


def test_s5_characters_match_the_known_table_by_name():
    types = [cycle_type(p) for p in PERMS]
    assert set(types) == set(CYCLE_TYPES)
    for name, values in KNOWN_TABLE.items():
        expected = np.array([values[list(CYCLE_TYPES).index(t)] for t in types], np.float64)
        np.testing.assert_allclose(CHARACTERS[NAMES.index(name)], expected, atol=1e-9, err_msg=name)


def test_s5_row_orthogonality():
    gram = CHARACTERS @ CHARACTERS.T / S5_ORDER  # characters are real in S_n
    np.testing.assert_allclose(gram, np.eye(7), atol=1e-9)


def test_s5_column_orthogonality():
    class_of = np.empty(S5_ORDER, np.int64)
    for index, members in enumerate(CLASSES):
        class_of[sorted(members)] = index
    sizes = np.array([len(CLASSES[c]) for c in class_of])
    centralizer = S5_ORDER // sizes  # |C_G(g)| = |G| / |class of g|
    expected = np.where(class_of[:, None] == class_of[None, :], centralizer[:, None], 0)
    np.testing.assert_allclose(CHARACTERS.T @ CHARACTERS, expected, atol=1e-9)
    # the centralizer by brute force, for a few elements
    for g in (0, 1, 7, 119):
        assert sum(COMPOSE[x, g] == COMPOSE[g, x] for x in range(S5_ORDER)) == centralizer[g]


def test_s5_sign_twists_and_the_sign_character():
    sign = CHARACTERS[NAMES.index("sign")]
    for name in ("standard", "5d"):
        np.testing.assert_array_equal(CHARACTERS[NAMES.index(f"{name}_sign")], CHARACTERS[NAMES.index(name)] * sign)
    np.testing.assert_array_equal(CHARACTERS[NAMES.index("6d")] * sign, CHARACTERS[NAMES.index("6d")])
    cycles = np.array([len(cycle_type(p)) for p in PERMS])
    np.testing.assert_array_equal(sign, (-1.0) ** (5 - cycles))  # sign = (-1)^(n - number of cycles)
    np.testing.assert_array_equal(sign[COMPOSE], sign[:, None] * sign[None, :])  # a homomorphism


# --- isotypic projectors and the S5 basis ----------------------------------------------------------------


@pytest.fixture(scope="module")
def projectors():
    return np.stack([bases.isotypic_projector(c, COMPOSE, INVERSE) for c in CHARACTERS])


def test_isotypic_projectors_are_orthogonal_idempotents_summing_to_one(projectors):
    eye = np.eye(S5_ORDER)
    for i, p in enumerate(projectors):
        np.testing.assert_allclose(p @ p, p, atol=1e-9, err_msg=NAMES[i])
        np.testing.assert_allclose(p, p.T, atol=1e-12, err_msg=NAMES[i])
        assert np.trace(p) == pytest.approx(DIMS[i] ** 2)  # = its rank, P being a symmetric idempotent
        for j, q in enumerate(projectors):
            if j != i:
                np.testing.assert_allclose(p @ q, 0, atol=1e-9, err_msg=f"{NAMES[i]} x {NAMES[j]}")
    np.testing.assert_allclose(projectors.sum(axis=0), eye, atol=1e-9)


def test_isotypic_projector_acts_as_the_convolution_formula(projectors):
    """(P f)(g) = (d / |G|) sum_h chi(h) f(h^-1 g), evaluated directly for a random f."""
    f = np.random.default_rng(0).normal(size=S5_ORDER)
    i = NAMES.index("standard")
    direct = np.array(
        [DIMS[i] / S5_ORDER * sum(CHARACTERS[i, h] * f[COMPOSE[INVERSE[h], g]] for h in range(S5_ORDER))
         for g in range(S5_ORDER)]
    )  # fmt: skip
    np.testing.assert_allclose(projectors[i] @ f, direct, atol=1e-9)


def test_s5_basis_is_orthonormal_with_the_irreps_dimensions(projectors):
    basis = bases.s5_basis()
    rows = basis.basis_GG.astype(np.float64)
    assert rows.shape == (S5_ORDER, S5_ORDER)
    np.testing.assert_allclose(rows @ rows.T, np.eye(S5_ORDER), atol=1e-5)
    assert np.bincount(basis.component_of_row).tolist() == [1, 1, 16, 16, 25, 25, 36]
    assert basis.dims.tolist() == [1, 16, 16, 25, 25, 36]
    assert basis.labels == bases.S5_IRREPS and not basis.is_frequency and basis.answer_defined
    for i, p in enumerate(projectors):  # each row lies in its own component
        mine = rows[basis.component_of_row == i]
        np.testing.assert_allclose(mine @ p, mine, atol=1e-5, err_msg=NAMES[i])


# --- discrete logarithms ---------------------------------------------------------------------------------


def element_order(g: int, p: int) -> int:
    x, n = g % p, 1
    while x != 1:
        x, n = x * g % p, n + 1
    return n


@pytest.mark.parametrize("p", [3, 5, 7, 11, 23, 97, 113])
def test_discrete_log_table_is_the_smallest_primitive_roots_powers(p):
    g, power = bases.discrete_log_table(p)
    assert power.shape == (p - 1,)
    assert sorted(power.tolist()) == list(range(1, p))  # a permutation of 1..p-1: g generates
    assert all(pow(g, j, p) == power[j] for j in range(p - 1))
    log = np.empty(p, np.int64)
    log[power] = np.arange(p - 1)
    assert all(pow(g, int(log[x]), p) == x for x in range(1, p))
    assert element_order(g, p) == p - 1
    assert all(element_order(h, p) < p - 1 for h in range(1, g))  # no smaller generator
    assert bases.primitive_root(p) == g


def test_known_primitive_roots():
    assert {p: bases.primitive_root(p) for p in (3, 5, 7, 11, 23, 97, 113)} == {
        3: 2, 5: 2, 7: 3, 11: 2, 23: 5, 97: 5, 113: 3
    }  # fmt: skip


# --- answers as group elements ---------------------------------------------------------------------------


def test_answer_elements_for_mod_mul_by_discrete_log():
    p = 7
    dataset = make_dataset("mod-mul", p)
    basis = bases.task_basis("mod-mul", p)
    assert basis.group == "Z_6 (discrete log base 3)"
    _, power = bases.discrete_log_table(p)
    log = {int(v): j for j, v in enumerate(power)}
    answer = basis.answer_elements(dataset)
    x, y = dataset.tokens[:, 0], dataset.tokens[:, 1]
    for n in range(len(dataset)):
        if x[n] == 0 or y[n] == 0:
            assert answer[n] == -1
        else:
            assert answer[n] == log[int(dataset.labels[n])] == (log[int(x[n])] + log[int(y[n])]) % (p - 1)
    assert (answer == -1).sum() == 2 * p - 1


def test_answer_elements_for_mod_div_and_mod_add():
    p = 7
    dataset = make_dataset("mod-div", p)
    basis = bases.task_basis("mod-div", p)
    _, power = bases.discrete_log_table(p)
    log = {int(v): j for j, v in enumerate(power)}
    answer = basis.answer_elements(dataset)
    x, y = dataset.tokens[:, 0], dataset.tokens[:, 1]
    assert (y != 0).all()  # mod-div has no y = 0
    np.testing.assert_array_equal(answer == -1, x == 0)
    for n in np.flatnonzero(x != 0):
        assert answer[n] == log[int(dataset.labels[n])] == (log[int(x[n])] - log[int(y[n])]) % (p - 1)
    for task in ("mod-add", "mod-sub"):
        dataset = make_dataset(task, p)
        np.testing.assert_array_equal(bases.task_basis(task, p).answer_elements(dataset), dataset.labels)
    dataset = make_dataset("s5-compose")
    np.testing.assert_array_equal(bases.s5_basis().answer_elements(dataset), dataset.labels)


# --- which task gets which basis -------------------------------------------------------------------------

EXPECTED_BASES = {  # task: (group at p=7, answer defined); None: no basis
    "mod-add": ("Z_7", True),
    "mod-sub": ("Z_7", True),
    "mod-mul": ("Z_6 (discrete log base 3)", True),
    "mod-div": ("Z_6 (discrete log base 3)", True),
    "mod-div-odd-sub": ("Z_7", False),
    "mod-x2-y2": ("Z_7", False),
    "mod-x2-xy-y2": ("Z_7", False),
    "mod-x2-xy-y2-x": ("Z_7", False),
    "mod-x3-xy": ("Z_7", False),
    "mod-x3-xy2-y": ("Z_7", False),
    "s5-compose": ("S5", True),
    "s5-conjugate": ("S5", True),
    "s5-xyx": ("S5", True),
    "rand": None,
    "sparse-parity": None,
    "digits": None,
    "mnist1d": None,
}


def test_every_task_is_covered():
    assert set(EXPECTED_BASES) == set(TASKS)


@pytest.mark.parametrize("task", sorted(EXPECTED_BASES))
def test_task_basis_per_task(task):
    basis = bases.task_basis(task, 7)
    expected = EXPECTED_BASES[task]
    if expected is None:
        assert basis is None
        return
    assert (basis.group, basis.answer_defined) == expected
    order = len(basis.value_of_element)
    assert basis.basis_GG.shape == (order, order)
    np.testing.assert_allclose(basis.basis_GG @ basis.basis_GG.T, np.eye(order), atol=1e-5)
    if basis.is_frequency:
        assert basis.labels == tuple(str(k) for k in range(1, order // 2 + 1))
        assert basis.dims.tolist() == [2] * ((order - 1) // 2) + [1] * (order % 2 == 0)


def test_mod_mul_with_a_composite_p_is_spectrum_only():
    for p in (2, 12, 97 * 3):
        basis = bases.task_basis("mod-mul", p)
        assert basis.group == f"Z_{p}" and not basis.answer_defined
        np.testing.assert_array_equal(basis.value_of_element, np.arange(p))
    assert bases.task_basis("mod-mul", 97).group == "Z_96 (discrete log base 5)"
    data = progress.basis_data(bases.task_basis("mod-mul", 12), make_dataset("mod-mul", 12))
    assert data.answer_N is None


# --- restricted and excluded loss on hand-built models ---------------------------------------------------


def measures(task, p, embed, logits, seed=0):
    dataset = make_dataset(task, p)
    basis = bases.task_basis(task, p)
    split = split_dataset(len(dataset), 0.3, seed)
    data = progress.basis_data(basis, dataset)
    out = jax.jit(progress.progress_measures)(
        jnp.asarray(embed, jnp.float32), jnp.asarray(logits, jnp.float32), jnp.asarray(dataset.labels),
        jnp.asarray(split.train_idx), data,
    )  # fmt: skip
    return {k: np.asarray(v) for k, v in out.items()}, basis, dataset


def embedding_on(basis, component, width=24, seed=0):
    """[G, width] embedding in group-element order whose power is all in `component` (1-based)."""
    rows = basis.basis_GG[basis.component_of_row == component].astype(np.float64)
    return rows.T @ np.random.default_rng(seed).normal(size=(len(rows), width))


def s5_character_logits(name, scale):
    """logits[(x, y), c] = scale * chi(x y c^-1): s5-compose answered by one irrep's character."""
    dataset = make_dataset("s5-compose")
    xy = COMPOSE[dataset.tokens[:, 0], dataset.tokens[:, 1]]
    return scale * CHARACTERS[NAMES.index(name)][COMPOSE[xy[:, None], INVERSE[None, :]]], dataset


def test_s5_logits_from_the_standard_character_are_all_restricted():
    logits, dataset = s5_character_logits("standard", 2.0)
    basis = bases.s5_basis()
    standard = 1 + bases.S5_IRREPS.index("standard")
    out, basis, dataset = measures("s5-compose", 97, embedding_on(basis, standard), logits)
    assert progress.key_names(basis, out["key_component_mask"]) == ["standard"]
    labels = jnp.asarray(dataset.labels)
    full = float(progress.cross_entropy(jnp.asarray(logits, jnp.float32), labels))
    assert 0.05 < full < 1.0  # the answer wins (chi(e) = 4 against at most 2), not by a mile
    assert float(out["restricted_loss"]) == pytest.approx(full, rel=1e-4)
    assert float(out["excluded_loss"]) == pytest.approx(math.log(S5_ORDER), rel=1e-4)  # nothing left: chance
    assert float(out["embed_gini"]) == pytest.approx(5 / 6, abs=1e-3)  # one of six components


def test_s5_restricted_to_the_wrong_irrep_is_chance():
    """Logits from the standard character, embedding on 5d: the key irrep is 5d and holds none of the logits."""
    logits, dataset = s5_character_logits("standard", 2.0)
    basis = bases.s5_basis()
    out, basis, dataset = measures("s5-compose", 97, embedding_on(basis, 1 + bases.S5_IRREPS.index("5d")), logits)
    assert progress.key_names(basis, out["key_component_mask"]) == ["5d"]
    assert float(out["restricted_loss"]) == pytest.approx(math.log(S5_ORDER), rel=1e-4)
    full_train = float(progress.cross_entropy(jnp.asarray(logits, jnp.float32), jnp.asarray(dataset.labels)))
    assert float(out["excluded_loss"]) == pytest.approx(full_train, rel=1e-4)  # every example alike


def mod_mul_logits(p, k, scale, zero_logits):
    """logits[(x, y), c] = scale * cos(2 pi k (log x + log y - log c) / (p - 1)); class 0 a constant -scale;
    the examples with an operand 0 (answer 0, outside the group) get `zero_logits`."""
    dataset = make_dataset("mod-mul", p)
    _, power = bases.discrete_log_table(p)
    log = np.zeros(p, np.int64)
    log[power] = np.arange(p - 1)
    x, y = dataset.tokens[:, 0], dataset.tokens[:, 1]
    s = log[x] + log[y]
    logits = scale * np.cos(2 * np.pi * k * (s[:, None] - log[None, :]) / (p - 1))
    logits[:, 0] = -scale
    outside = (x == 0) | (y == 0)
    logits[outside] = zero_logits[: outside.sum()]
    return logits, outside, power


def test_mod_mul_logits_from_one_discrete_log_frequency_are_all_restricted():
    p, k, scale = 23, 5, 4.0
    rng = np.random.default_rng(0)
    logits, outside, power = mod_mul_logits(p, k, scale, rng.normal(size=(2 * p, p)) * 10)
    basis = bases.task_basis("mod-mul", p)
    embed = np.zeros((p, 24))
    embed[power] = embedding_on(basis, k)  # element j is the residue g^j
    embed[0] = rng.normal(size=24) * 100  # 0 is not in the group: its embedding must not count
    out, basis, dataset = measures("mod-mul", p, embed, logits)
    assert progress.key_names(basis, out["key_component_mask"]) == [k]
    inside = jnp.asarray(~outside, jnp.float32)
    labels = jnp.asarray(dataset.labels)
    full = float(progress.cross_entropy(jnp.asarray(logits, jnp.float32), labels, inside))
    assert 0.1 < full < 3.0
    assert float(out["restricted_loss"]) == pytest.approx(full, rel=1e-4)
    # without frequency k every class but 0 has logit 0 and class 0 has -scale
    assert float(out["excluded_loss"]) == pytest.approx(math.log(p - 1 + math.exp(-scale)), rel=1e-4)
    assert float(out["embed_gini"]) > 0.85

    # the examples outside the group and 0's embedding do not move any measure
    other_logits, _, _ = mod_mul_logits(p, k, scale, rng.normal(size=(2 * p, p)) * 10 + 50)
    embed[0] = rng.normal(size=24)
    again, _, _ = measures("mod-mul", p, embed, other_logits)
    assert not np.allclose(other_logits, logits)
    for name, value in out.items():
        np.testing.assert_allclose(again[name], value, rtol=1e-6, err_msg=name)


# --- the evaluation records the measures -----------------------------------------------------------------

SMALL = {"model.d_model": 16, "model.heads": 2, "model.d_mlp": 32, "model.width": 32, "train.steps": 10,
         "train.eval_every": 5, "train.checkpoint_every": 10}  # fmt: skip
PARITY = {"data.task": "sparse-parity", "data.n_bits": 8, "data.k_bits": 3, "data.n_samples": 200}


def evaluated(overrides):
    """(record, host metrics, experiment) of a tiny model's evaluation at init, as `grokkit train` records it
    (the MLP's operand embedding is its two tables side by side, [n_values, 2 * width])."""
    exp = T.make_experiment(resolve(None, {**SMALL, **overrides}))
    state, data = T.init_state(exp), exp.device_data()
    metrics = jax.device_get(jax.jit(lambda params: T.evaluate(exp, params, data))(state.params))
    record = T.eval_record(metrics, 0, 0.0, exp.basis)
    json.dumps(record)  # a metrics.jsonl line
    return record, metrics, exp


GROUP_MEASURES = {"restricted_loss", "excluded_loss", "embed_gini"}
PARITY_MEASURES = {"relevant_weight_share", "bit_weight_gini"}


def test_evaluation_records_key_irreps_for_s5():
    record, metrics, exp = evaluated({"data.task": "s5-compose", "data.train_frac": 0.3})
    assert record.keys() >= GROUP_MEASURES and not PARITY_MEASURES & record.keys()
    assert metrics["key_component_mask"].shape == (6,)
    names = record["key_irreps"]
    assert isinstance(names, list) and set(names) <= set(bases.S5_IRREPS)
    assert names == []  # an unstructured (random) embedding has no key components (KEY_COMPONENT_EXCESS)
    assert names == progress.key_names(exp.basis, metrics["key_component_mask"])
    assert "key_frequencies" not in record
    assert record["restricted_loss"] > 0 and record["excluded_loss"] > 0 and 0 <= record["embed_gini"] < 1


def test_evaluation_records_key_frequencies_for_mod_mul():
    record, metrics, exp = evaluated(
        {"data.task": "mod-mul", "data.p": 11, "data.train_frac": 0.5, "model.kind": "mlp"}
    )
    assert exp.basis.group == "Z_10 (discrete log base 2)"
    assert record.keys() >= GROUP_MEASURES and not PARITY_MEASURES & record.keys()
    assert metrics["key_component_mask"].shape == (5,)
    assert record["key_frequencies"] == []  # a random embedding has no key components
    chosen = {**metrics, "key_component_mask": np.array([True, False, True, False, False])}
    keys = T.eval_record(chosen, 0, 0.0, exp.basis)["key_frequencies"]
    assert keys == [1, 3] and all(type(k) is int for k in keys)
    assert "key_irreps" not in record


def test_evaluation_of_a_spectrum_only_task_records_the_gini_only():
    record, metrics, _ = evaluated(
        {"data.task": "mod-x2-y2", "data.p": 11, "data.train_frac": 0.5, "model.kind": "mlp"}
    )
    assert "embed_gini" in record and "key_component_mask" not in metrics
    assert not ({"restricted_loss", "excluded_loss", "key_frequencies", "key_irreps"} | PARITY_MEASURES) & set(record)


@pytest.mark.parametrize("kind", ["mlp", "transformer"])
def test_evaluation_records_parity_measures(kind):
    record, _, exp = evaluated({**PARITY, "model.kind": kind})
    assert exp.basis is None
    assert record.keys() >= PARITY_MEASURES
    assert not (GROUP_MEASURES | {"key_frequencies", "key_irreps"}) & record.keys()
    assert 0 < record["relevant_weight_share"] <= 1 and 0 <= record["bit_weight_gini"] < 1
