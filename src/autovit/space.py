"""The AutoViT search spaces (paper Table 1) as data: choices, validation, sampling, mutation,
crossover and exact cardinality.

Built-in spaces `xxs`, `xs` and `s` (the paper's) and `mnv4_s`, `mnv4_m` (MobileNetV4-like: UIB
conv stages, 0+ Mobile MQA stages) live in `autovit/spaces/*.yaml`; users load their own with
`SearchSpace.from_yaml(path)`. Every random operation takes an explicit `random.Random`.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import yaml

from autovit.arch import Arch, Layout, parse_layout
from autovit.blocks import (CONV_KINDS, MBCONV, TRANSFORMER, MBConvChoices, MQAChoices, StageKind, TransformerChoices,
                            UIBChoices, kind_of, listed_kinds)
from autovit.blocks.base import parse_choices
from autovit.errors import ArchError, AutovitError, SpaceError
from autovit.io_utils import parse_yaml, read_yaml

BUILTIN_SPACES = ("xxs", "xs", "s")  # the paper's spaces (one shared layout)
FAMILY_SPACES = ("mnv4_s", "mnv4_m")  # MobileNetV4-like UIB spaces (docs/architecture.md)
ALL_BUILTIN_SPACES = BUILTIN_SPACES + FAMILY_SPACES
MAX_TRIES = 1000  # rejection-sampling bound: never an endless loop


@dataclass(frozen=True)
class SearchSpace:
    """A hybrid CNN + ViT search space: the choices of every searched dimension."""

    name: str
    resolution: tuple[int, ...]
    stem_width: tuple[int, ...]
    mbconv: tuple[MBConvChoices | UIBChoices, ...]  # the conv stage slots (all of one conv kind)
    transformer: tuple[TransformerChoices | MQAChoices, ...]  # attention stage slots (one attention kind)
    num_transformer_stages: tuple[int, ...]
    head_width: tuple[int, ...]
    layout: Layout = field(default_factory=Layout)
    nondecreasing_widths: bool = True
    paper_param_range: tuple[float, float] | None = None
    description: str = ""

    @property
    def conv_kind(self) -> StageKind:
        """The kind of the space's conv stage slots (MBConv or UIB)."""
        return kind_of(self.mbconv[0]) if self.mbconv else MBCONV

    @property
    def attention_kind(self) -> StageKind:
        """The kind of the space's attention stage slots (MobileViT transformer or Mobile MQA)."""
        return kind_of(self.transformer[0]) if self.transformer else TRANSFORMER

    # ---------------------------------------------------------------- loading
    @classmethod
    def builtin(cls, name: str) -> "SearchSpace":
        """A builtin space: the paper's 'xxs', 'xs', 's', or the MobileNetV4-like 'mnv4_s', 'mnv4_m'."""
        key = name.lower()
        if key not in ALL_BUILTIN_SPACES:
            raise SpaceError(f"unknown search space '{name}'",
                             hint=f"use one of {', '.join(ALL_BUILTIN_SPACES)} or the path of a space YAML file")
        text = resources.files("autovit.spaces").joinpath(f"{key}.yaml").read_text()
        return cls.from_yaml_text(text, source=f"builtin space '{key}'")

    @classmethod
    def load(cls, name_or_path: str | Path) -> "SearchSpace":
        """A builtin space by name, or a YAML file by path."""
        if isinstance(name_or_path, SearchSpace):
            return name_or_path
        text = str(name_or_path)
        if text.lower() in ALL_BUILTIN_SPACES:
            return cls.builtin(text)
        path = Path(text)
        if not path.exists() and path.suffix.lower() not in (".yaml", ".yml") and len(path.parts) == 1:
            raise SpaceError(f"unknown search space '{text}'",
                             hint=f"use one of {', '.join(ALL_BUILTIN_SPACES)} or the path of a space YAML file")
        return cls.from_yaml(text)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "SearchSpace":
        hint = f"pass a YAML file or one of the builtin spaces {', '.join(ALL_BUILTIN_SPACES)}"
        return cls._from_parsed(read_yaml(path, "search space file", hint, SpaceError), str(path))

    @classmethod
    def from_yaml_text(cls, text: str, source: str = "<yaml>") -> "SearchSpace":
        return cls._from_parsed(parse_yaml(text, source, SpaceError), source)

    @classmethod
    def _from_parsed(cls, data: Any, source: str) -> "SearchSpace":
        try:
            return cls.from_dict(data)
        except AutovitError as err:
            raise SpaceError(f"{source}: {err.message}", err.hint) from None

    @classmethod
    def from_dict(cls, data: Any) -> "SearchSpace":
        if not isinstance(data, Mapping):
            raise SpaceError("a search space must be a YAML mapping")
        conv, att = listed_kinds(data, "the search space", SpaceError)
        allowed = {"name", "description", "resolution", "stem_width", conv.name, att.name,
                   "num_transformer_stages", "head_width", "layout", "constraints", "paper_param_range"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise SpaceError(f"unknown field '{unknown[0]}' in the search space", hint=f"allowed: {sorted(allowed)}")
        for name in ("name", "resolution", "stem_width", conv.name, att.name, "head_width"):
            if name not in data:
                raise SpaceError(f"the search space is missing the field '{name}'",
                                 hint=f"conv stages go under one of {[k.name for k in CONV_KINDS]}"
                                 if name == conv.name else None)
        if not isinstance(data[conv.name], list) or not isinstance(data[att.name], list):
            raise SpaceError(f"'{conv.name}' and '{att.name}' must be lists of stages")
        mbconv = tuple(conv.parse_choices(s, f"{conv.name}[{i}]") for i, s in enumerate(data[conv.name]))
        transformer = tuple(att.parse_choices(s, f"{att.name}[{i}]") for i, s in enumerate(data[att.name]))
        n_stages = parse_choices(data.get("num_transformer_stages", [len(transformer)]), "num_transformer_stages")
        if max(n_stages) > len(transformer) or min(n_stages) < 0:
            raise SpaceError(f"num_transformer_stages {list(n_stages)} asks for more stages than the "
                             f"{len(transformer)} listed under '{att.name}'")
        try:
            layout = parse_layout(data.get("layout", {}))
        except ArchError as err:
            raise SpaceError(err.message, err.hint) from None
        if len(layout.mbconv_strides) != len(mbconv):
            layout = _fit_strides(layout, "mbconv_strides", len(mbconv))
        if len(layout.transformer_strides) != len(transformer):
            layout = _fit_strides(layout, "transformer_strides", len(transformer))
        constraints = data.get("constraints", {}) or {}
        if not isinstance(constraints, Mapping) or set(constraints) - {"nondecreasing_widths"}:
            raise SpaceError("'constraints' may only hold 'nondecreasing_widths: true|false'")
        pr = data.get("paper_param_range")
        space = cls(
            name=str(data["name"]),
            description=str(data.get("description", "")),
            resolution=parse_choices(data["resolution"], "resolution"),
            stem_width=parse_choices(data["stem_width"], "stem_width"),
            mbconv=mbconv,
            transformer=transformer,
            num_transformer_stages=n_stages,
            head_width=parse_choices(data["head_width"], "head_width"),
            layout=layout,
            nondecreasing_widths=bool(constraints.get("nondecreasing_widths", True)),
            paper_param_range=tuple(float(v) for v in pr) if pr else None,
        )
        # A space whose smallest arch cannot even be built is a definition error.
        try:
            space.smallest()
        except ArchError as err:
            raise SpaceError(f"the space defines unbuildable architectures: {err.message}") from None
        return space

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "resolution": list(self.resolution),
            "stem_width": list(self.stem_width),
            self.conv_kind.name: [self.conv_kind.choices_to_dict(c) for c in self.mbconv],
            self.attention_kind.name: [self.attention_kind.choices_to_dict(c) for c in self.transformer],
            "num_transformer_stages": list(self.num_transformer_stages),
            "head_width": list(self.head_width),
            "layout": self.layout.to_dict(),
            "constraints": {"nondecreasing_widths": self.nondecreasing_widths},
            **({"paper_param_range": list(self.paper_param_range)} if self.paper_param_range else {}),
        }

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def with_resolution(self, resolution: int) -> "SearchSpace":
        """The same space searched and deployed at another input resolution."""
        if int(resolution) < 8:
            raise SpaceError(f"resolution must be >= 8, got {resolution}")
        return _replace(self, resolution=(int(resolution),))

    def with_constraint(self, on: bool) -> "SearchSpace":
        return _replace(self, nondecreasing_widths=on)

    # ---------------------------------------------------------------- membership
    def validate(self, arch: Arch) -> Arch:
        """Raises `ArchError` naming the first field outside this space; returns the arch."""

        def check(value: Any, allowed: Sequence[Any], where: str) -> None:
            if value not in allowed:
                raise ArchError(f"{where} = {value} is outside the search space '{self.name}'",
                                hint=f"allowed values: {', '.join(str(a) for a in allowed)}")

        if arch.layout != self.layout:
            diff = [f.name for f in fields(Layout) if getattr(arch.layout, f.name) != getattr(self.layout, f.name)]
            raise ArchError(f"the arch's layout differs from the space '{self.name}' in {', '.join(diff)}",
                            hint="drop 'layout' from the arch JSON to use the space's, or pick the matching space")
        check(arch.resolution, self.resolution, "resolution")
        check(arch.stem_width, self.stem_width, "stem_width")
        conv = self.conv_kind
        if arch.mbconv and not isinstance(arch.mbconv[0], conv.gene):
            raise ArchError(f"the arch has {kind_of(arch.mbconv[0]).name} conv stages but the space '{self.name}' "
                            f"has {conv.name} stages", hint="pick the space the arch was searched in")
        for i, (s, c) in enumerate(zip(arch.mbconv, self.mbconv)):
            conv.validate(s, c, f"{conv.name}[{i}]", self.name)
        check(arch.num_transformer_stages, self.num_transformer_stages, "num_transformer_stages")
        att = self.attention_kind
        if arch.transformer and not isinstance(arch.transformer[0], att.gene):
            raise ArchError(f"the arch has {kind_of(arch.transformer[0]).name} attention stages but the space "
                            f"'{self.name}' has {att.name} stages", hint="pick the space the arch was searched in")
        for i, (s, c) in enumerate(zip(arch.transformer, self.transformer)):
            att.validate(s, c, f"{att.name}[{i}]", self.name)
        check(arch.head_width, self.head_width, "head_width")
        if self.nondecreasing_widths and not is_nondecreasing(arch):
            widths = [s.width for s in arch.transformer]
            raise ArchError(f"transformer widths {widths} decrease across stages, which the space "
                            f"'{self.name}' forbids (constraint nondecreasing_widths)",
                            hint="use non-decreasing widths or turn the constraint off in the space YAML")
        return arch

    def contains(self, arch: Arch) -> bool:
        try:
            self.validate(arch)
        except ArchError:
            return False
        return True

    def parse_arch(self, data: Mapping[str, Any] | str | Path) -> Arch:
        """An arch from a dict, JSON text or file, with this space's layout as default, validated."""
        if isinstance(data, Mapping):
            arch = Arch.from_dict(data, self.layout)
        elif isinstance(data, Path) or (isinstance(data, str) and not data.lstrip().startswith("{")):
            arch = Arch.load(data, self.layout)
        else:
            arch = Arch.from_json(data, self.layout)
        return self.validate(arch)

    # ---------------------------------------------------------------- special archs
    def _extreme(self, pick: Any) -> Arch:
        n = pick(self.num_transformer_stages)
        return Arch(
            resolution=pick(self.resolution),
            stem_width=pick(self.stem_width),
            mbconv=tuple(self.conv_kind.extreme(c, pick) for c in self.mbconv),
            transformer=tuple(self.attention_kind.extreme(c, pick) for c in self.transformer[:n]),
            head_width=pick(self.head_width),
            layout=self.layout,
        )

    def largest(self) -> Arch:
        """Every dimension at its largest choice (the supernet's own architecture)."""
        return self._extreme(max)

    def smallest(self) -> Arch:
        """Every dimension at its smallest choice."""
        return self._extreme(min)

    # ---------------------------------------------------------------- sampling
    def _sample_unconstrained(self, rng: random.Random) -> Arch:
        n = rng.choice(self.num_transformer_stages)
        return Arch(
            resolution=rng.choice(self.resolution),
            stem_width=rng.choice(self.stem_width),
            mbconv=tuple(self.conv_kind.sample(c, rng) for c in self.mbconv),
            transformer=tuple(self.attention_kind.sample(c, rng) for c in self.transformer[:n]),
            head_width=rng.choice(self.head_width),
            layout=self.layout,
        )

    def _ok(self, arch: Arch) -> bool:
        return not self.nondecreasing_widths or is_nondecreasing(arch)

    def _retry(self, make: Any, what: str) -> Arch:
        for _ in range(MAX_TRIES):
            arch = make()
            if self._ok(arch):
                return arch
        raise SpaceError(f"could not {what} an arch satisfying the constraints of '{self.name}' "
                         f"in {MAX_TRIES} tries", hint="check the transformer widths allow a non-decreasing sequence")

    def sample(self, rng: random.Random) -> Arch:
        """Uniform choice in every dimension (rejecting archs that break the constraint)."""
        return self._retry(lambda: self._sample_unconstrained(rng), "sample")

    def mutate(self, arch: Arch, rng: random.Random, p_depth: float = 0.2, p_block: float = 0.4) -> Arch:
        """Paper mutation: each depth gene (stage count, stage depths) changes with `p_depth`, then
        each block's other choices change with `p_block`. The result is always valid."""

        def once() -> Arch:
            n = arch.num_transformer_stages
            if rng.random() < p_depth:
                n = rng.choice(self.num_transformer_stages)
            mb = [_mutate_stage(self.conv_kind, s, c, rng, p_depth, p_block) for s, c in zip(arch.mbconv, self.mbconv)]
            att = self.attention_kind
            tr = [_mutate_stage(att, arch.transformer[i] if i < arch.num_transformer_stages
                                else att.sample(self.transformer[i], rng), self.transformer[i], rng,
                                p_depth, p_block)
                  for i in range(n)]
            pick = lambda value, options: rng.choice(options) if rng.random() < p_block else value  # noqa: E731
            return Arch(resolution=pick(arch.resolution, self.resolution),
                        stem_width=pick(arch.stem_width, self.stem_width),
                        mbconv=tuple(mb), transformer=tuple(tr),
                        head_width=pick(arch.head_width, self.head_width), layout=self.layout)

        return self._retry(once, "mutate")

    def crossover(self, a: Arch, b: Arch, rng: random.Random) -> Arch:
        """Uniform crossover: every block (and the stage count) comes from either parent."""

        def once() -> Arch:
            n = rng.choice((a.num_transformer_stages, b.num_transformer_stages))
            tr = []
            for i in range(n):
                donors = [p.transformer[i] for p in (a, b) if i < p.num_transformer_stages]
                tr.append(rng.choice(donors))
            return Arch(resolution=rng.choice((a.resolution, b.resolution)),
                        stem_width=rng.choice((a.stem_width, b.stem_width)),
                        mbconv=tuple(rng.choice(pair) for pair in zip(a.mbconv, b.mbconv)),
                        transformer=tuple(tr),
                        head_width=rng.choice((a.head_width, b.head_width)), layout=self.layout)

        return self._retry(once, "cross over into")

    # ---------------------------------------------------------------- counting
    def cardinality(self, constrained: bool | None = None) -> int:
        """Exact number of distinct archs, with or without the non-decreasing-width constraint."""
        constrained = self.nondecreasing_widths if constrained is None else constrained
        base = len(self.resolution) * len(self.stem_width) * len(self.head_width)
        for c in self.mbconv:
            base *= self.conv_kind.num_options(c)
        other = [self.attention_kind.num_options(c, exclude=("width",)) for c in self.transformer]
        total = 0
        for n in self.num_transformer_stages:
            if n == 0:
                total += 1
                continue
            # DP over stages: ways[w] = weighted count of valid prefixes ending at width w.
            ways: dict[int, int] = {w: other[0] for w in self.transformer[0].width}
            for i in range(1, n):
                nxt: dict[int, int] = {}
                for w in self.transformer[i].width:
                    prev = sum(cnt for pw, cnt in ways.items() if not constrained or pw <= w)
                    nxt[w] = prev * other[i]
                ways = nxt
            total += sum(ways.values())
        return base * total

    def enumerate(self) -> Iterator[Arch]:
        """Every arch of the space (only sensible for tiny spaces, e.g. in tests)."""
        mb_opts = [list(self.conv_kind.options(c)) for c in self.mbconv]
        tr_opts = [list(self.attention_kind.options(c)) for c in self.transformer]
        for res, stem, head in itertools.product(self.resolution, self.stem_width, self.head_width):
            for mb in itertools.product(*mb_opts):
                for n in self.num_transformer_stages:
                    for tr in itertools.product(*tr_opts[:n]):
                        arch = Arch(res, stem, mb, tr, head, self.layout)
                        if self._ok(arch):
                            yield arch

    def width_extremes(self) -> tuple[Arch, Arch]:
        """The valid archs with the fewest and the most parameters.

        Params grow monotonically with every choice, so only the transformer widths (tied by the
        constraint) need enumerating; all other dimensions sit at their extremes.
        """
        from autovit.costs import count_params  # local: costs imports space-free modules only

        best: list[Arch] = []
        for pick, better in ((min, lambda a, b: a < b), (max, lambda a, b: a > b)):
            ext = self._extreme(pick)
            n = pick(self.num_transformer_stages)
            chosen, chosen_p = None, None
            for widths in itertools.product(*(c.width for c in self.transformer[:n])):
                tr = tuple(self.attention_kind.replace(s, width=w) for w, s in zip(widths, ext.transformer))
                arch = ext.replace(transformer=tr)
                if not self._ok(arch):
                    continue
                p = count_params(arch)
                if chosen_p is None or better(p, chosen_p):
                    chosen, chosen_p = arch, p
            if chosen is None:
                raise SpaceError(f"the space '{self.name}' has no arch satisfying its constraints")
            best.append(chosen)
        return best[0], best[1]


def _mutate_stage(kind: StageKind, stage: Any, choices: Any, rng: random.Random, p_depth: float,
                  p_block: float) -> Any:
    """Paper mutation of one stage: its depth gene with `p_depth`, then its other genes together
    (a fresh sample of the slot, keeping the depth) with `p_block`."""
    depth = kind.depth_field
    if rng.random() < p_depth:
        stage = kind.replace(stage, **{depth: rng.choice(getattr(choices, depth))})
    if rng.random() < p_block:
        stage = kind.replace(kind.sample(choices, rng), **{depth: getattr(stage, depth)})
    return stage


def is_nondecreasing(arch: Arch) -> bool:
    widths = [s.width for s in arch.transformer]
    return all(a <= b for a, b in zip(widths, widths[1:]))


def _fit_strides(layout: Layout, name: str, n: int) -> Layout:
    strides = getattr(layout, name)
    if len(strides) < n:
        raise SpaceError(f"layout.{name} lists {len(strides)} strides but the space has {n} such stages")
    return _replace(layout, **{name: strides[:n]})


def _replace(obj: Any, **changes: Any) -> Any:
    values = {f.name: getattr(obj, f.name) for f in fields(obj)}
    values.update(changes)
    return type(obj)(**values)


def log10_cardinality(space: SearchSpace, constrained: bool | None = None) -> float:
    return math.log10(space.cardinality(constrained))
