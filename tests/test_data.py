import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grokkit import data
from grokkit.errors import UsageError

PAIR_TASKS = [name for name, task in data.TASKS.items() if task.family not in ("parity", "image")]


@pytest.mark.parametrize("name", PAIR_TASKS)
def test_every_pair_appears_exactly_once(name):
    ds = data.make_dataset(name, 97)
    assert len(ds) == data.input_space_size(name, 97)
    pairs = ds.tokens[:, 0].astype(np.int64) * ds.n_values + ds.tokens[:, 1]
    assert len(np.unique(pairs)) == len(ds)
    assert (ds.tokens[:, 2] == ds.n_values).all()
    assert ds.labels.min() >= 0 and ds.labels.max() < ds.n_classes


def test_input_space_sizes():
    assert len(data.make_dataset("mod-add", 97)) == 97 * 97
    assert len(data.make_dataset("mod-div", 97)) == 97 * 96
    assert len(data.make_dataset("s5-compose")) == 14_400
    assert len(data.make_dataset("sparse-parity", n_bits=10, k_bits=3, n_samples=500)) == 500


BRUTE = {
    "mod-add": lambda x, y, p: (x + y) % p,
    "mod-sub": lambda x, y, p: (x - y) % p,
    "mod-mul": lambda x, y, p: (x * y) % p,
    "mod-div": lambda x, y, p: next(c for c in range(p) if (y * c) % p == x),
    "mod-div-odd-sub": lambda x, y, p: next(c for c in range(p) if (y * c) % p == x) if y % 2 else (x - y) % p,
    "mod-x2-y2": lambda x, y, p: (x**2 + y**2) % p,
    "mod-x2-xy-y2": lambda x, y, p: (x**2 + x * y + y**2) % p,
    "mod-x2-xy-y2-x": lambda x, y, p: (x**2 + x * y + y**2 + x) % p,
    "mod-x3-xy": lambda x, y, p: (x**3 + x * y) % p,
    "mod-x3-xy2-y": lambda x, y, p: (x**3 + x * y**2 + y) % p,
}


@pytest.mark.parametrize("name", sorted(BRUTE))
def test_modular_labels_match_brute_force(name):
    p = 97
    ds = data.make_dataset(name, p)
    rng = np.random.default_rng(1)
    for i in rng.choice(len(ds), 200, replace=False):
        x, y = int(ds.tokens[i, 0]), int(ds.tokens[i, 1])
        assert ds.labels[i] == BRUTE[name](x, y, p), (name, x, y)


def _perm(i):
    return list(itertools.permutations(range(5)))[i]


def _compose(a, b):  # (a . b)(i) = a(b(i))
    return tuple(a[b[i]] for i in range(5))


def _inverse(a):
    inv = [0] * 5
    for i, v in enumerate(a):
        inv[v] = i
    return tuple(inv)


S5_BRUTE = {
    "s5-compose": lambda x, y: _compose(x, y),
    "s5-conjugate": lambda x, y: _compose(_compose(x, y), _inverse(x)),
    "s5-xyx": lambda x, y: _compose(_compose(x, y), x),
}


@pytest.mark.parametrize("name", sorted(S5_BRUTE))
def test_s5_labels_match_explicit_permutations(name):
    ds = data.make_dataset(name)
    perms = list(itertools.permutations(range(5)))
    for i in np.random.default_rng(2).choice(len(ds), 300, replace=False):
        x, y = perms[ds.tokens[i, 0]], perms[ds.tokens[i, 1]]
        assert perms[ds.labels[i]] == S5_BRUTE[name](x, y)


def test_sparse_parity_labels_and_distinct_inputs():
    ds = data.make_dataset("sparse-parity", n_bits=16, k_bits=4, n_samples=1000, seed=3)
    bits = ds.tokens[:, :-1]
    assert bits.shape == (1000, 16) and set(np.unique(bits)) <= {0, 1}
    assert (ds.labels == bits[:, :4].sum(1) % 2).all()
    assert len(np.unique(bits, axis=0)) == 1000
    assert (ds.tokens[:, -1] == 2).all()


def test_rand_is_a_fixed_table_per_seed():
    a, b, c = (
        data.make_dataset("rand", 13, seed=0),
        data.make_dataset("rand", 13, seed=0),
        data.make_dataset("rand", 13, seed=1),
    )
    assert (a.labels == b.labels).all() and not (a.labels == c.labels).all()


def test_split_is_deterministic_disjoint_and_complete():
    s1, s2 = data.split_dataset(9409, 0.3, seed=5), data.split_dataset(9409, 0.3, seed=5)
    assert (s1.train_idx == s2.train_idx).all() and (s1.val_idx == s2.val_idx).all()
    assert not set(s1.train_idx) & set(s1.val_idx)
    assert sorted([*s1.train_idx, *s1.val_idx]) == list(range(9409))
    assert len(s1.train_idx) == round(0.3 * 9409)
    s3 = data.split_dataset(9409, 0.3, seed=6)
    assert not (s1.train_idx == s3.train_idx).all()


@settings(max_examples=40, deadline=None)
@given(p=st.integers(2, 60), frac=st.floats(0.01, 0.99), seed=st.integers(0, 2**31 - 1))
def test_split_property(p, frac, seed):
    n = p * p
    n_train = round(frac * n)
    if n_train in (0, n):
        with pytest.raises(UsageError):
            data.split_dataset(n, frac, seed)
        return
    split = data.split_dataset(n, frac, seed)
    both = np.concatenate([split.train_idx, split.val_idx])
    assert len(split.train_idx) == n_train
    assert (np.sort(both) == np.arange(n)).all()
    ds = data.make_dataset("mod-add", p)
    assert ((ds.tokens[:, 0] + ds.tokens[:, 1]) % p == ds.labels).all()


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"task": "mod-ad"}, "did you mean mod-add"),
        ({"task": "mod-add", "p": 1}, "at least 2"),
        ({"task": "mod-div", "p": 96}, "needs a prime"),
        ({"task": "mod-add", "p": 100_000}, "over the limit"),
        ({"task": "sparse-parity", "n_bits": 4, "k_bits": 5}, "k-bits"),
        ({"task": "sparse-parity", "n_bits": 4, "n_samples": 17}, "n-samples"),
    ],
)
def test_bad_task_parameters_raise_usage_errors(kwargs, fragment):
    with pytest.raises(UsageError, match=fragment):
        data.make_dataset(**kwargs)
