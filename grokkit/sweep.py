"""Sweeps without JAX: value lists and ranges, the grid, the sweep folder, shards, and seed aggregation."""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grokkit import __version__
from grokkit.atomic import atomic_write_json
from grokkit.config import Config, coerce, field_kind, parse_text, validate, with_overrides
from grokkit.data import brief
from grokkit.errors import UsageError
from grokkit.rundir import field_message, point_latest, read_regular_file

SWEEP_FILE = "sweep.json"
SEED_KEYS = ("seed", "data.data_seed")


MAX_MEMBERS = 10_000
"""Most runs in one sweep (each is a folder of its own and a lane of the compiled program)."""


def parse_values(key: str, text: str, option: str) -> list[Any]:
    """A sweep option's values: a comma list ("0.3,0.4"), integer ranges "start:stop[:step]" (stop excluded).

    At most MAX_MEMBERS values, counted before any range is expanded.
    """
    kind = field_kind(key)
    values: list[Any] = []
    items = [part.strip() for part in text.split(",")]
    if len(items) > MAX_MEMBERS:
        raise UsageError(
            f"lists {len(items):,} values, over the limit of {MAX_MEMBERS:,} runs in a sweep", option=option
        )
    for item in items:
        if not item:
            raise UsageError(f"empty value in {brief(text)}; write a comma list like 1,2,3", option=option)
        if ":" in item:
            if kind is not int:
                raise UsageError(
                    f"ranges like {brief(item)} work for integer options; list the values instead (e.g. 0.3,0.4,0.5)",
                    option=option,
                )
            try:
                bounds = [int(b) for b in item.split(":")] if item.isascii() else []
                span = range(*bounds) if len(bounds) in (2, 3) else None
            except ValueError:
                span = None
            if not span:
                raise UsageError(
                    f"{brief(item)} is not a non-empty range start:stop[:step] (stop excluded)", option=option
                )
            if len(span[: MAX_MEMBERS + 1]) + len(values) > MAX_MEMBERS:
                raise UsageError(
                    f"{brief(item)} gives over {MAX_MEMBERS:,} values, the limit of runs in a sweep", option=option
                )
            values += list(span)
            continue
        values.append(parse_text(key, item, label=option))
    if len(set(values)) != len(values):
        raise UsageError(f"{brief(text)} lists a value twice", option=option)
    return values


def shown(value: Any) -> str:
    """A grid value as written in names and tables: floats as %g, choices by their value."""
    value = getattr(value, "value", value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def point_name(values: dict[str, Any]) -> str:
    """Grid values as "train_frac=0.3,seed=2" (short field names, in order)."""
    return ",".join(f"{key.rpartition('.')[2]}={shown(value)}" for key, value in values.items())


def member_name(values: dict[str, Any]) -> str:
    """A member folder's name from its grid values, e.g. "train_frac=0.3,seed=2"."""
    return point_name(values) or "run"


@dataclass(frozen=True)
class GridMember:
    name: str
    values: dict[str, Any]
    config: Config


@dataclass(frozen=True)
class SweepSpec:
    """A base config and the swept axes (config key -> values); the grid is their product, seeds last."""

    base: Config
    axes: dict[str, list[Any]]

    def members(self) -> list[GridMember]:
        keys = sorted(self.axes, key=lambda k: (k in SEED_KEYS, list(self.axes).index(k)))
        members = []
        for combo in itertools.product(*(self.axes[k] for k in keys)):
            values = dict(zip(keys, combo, strict=True))
            config = with_overrides(self.base, values)
            validate(config)
            members.append(GridMember(member_name(values), values, config))
        return members

    def to_dict(self) -> dict[str, Any]:
        plain = {k: [getattr(v, "value", v) for v in vs] for k, vs in self.axes.items()}
        return {"base": self.base.to_dict(), "axes": plain}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SweepSpec:
        base = Config.from_dict(raw["base"])
        axes = {key: [coerce(key, v, label=key) for v in values] for key, values in raw["axes"].items()}
        return cls(base, axes)


def parse_shard(text: str | None) -> tuple[int, int]:
    """'i/n' (0 <= i < n) -> (i, n); None -> (0, 1)."""
    if text is None:
        return 0, 1
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        index, count = -1, 0
    if not (count >= 1 and 0 <= index < count):
        raise UsageError(f"must be i/n with 0 <= i < n (e.g. 0/4), got '{text}'", option="--shard")
    return index, count


def shard_members(members: list[GridMember], shard: tuple[int, int]) -> list[GridMember]:
    """The i-th of n interleaved slices of the grid (interleaved so every shard gets a mix of grid points)."""
    index, count = shard
    return members[index::count]


def is_sweep(path: Path) -> bool:
    return (Path(path) / SWEEP_FILE).is_file()


def create_sweep_dir(path: Path, spec: SweepSpec, notify: Callable[[str], None] = lambda message: None) -> None:
    """Make the sweep folder (or join it: shards of the same sweep share one folder); refuse a different sweep.

    `latest` beside it is pointed at it only where grokkit manages that link (`rundir.point_latest`).
    """
    path = Path(path)
    wanted = {"grokkit": __version__, **spec.to_dict(), "members": [m.name for m in spec.members()]}
    if is_sweep(path):
        _, existing = open_sweep(path)  # read as a resume reads it: settings added since then take their defaults
        if existing.to_dict() != spec.to_dict():
            raise UsageError(
                f"{path} holds a different sweep; use 'grokkit resume {path}' or choose another --run-dir",
                option="--run-dir",
            )
        return
    if path.exists() and (not path.is_dir() or any(p.name != ".lock" for p in path.iterdir())):
        raise UsageError(f"{path} exists and is not a sweep folder; choose another --run-dir", option="--run-dir")
    try:
        path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path / SWEEP_FILE, wanted)
    except OSError as err:
        raise UsageError(f"cannot write sweep folder {path}: {err.strerror}", option="--run-dir") from None
    if why := point_latest(path):
        notify(why)


def open_sweep(path: Path) -> tuple[Path, SweepSpec]:
    """The sweep folder (a `latest` link resolved) and its spec, checked like the options of a new sweep."""
    path = Path(path).resolve()
    file = path / SWEEP_FILE

    def damaged(detail: str) -> UsageError:
        return UsageError(f"{file}: {detail}", option="SWEEP_DIR")

    try:
        raw = json.loads(read_regular_file(file))
    except OSError as err:
        raise damaged(f"cannot be read ({err.strerror or err})") from None
    except UnicodeDecodeError:
        raise damaged("is not UTF-8 text") from None
    except (ValueError, RecursionError) as err:
        raise damaged(f"is not valid JSON ({err})") from None
    if not isinstance(raw, dict):
        raise damaged(f"must be a JSON object, got {type(raw).__name__}")
    if not isinstance(raw.get("base"), dict):
        raise damaged("base must be a JSON object of settings")
    axes = raw.get("axes")
    if not isinstance(axes, dict):
        raise damaged("axes must be a JSON object of value lists")
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            raise damaged(f"axes.{key} must be a non-empty list of values")
    try:
        spec = SweepSpec(
            Config.from_dict(raw["base"], label=""),
            {key: [coerce(key, v, label=f"axes.{key}") for v in values] for key, values in axes.items()},
        )
        validate(spec.base)
        names = [member.name for member in spec.members()]
    except UsageError as err:
        raise damaged(field_message(err)) from None
    if len(set(names)) != len(names):
        raise damaged("axes list a value twice")
    return path, spec


def extend_sweep(path: Path, spec: SweepSpec, steps: int) -> SweepSpec:
    """Give every member of the sweep a new total budget, recorded in sweep.json; budgets never shrink."""
    if "train.steps" in spec.axes:
        raise UsageError("the sweep has --steps as an axis; resume members' folders one by one", option="--steps")
    if steps < spec.base.train.steps:
        raise UsageError(f"the sweep's budget is {spec.base.train.steps:,}; pass a larger total", option="--steps")
    base = dataclasses.replace(spec.base, train=dataclasses.replace(spec.base.train, steps=steps))
    extended = SweepSpec(base, spec.axes)
    raw = json.loads((path / SWEEP_FILE).read_text())
    atomic_write_json(path / SWEEP_FILE, {**raw, **extended.to_dict()})
    return extended


def aggregate(spec: SweepSpec, reports: Mapping[str, dict[str, Any] | None]) -> list[dict[str, Any]]:
    """One row per grid point (seeds pooled): the train and validation 99% steps over seeds, how many got there.

    A member that has not got there when its run ended is censored at its last trained step (`grokkit.survival`):
    `{name}_median` is the Kaplan–Meier median, None when half or more of the seeds never got there, with
    `{name}_median_above` then the longest follow-up ("> N" in the table). `{name}_min`/`{name}_max` range over
    the seeds that got there, `{name}_reached` of `{name}_runs` (members started) counts them; `generalized`
    is `generalized_reached`, kept for older readers. `early_warning` pools each early-warning signal over the
    seeds (`early_warning.aggregate_signals`: fired before generalization k/n, lead median and range, false
    alarms). `reports` maps member name -> its run report, or None for a member with no run yet (another shard).
    """
    from grokkit.early_warning import aggregate_signals
    from grokkit.survival import Sample, summary

    point_keys = [k for k in spec.axes if k not in SEED_KEYS]
    rows: dict[tuple, dict[str, Any]] = {}
    for member in spec.members():
        point = tuple((k, getattr(member.values[k], "value", member.values[k])) for k in point_keys)
        row = rows.setdefault(point, {"point": dict(point), "members": 0, "started": 0, "generalized": 0,
                                      "memorized": [], "generalized_at": [], "verdicts": {},
                                      "reports": []})  # fmt: skip
        row["members"] += 1
        report = reports.get(member.name)
        if report is None:
            continue
        row["started"] += 1
        row["memorized"].append((report["memorized_step"], report["steps"]))
        row["generalized_at"].append((report["generalized_step"], report["steps"]))
        if report["generalized_step"] is not None:
            row["generalized"] += 1
        row["verdicts"][report["verdict"]] = row["verdicts"].get(report["verdict"], 0) + 1
        row["reports"].append(report)
    out = []
    for row in rows.values():
        row["early_warning"] = aggregate_signals(row.pop("reports"))
        observed = {"memorized": row.pop("memorized"), "generalized": row.pop("generalized_at")}
        stats = {}
        for name, pairs in observed.items():
            pooled = summary(Sample.of(pairs))
            stats.update({f"{name}_median": pooled["median"], f"{name}_median_above": pooled["median_above"],
                          f"{name}_min": pooled["min"], f"{name}_max": pooled["max"],
                          f"{name}_reached": pooled["reached"], f"{name}_runs": pooled["runs"]})  # fmt: skip
        out.append({**row, **stats})
    return out


def swept_point_keys(spec: SweepSpec) -> list[str]:
    """The swept axes other than seeds (the axes of the phase diagram)."""
    return [k for k in spec.axes if k not in SEED_KEYS and len(spec.axes[k]) > 1]
