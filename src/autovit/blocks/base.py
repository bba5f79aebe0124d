"""What a block kind is, and the generic operations on its gene.

A *stage kind* (MBConv, MobileViT transformer stage, ...) is described once, in its own module
under `autovit.blocks`, by a `StageKind`: the fields of its gene (`GeneField`), the frozen
dataclasses of its gene and of its choices within a space, and its own costs, latency-table
signatures and operator counts. Generic code (space parsing, sampling, mutation, validation,
cardinality, the coarse-search genome, the latency predictor's cache key) iterates over a kind's
`fields` and assumes no fixed number of genes; adding a field or a kind touches one module.

This module has no torch dependency (the arch and space layers import it).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from dataclasses import MISSING, dataclass, replace
from typing import Any, Callable, ClassVar, Iterator, Mapping, Sequence

from autovit.errors import ArchError, AutovitError, SpaceError


def canonical_number(value: float) -> float | int:
    """Canonical number: 2.0 -> 2, 1.5 -> 1.5 (so JSON and keys never depend on int/float)."""
    value = float(value)
    return int(value) if value.is_integer() else value


def parse_int(value: Any, where: str) -> int:
    """An integer from JSON, or `ArchError` naming `where`."""
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or float(value) != int(value)):
        raise ArchError(f"'{where}' must be an integer, got {value!r}")
    return int(value)


def parse_number(value: Any, where: str) -> float:
    """A finite number from JSON, or `ArchError` naming `where`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ArchError(f"'{where}' must be a number, got {value!r}")
    return float(value)


# ---------------------------------------------------------------------- closed-form cost helpers
def conv_bn_params(cin: int, cout: int, k: int, groups: int = 1) -> int:
    """Parameters of Conv2d (no bias) + BatchNorm2d."""
    return k * k * (cin // groups) * cout + 2 * cout


def conv_macs(cin: int, cout: int, k: int, out_hw: int, groups: int = 1) -> int:
    """MACs of a conv producing `out_hw` output positions (FlopCounterMode FLOPs / 2, no bias)."""
    return k * k * (cin // groups) * cout * out_hw


def down(size: int, stride: int) -> int:
    """Spatial side after a stride (padding `k // 2`, so ceil)."""
    return math.ceil(size / stride)


def expand_width(channels: int, ratio: float) -> int:
    """Hidden width of an expanded layer (MBConv expansion, MLP ratio, squeeze-excite ratio)."""
    return max(1, int(round(channels * ratio)))


@dataclass(frozen=True)
class StageCost:
    """Closed-form cost of one stage of a network (see `autovit.costs.stage_costs`)."""

    name: str
    params: int
    macs: int
    out_channels: int
    out_size: int  # spatial side of the output feature map


# ---------------------------------------------------------------------- genes
@dataclass(frozen=True)
class GeneField:
    """One searched field of a stage gene.

    `default` is set for fields added after the paper's genes (e.g. MBConv squeeze-excite): arch
    files without the field still load, keys and arch JSON leave the default out, and sampling
    draws the field only when the space offers more than one choice, so that spaces without it
    keep their random streams (and searches) exactly.
    """

    name: str
    number: type = int  # int or float
    default: float | int | None = None


_NUMBER_TYPES: dict[Any, type] = {"int": int, "float": float, int: int, float: float}


class Gene:
    """Base of the stage genes: frozen dataclasses whose fields are annotated `int` or `float`
    (a default marks a field added after the paper's genes, see `GeneField`). Float fields hold
    canonical numbers, so that keys and JSON never depend on the int/float spelling."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if _NUMBER_TYPES[f.type] is float:
                object.__setattr__(self, f.name, canonical_number(getattr(self, f.name)))


def gene_fields(gene: type) -> tuple[GeneField, ...]:
    """The `GeneField`s of a gene dataclass, in declaration order."""
    return tuple(GeneField(f.name, _NUMBER_TYPES[f.type], None if f.default is MISSING else f.default)
                 for f in dataclasses.fields(gene))


def choices_dataclass(gene: type, name: str) -> type:
    """The frozen dataclass of one stage slot's choices for `gene`: a sorted tuple of options per
    field (a defaulted field has its default as the single choice unless a space says otherwise)."""
    spec = [(f.name, tuple) if f.default is None else (f.name, tuple, dataclasses.field(default=(f.default,)))
            for f in gene_fields(gene)]
    cls = dataclasses.make_dataclass(name, spec, frozen=True)
    cls.__module__, cls.__doc__ = gene.__module__, f"The choices of one {gene.__name__} slot of a space."
    return cls


class StageKind:
    """A searched stage kind; subclasses set the class attributes and the kind-specific methods.
    `fields` is derived from the gene dataclass."""

    name: ClassVar[str]  # the key in arch JSON and space YAML ("mbconv", "transformer")
    title: ClassVar[str]  # for tables ("MBConv")
    gene: ClassVar[type]  # a `Gene` dataclass, one attribute per field
    choices: ClassVar[type]  # `choices_dataclass(gene)`: a tuple of choices per field
    fields: ClassVar[tuple[GeneField, ...]]
    depth_field: ClassVar[str] = "depth"  # the field the paper's mutation treats as a depth gene

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.fields = gene_fields(cls.gene)

    # ------------------------------------------------------------ kind-specific (override)
    def key(self, stage: Any) -> str:
        """The stage's part of `Arch.key()`."""
        raise NotImplementedError

    def check(self, stage: Any, where: str) -> None:
        """Raises `ArchError` when the stage cannot be built at all."""
        raise NotImplementedError

    # ------------------------------------------------------------ generic
    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def values(self, stage: Any) -> tuple:
        """The gene as a plain tuple in field order (hashable cheaply: cache keys)."""
        return tuple(getattr(stage, f.name) for f in self.fields)

    def make(self, *values: Any, **named: Any) -> Any:
        return self.gene(*values, **named)

    def replace(self, stage: Any, **changes: Any) -> Any:
        return replace(stage, **changes)

    def to_dict(self, stage: Any) -> dict[str, Any]:
        """JSON form; defaulted fields at their default are left out (older files stay identical)."""
        return {f.name: getattr(stage, f.name) for f in self.fields
                if f.default is None or getattr(stage, f.name) != f.default}

    def _given_fields(self, data: Any, where: str, error: type, noun: str, not_mapping: str) -> list[GeneField]:
        """The fields `data` gives, after checking it is a mapping with no unknown and no missing
        required names (`error` with `noun` in its message otherwise)."""
        if not isinstance(data, Mapping):
            raise error(not_mapping)
        names = self.field_names
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise error(f"unknown {noun} '{unknown[0]}' in {where}", hint=f"allowed: {list(names)}")
        for f in self.fields:
            if f.name not in data and f.default is None:
                required = [g.name for g in self.fields if g.default is None]
                raise error(f"'{where}' is missing the {noun} '{f.name}'", hint=f"a stage needs {required}")
        return [f for f in self.fields if f.name in data]

    def parse(self, data: Any, where: str) -> Any:
        """A gene from its JSON form; `ArchError` names the offending field."""
        given = self._given_fields(data, where, ArchError, "field",
                                   f"'{where}' must be an object, got {type(data).__name__}")
        return self.gene(**{f.name: (parse_int if f.number is int else parse_number)(data[f.name], f"{where}.{f.name}")
                            for f in given})

    # ------------------------------------------------------------ choices within a space
    def parse_choices(self, data: Any, where: str) -> Any:
        """The choices of one stage slot from the space YAML; `SpaceError` names the problem.
        A defaulted field left out has the single choice of its default."""
        given = self._given_fields(data, where, SpaceError, "dimension",
                                   f"'{where}' must be a mapping of dimension -> choices")
        values = {f.name: (f.default,) for f in self.fields if f.default is not None}
        values.update({f.name: parse_choices(data[f.name], f"{where}.{f.name}", f.number) for f in given})
        return self.choices(**values)

    def choices_to_dict(self, choices: Any) -> dict[str, list]:
        return {f.name: list(getattr(choices, f.name)) for f in self.fields
                if f.default is None or getattr(choices, f.name) != (f.default,)}

    def sample(self, choices: Any, rng: random.Random) -> Any:
        """Uniform in every field (a defaulted field with one choice draws nothing; see `GeneField`)."""
        values = []
        for f in self.fields:
            options = getattr(choices, f.name)
            values.append(options[0] if f.default is not None and len(options) == 1 else rng.choice(options))
        return self.gene(*values)

    def extreme(self, choices: Any, pick: Callable[[Sequence[Any]], Any]) -> Any:
        """Every field at `pick` (min / max) of its choices."""
        return self.gene(*(pick(getattr(choices, f.name)) for f in self.fields))

    def options(self, choices: Any) -> Iterator[Any]:
        """Every gene of the slot (product over fields, in field order)."""
        for values in itertools.product(*(getattr(choices, f.name) for f in self.fields)):
            yield self.gene(*values)

    def num_options(self, choices: Any, exclude: Sequence[str] = ()) -> int:
        return math.prod(len(getattr(choices, f.name)) for f in self.fields if f.name not in exclude)

    def validate(self, stage: Any, choices: Any, where: str, space_name: str) -> None:
        """Raises `ArchError` naming the first field outside `choices`."""
        for f in self.fields:
            value, allowed = getattr(stage, f.name), getattr(choices, f.name)
            if value not in allowed:
                raise ArchError(f"{where}.{f.name} = {value} is outside the search space '{space_name}'",
                                hint=f"allowed values: {', '.join(str(a) for a in allowed)}")


def parse_choices(values: Any, where: str, number: type = int) -> tuple:
    """A sorted tuple of distinct choices from a YAML list; `SpaceError` names the problem."""
    if not isinstance(values, (list, tuple)) or not values:
        raise SpaceError(f"'{where}' must be a non-empty list of choices, got {values!r}")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (number is int and float(v) != int(v)):
            raise SpaceError(f"'{where}' has an invalid choice {v!r} ({'integers' if number is int else 'numbers'} only)")
        out.append(int(v) if number is int else canonical_number(v))
    if len(set(out)) != len(out):
        raise SpaceError(f"'{where}' lists a choice twice: {values!r}")
    return tuple(sorted(out))


# ---------------------------------------------------------------------- latency-table signatures
_TABLE_KINDS: list[str] = []


def register_table_kinds(*kinds: str) -> None:
    """Declares latency-table block kinds (a kind module calls this once; the order is the
    canonical order of tables and reports)."""
    for kind in kinds:
        if kind not in _TABLE_KINDS:
            _TABLE_KINDS.append(kind)


def table_kinds() -> tuple[str, ...]:
    return tuple(_TABLE_KINDS)


@dataclass(frozen=True, order=True)
class BlockSig:
    """Canonical signature of one block variant: a table kind plus sorted (name, value) pairs.

    The string form ``kind:a=1,b=2`` is the lookup-table key; equal blocks give equal strings
    regardless of argument order or int/float spelling.
    """

    kind: str
    params: tuple[tuple[str, Any], ...]

    @classmethod
    def make(cls, kind: str, **params: Any) -> "BlockSig":
        if kind not in _TABLE_KINDS:
            raise AutovitError(f"unknown block kind '{kind}'", hint=f"use one of {', '.join(_TABLE_KINDS)}")
        canon = tuple(sorted((k, v if isinstance(v, str) else canonical_number(v)) for k, v in params.items()))
        return cls(kind, canon)

    @classmethod
    def parse(cls, text: str) -> "BlockSig":
        """Inverse of `str(sig)`."""
        kind, _, rest = text.strip().partition(":")
        params: dict[str, Any] = {}
        try:
            for item in filter(None, rest.split(",")):
                name, value = item.split("=", 1)
                try:
                    params[name] = float(value)
                except ValueError:
                    params[name] = value
            return cls.make(kind, **params)
        except (ValueError, AutovitError):
            raise AutovitError(f"malformed block signature '{text}'",
                               hint="signatures look like 'mbconv:act=silu,cin=16,cout=24,e=2,h=128,k=3,s=2'") from None

    def __str__(self) -> str:
        return f"{self.kind}:" + ",".join(f"{k}={v}" for k, v in self.params)

    def get(self, name: str, default: Any = None) -> Any:
        return dict(self.params).get(name, default)

    @property
    def copies(self) -> int:
        """How many copies the in-context network stacks (1 for shape-changing blocks)."""
        p = dict(self.params)
        if self.kind in ("mbconv", "uib") and not (p["cin"] == p["cout"] and p["s"] == 1):
            return 1
        return DEFAULT_COPIES.get(self.kind, 1)


# Copies stacked in the "with" network of shape-preserving blocks (the difference is divided by it).
DEFAULT_COPIES = {"mbconv": 3, "uib": 3, "attn": 4, "mlp": 4, "mqa": 4}
