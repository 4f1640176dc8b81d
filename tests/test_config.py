import dataclasses
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grokkit.config import (
    _SECTIONS,
    Config,
    ModelKind,
    OptimizerName,
    overrides_from_mapping,
    resolve,
    with_overrides,
)
from grokkit.errors import UsageError
from grokkit.presets import PRESETS


def test_defaults_resolve_and_round_trip():
    config = resolve()
    assert Config.from_dict(config.to_dict()) == config


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        resolve().seed = 3


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_resolve_cite_a_source_and_round_trip(name):
    config = resolve(name)
    assert config.preset == name
    assert re.match(r"[A-Z][a-z]+( et al\.)? 20\d\d, ", PRESETS[name].source)  # "Author [et al.] year, title"
    assert Config.from_dict(config.to_dict()) == config


def test_nanda_preset_matches_the_paper():
    c = resolve("nanda2023")
    assert (c.data.p, c.data.train_frac, c.model.layers, c.model.d_model, c.model.heads, c.model.d_mlp) == (
        113, 0.3, 1, 128, 4, 512)  # fmt: skip
    assert not c.model.layer_norm and c.optim.batch_size is None and c.optim.wd == 1.0
    assert c.optim.name == OptimizerName.adamw


def test_explicit_flags_override_a_preset():
    c = resolve("power2022", {"optim.lr": 5e-4, "seed": 3, "optim.batch_size": None})
    assert c.optim.lr == 5e-4 and c.seed == 3 and c.optim.batch_size is None
    assert c.model.layers == 2


def test_unknown_keys_name_the_closest():
    with pytest.raises(UsageError, match=r"did you mean 'optim\.lr'"):
        with_overrides(Config(), {"optim.lrr": 1.0})
    with pytest.raises(UsageError, match="unknown config key"):
        Config.from_dict({"model": {"kindd": "mlp"}})


def test_enums_are_restored_from_json():
    c = Config.from_dict(resolve(None, {"model.kind": ModelKind.mlp}).to_dict())
    assert c.model.kind is ModelKind.mlp


@pytest.mark.parametrize(
    ("overrides", "option"),
    [
        ({"train.steps": 0}, "--steps"),
        ({"optim.lr": 0.0}, "--lr"),
        ({"optim.lr": -1.0}, "--lr"),
        ({"train.eval_every": 0}, "--eval-every"),
        ({"model.heads": 3}, "--heads"),
        ({"optim.batch_size": 10_000}, "--batch-size"),
        ({"train.checkpoint_every": 75}, "--checkpoint-every"),
        ({"data.train_frac": 1.0}, "--train-frac"),
        ({"data.train_frac": 0.00001}, "--train-frac"),
        ({"data.p": 1}, "--p"),
        ({"data.task": "mod-div", "data.p": 100}, "--p"),
        ({"optim.beta2": 1.0}, "--beta2"),
        ({"seed": -1}, "--seed"),
    ],
)
def test_invalid_values_name_the_option(overrides, option):
    with pytest.raises(UsageError) as info:
        resolve(None, overrides)
    assert str(info.value).startswith(option)


def test_unknown_preset_suggests():
    with pytest.raises(UsageError, match="did you mean nanda2023"):
        resolve("nanda2022")


_values = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.sampled_from(["mod-add", "mlp", "adamw", "relu", "concat", "nanda2023"]),
)  # fmt: skip
_fields = {name: [f.name for f in dataclasses.fields(cls)] + ["bogus"] for name, cls in _SECTIONS.items()}
_sections = st.fixed_dictionaries(
    {}, optional={name: st.dictionaries(st.sampled_from(keys), _values, max_size=4) for name, keys in _fields.items()}
)
_top = st.dictionaries(st.sampled_from(["seed", "preset", "sed"]), _values, max_size=2)


@settings(max_examples=300, deadline=None)
@given(sections=_sections, top=_top)
def test_config_parsing_never_fails_with_anything_but_a_usage_error(sections, top):
    try:
        config = resolve(None, overrides_from_mapping({**sections, **top}))
    except UsageError as err:
        assert str(err)
        return
    assert Config.from_dict(config.to_dict()) == config
