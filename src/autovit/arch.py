"""`Arch`: one AutoViT architecture (a subnet of a search space), immutable and JSON-serialisable.

An `Arch` holds the searched choices (widths, depths, heads, ratios, number of stages) and the
fixed `Layout` of its space (strides, head dim, patch size, ...), so an arch JSON file alone is
enough to build the network. Only active stages are stored, so two equal networks always have
equal `Arch` objects and equal `key()`s.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from autovit.blocks import (MBCONV, TRANSFORMER, UIB, MBConvStage, MQAStage, TransformerStage, UIBStage, kind_of,
                            listed_kinds)
from autovit.blocks.base import canonical_number, parse_int, parse_number
from autovit.errors import ArchError
from autovit.io_utils import atomic_write_text

__all__ = ["ACTIVATIONS", "Arch", "Layout", "MBConvStage", "TransformerStage", "UIBStage", "check_structure",
           "attention_kind", "conv_kind", "parse_layout"]

ACTIVATIONS = ("silu", "relu", "gelu", "hardswish")


@dataclass(frozen=True)
class Layout:
    """The fixed, non-searched structure shared by all archs of a space (docs/architecture.md)."""

    stem_kernel: int = 3
    stem_stride: int = 2
    mbconv_strides: tuple[int, ...] = (1, 2, 2)
    transformer_strides: tuple[int, ...] = (1, 2, 2, 2)
    head_dim: int = 16
    patch_size: int = 2
    transition_expansion: float = 2
    local_kernel: int = 3
    fusion_kernel: int = 0
    head_expansion: float = 0
    activation: str = "silu"

    def __post_init__(self) -> None:
        object.__setattr__(self, "mbconv_strides", tuple(int(s) for s in self.mbconv_strides))
        object.__setattr__(self, "transformer_strides", tuple(int(s) for s in self.transformer_strides))
        object.__setattr__(self, "transition_expansion", canonical_number(self.transition_expansion))
        object.__setattr__(self, "head_expansion", canonical_number(self.head_expansion))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mbconv_strides"] = list(self.mbconv_strides)
        d["transformer_strides"] = list(self.transformer_strides)
        return d


@dataclass(frozen=True)
class Arch:
    """One architecture: searched choices plus the space's fixed `Layout`.

    `mbconv` holds the conv stages, all of one conv kind (`MBConvStage` or `UIBStage`; the JSON key
    is the kind's name, "mbconv" or "uib"); `transformer` the 0 or more attention stages after them,
    all of one attention kind (`TransformerStage` or `MQAStage`; JSON key "transformer" or "mqa").
    """

    resolution: int
    stem_width: int
    mbconv: tuple[MBConvStage | UIBStage, ...]
    transformer: tuple[TransformerStage | MQAStage, ...]
    head_width: int
    layout: Layout = field(default_factory=Layout)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mbconv", tuple(self.mbconv))
        object.__setattr__(self, "transformer", tuple(self.transformer))
        check_structure(self)

    @property
    def num_transformer_stages(self) -> int:
        return len(self.transformer)

    # ---------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        return {
            "resolution": self.resolution,
            "stem_width": self.stem_width,
            conv_kind(self.mbconv).name: [kind_of(s).to_dict(s) for s in self.mbconv],
            "num_transformer_stages": self.num_transformer_stages,
            attention_kind(self.transformer).name: [kind_of(s).to_dict(s) for s in self.transformer],
            "head_width": self.head_width,
            "layout": self.layout.to_dict(),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, self.to_json() + "\n")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], default_layout: Layout | None = None) -> "Arch":
        """Parse a dict; raises `ArchError` naming the offending field on any problem.

        `layout` may be omitted when `default_layout` (usually the space's) is given.
        """
        if not isinstance(data, Mapping):
            raise ArchError(f"an arch must be a JSON object, got {type(data).__name__}")
        data = dict(data)
        # Accept a wrapper such as best.json {"arch": {...}, "accuracy": ...}.
        if "arch" in data and isinstance(data["arch"], Mapping) and "resolution" not in data:
            data = dict(data["arch"])
        conv, att = listed_kinds(data, "the arch", ArchError)
        top = {"resolution", "stem_width", conv.name, "num_transformer_stages", att.name,
               "head_width", "layout"}
        _reject_unknown(data, top, "arch")
        for name in ("resolution", "stem_width", conv.name, att.name, "head_width"):
            if name not in data:
                raise ArchError(f"arch is missing the field '{name}'",
                                hint=f"an arch needs the fields {sorted(top - {'layout', 'num_transformer_stages'})}")
        mbconv = tuple(conv.parse(s, f"{conv.name}[{i}]") for i, s in enumerate(_list(data, conv.name)))
        stages = _list(data, att.name)
        if "num_transformer_stages" in data:
            n = parse_int(data["num_transformer_stages"], "num_transformer_stages")
            if n != len(stages):
                raise ArchError(
                    f"num_transformer_stages is {n} but the arch lists {len(stages)} transformer stages",
                    hint="list exactly num_transformer_stages entries under 'transformer' "
                         "(or drop num_transformer_stages: it is implied by the list)")
        transformer = tuple(att.parse(s, f"{att.name}[{i}]") for i, s in enumerate(stages))
        if "layout" in data:
            layout = parse_layout(data["layout"])
        elif default_layout is not None:
            layout = default_layout
        else:
            layout = Layout()
        return cls(
            resolution=parse_int(data["resolution"], "resolution"),
            stem_width=parse_int(data["stem_width"], "stem_width"),
            mbconv=mbconv,
            transformer=transformer,
            head_width=parse_int(data["head_width"], "head_width"),
            layout=layout,
        )

    @classmethod
    def from_json(cls, text: str, default_layout: Layout | None = None) -> "Arch":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ArchError(f"arch JSON is malformed: {err.msg} at line {err.lineno} column {err.colno}",
                            hint="check the file with `python -m json.tool FILE`") from None
        return cls.from_dict(data, default_layout)

    @classmethod
    def load(cls, path: str | Path, default_layout: Layout | None = None) -> "Arch":
        path = Path(path)
        if not path.is_file():
            raise ArchError(f"arch file not found: {path}",
                            hint="pass the path of an arch JSON (e.g. one written by `autovit search`)")
        try:
            return cls.from_json(path.read_text(), default_layout)
        except UnicodeDecodeError:
            raise ArchError(f"{path}: not a text file", hint="pass the path of an arch JSON file") from None
        except ArchError as err:
            raise ArchError(f"{path}: {err.message}", err.hint) from None

    # ---------------------------------------------------------------- identity
    def key(self) -> str:
        """Canonical, human-readable key: equal networks give equal keys."""
        m = "_".join(kind_of(s).key(s) for s in self.mbconv)
        t = "_".join(kind_of(s).key(s) for s in self.transformer)
        lay = self.layout
        layout_tag = "" if lay == Layout() else "-L" + hashlib.sha1(json.dumps(lay.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
        return f"r{self.resolution}-c{self.stem_width}-m{m}-t{t}-p{self.head_width}{layout_tag}"

    def replace(self, **changes: Any) -> "Arch":
        """A copy with some top-level fields changed (validated)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Arch(**values)


# -------------------------------------------------------------------- parsing helpers
def _reject_unknown(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ArchError(f"unknown field '{unknown[0]}' in {where}", hint=f"allowed fields: {sorted(allowed)}")


def _list(data: Mapping[str, Any], name: str) -> list[Any]:
    value = data[name]
    if not isinstance(value, list):
        raise ArchError(f"'{name}' must be a list of stages, got {type(value).__name__}")
    return value


def parse_layout(data: Any) -> Layout:
    """A `Layout` from its JSON form; `ArchError` names the offending field."""
    if not isinstance(data, Mapping):
        raise ArchError(f"'layout' must be an object, got {type(data).__name__}")
    names = {f.name: f.type for f in fields(Layout)}
    _reject_unknown(data, set(names), "layout")
    values: dict[str, Any] = {}
    for name, value in data.items():
        typ = names[name]
        if typ == "int":
            values[name] = parse_int(value, f"layout.{name}")
        elif typ == "float":
            values[name] = parse_number(value, f"layout.{name}")
        elif typ == "str":
            if not isinstance(value, str):
                raise ArchError(f"'layout.{name}' must be a string, got {value!r}")
            values[name] = value
        else:
            if not isinstance(value, list):
                raise ArchError(f"'layout.{name}' must be a list of integers, got {value!r}")
            values[name] = tuple(parse_int(v, f"layout.{name}[{i}]") for i, v in enumerate(value))
    return Layout(**values)


def check_structure(arch: Arch) -> None:
    """Checks an arch is buildable at all (positive sizes, stage counts matching the layout)."""
    lay = arch.layout
    if lay.activation not in ACTIVATIONS:
        raise ArchError(f"layout.activation '{lay.activation}' is not supported", hint=f"use one of {ACTIVATIONS}")
    for name in ("stem_kernel", "local_kernel"):
        k = getattr(lay, name)
        if k < 1 or k % 2 == 0:
            raise ArchError(f"layout.{name} must be a positive odd integer, got {k}")
    if lay.fusion_kernel < 0 or (lay.fusion_kernel > 0 and lay.fusion_kernel % 2 == 0):
        raise ArchError(f"layout.fusion_kernel must be 0 (no fusion) or a positive odd integer, got {lay.fusion_kernel}")
    for name in ("stem_stride", "head_dim", "patch_size"):
        if getattr(lay, name) < 1:
            raise ArchError(f"layout.{name} must be >= 1, got {getattr(lay, name)}")
    if any(s not in (1, 2) for s in lay.mbconv_strides + lay.transformer_strides):
        raise ArchError("layout strides must be 1 or 2")
    if lay.transition_expansion < 1 or (lay.head_expansion != 0 and lay.head_expansion < 1):
        raise ArchError("layout.transition_expansion must be >= 1 and layout.head_expansion 0 or >= 1")
    if arch.resolution < 8:
        raise ArchError(f"resolution must be >= 8, got {arch.resolution}")
    if arch.stem_width < 1 or arch.head_width < 1:
        raise ArchError("stem_width and head_width must be >= 1")
    if len(arch.mbconv) != len(lay.mbconv_strides):
        raise ArchError(f"the arch lists {len(arch.mbconv)} MBConv stages but its layout has "
                        f"{len(lay.mbconv_strides)} (layout.mbconv_strides)")
    if not 0 <= len(arch.transformer) <= len(lay.transformer_strides):
        raise ArchError(f"the arch lists {len(arch.transformer)} transformer stages but its layout allows at most "
                        f"{len(lay.transformer_strides)} (layout.transformer_strides)",
                        hint="remove the extra transformer stages")
    conv = conv_kind(arch.mbconv)
    for i, (s, stride) in enumerate(zip(arch.mbconv, lay.mbconv_strides)):
        if not isinstance(s, conv.gene):
            raise ArchError(f"{conv.name}[{i}] is a {kind_of(s).name} stage but the arch's conv stages are {conv.name}",
                            hint="an arch's conv stages are all of one kind")
        conv.check(s, f"{conv.name}[{i}]")
        if conv is UIB:
            UIB.check_stride(s, stride, f"uib[{i}]")
    att = attention_kind(arch.transformer)
    for i, s in enumerate(arch.transformer):
        if not isinstance(s, att.gene):
            raise ArchError(f"{att.name}[{i}] is a {kind_of(s).name} stage but the arch's attention stages are "
                            f"{att.name}", hint="an arch's attention stages are all of one kind")
        att.check(s, f"{att.name}[{i}]")


def attention_kind(stages: tuple) -> Any:
    """The `StageKind` of an arch's attention stages (the MobileViT transformer for an empty list)."""
    return kind_of(stages[0]) if stages else TRANSFORMER


def conv_kind(stages: tuple) -> Any:
    """The `StageKind` of an arch's conv stages (MBConv for an empty list)."""
    return kind_of(stages[0]) if stages else MBCONV
