"""Arch: JSON round trip, canonical keys, and every parse / validation error path."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from autovit.arch import Arch, Layout, MBConvStage, TransformerStage
from autovit.errors import ArchError
from autovit.registry import paper_arch
from autovit.space import SearchSpace


def xxs_dict() -> dict[str, Any]:
    """The paper's XXS arch as a plain dict without layout (the usual arch JSON)."""
    d = paper_arch("xxs").to_dict()
    del d["layout"]
    return d


# ------------------------------------------------------------------ round trip and keys
@pytest.mark.parametrize("size", ["xxs", "xs", "s"])
def test_json_round_trip_paper_archs(size: str, tmp_path: Path) -> None:
    arch = paper_arch(size)
    assert Arch.from_json(arch.to_json()) == arch
    assert Arch.from_dict(json.loads(arch.to_json(indent=None))).key() == arch.key()
    arch.save(tmp_path / "a.json")
    loaded = Arch.load(tmp_path / "a.json")
    assert loaded == arch and hash(loaded) == hash(arch)


def test_json_round_trip_random_archs(space: SearchSpace, rng: random.Random) -> None:
    for _ in range(30):
        arch = space.sample(rng)
        again = Arch.from_json(arch.to_json())
        assert again == arch and again.key() == arch.key()
        assert space.parse_arch(arch.to_json()) == arch


def test_key_ignores_int_float_spelling_and_field_order() -> None:
    base = xxs_dict()
    spelled = json.loads(json.dumps(base))
    spelled["resolution"] = 256.0
    spelled["mbconv"][1]["expansion"] = 2.0
    spelled["mbconv"][1]["width"] = 24.0
    spelled["transformer"][0]["mlp_ratio"] = 1.0
    spelled["transformer"][2]["mlp_ratio"] = 2.0
    reordered = {k: spelled[k] for k in reversed(list(spelled))}
    reordered["transformer"] = [{k: s[k] for k in reversed(list(s))} for s in reordered["transformer"]]
    a, b = Arch.from_dict(base), Arch.from_dict(reordered)
    assert a == b and a.key() == b.key() and hash(a) == hash(b)
    assert "e2k3" in a.key() and "e2.0" not in a.key() and "r1.5" in a.key()
    # The canonical JSON spells whole numbers as integers.
    assert '"expansion": 2,' in b.to_json() and "2.0" not in b.to_json()


def test_different_archs_have_different_keys(rng: random.Random) -> None:
    space = SearchSpace.builtin("xs")
    archs = {space.sample(rng) for _ in range(300)}
    assert len({a.key() for a in archs}) == len(archs)


def test_key_depends_on_every_dimension() -> None:
    arch = paper_arch("xxs")
    t = arch.transformer
    variants = [
        arch.replace(resolution=224), arch.replace(stem_width=24), arch.replace(head_width=1280),
        arch.replace(mbconv=(MBConvStage(16, 1, 1, 5),) + arch.mbconv[1:]),
        arch.replace(transformer=t[:3]),
        arch.replace(transformer=t[:3] + (TransformerStage(96, 2, 4, 1.5),)),
        arch.replace(layout=Layout(head_dim=32)),
    ]
    keys = {v.key() for v in variants} | {arch.key()}
    assert len(keys) == len(variants) + 1


def test_inactive_stages_are_not_stored() -> None:
    arch = paper_arch("xxs")
    three = arch.replace(transformer=arch.transformer[:3])
    assert three.num_transformer_stages == 3 and len(three.to_dict()["transformer"]) == 3
    assert three.to_dict()["num_transformer_stages"] == 3


def test_wrapper_with_arch_field_is_accepted() -> None:
    assert Arch.from_dict({"arch": xxs_dict(), "accuracy": 71.3}) == paper_arch("xxs")


def test_default_layout_applies_when_json_has_none() -> None:
    lay = Layout(head_dim=32)
    assert Arch.from_dict(xxs_dict(), default_layout=lay).layout == lay
    assert Arch.from_dict(xxs_dict()).layout == Layout()


def test_arch_is_immutable() -> None:
    arch = paper_arch("xxs")
    with pytest.raises(Exception):
        arch.resolution = 128  # type: ignore[misc]


# ------------------------------------------------------------------ parse errors
def _mutated(path: str, value: Any) -> dict[str, Any]:
    """xxs_dict() with the dotted `path` set to `value` (or deleted when value is DELETE)."""
    d = xxs_dict()
    parts = path.split(".")
    target: Any = d
    for p in parts[:-1]:
        target = target[int(p)] if isinstance(target, list) else target[p]
    last: Any = int(parts[-1]) if isinstance(target, list) else parts[-1]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return d


DELETE = object()

PARSE_ERRORS = [
    # (change, words the message must contain)
    ("extra_field", ("unknown field 'extra_field'",)),
    ("mbconv.0.colour", ("unknown field 'colour'", "mbconv[0]")),
    ("-resolution", ("missing the field 'resolution'",)),
    ("-head_width", ("missing the field 'head_width'",)),
    ("-transformer.1.heads", ("transformer[1]", "missing the field 'heads'")),
    ("resolution=256px", ("'resolution' must be an integer",)),
    ("stem_width=16.5", ("'stem_width' must be an integer",)),
    ("head_width=true", ("'head_width' must be an integer",)),
    ("mbconv.2.width=nan", ("'mbconv[2].width' must be an integer",)),
    ("transformer.0.mlp_ratio=two", ("'transformer[0].mlp_ratio' must be a number",)),
    ("transformer.0.mlp_ratio=inf", ("'transformer[0].mlp_ratio' must be a number",)),
    ("mbconv=abc", ("'mbconv' must be a list",)),
    ("transformer.0=[48, 4]", ("'transformer[0]' must be an object",)),
    ("num_transformer_stages=3", ("num_transformer_stages is 3", "lists 4")),
    ("layout.head_dim=sixteen", ("'layout.head_dim' must be an integer",)),
    ("layout.speed=1", ("unknown field 'speed' in layout",)),
    ("layout.activation=swish", ("layout.activation 'swish' is not supported",)),
    ("mbconv.0.kernel=4", ("mbconv[0]", "odd kernel")),
    ("transformer.0.depth=0", ("transformer[0]",)),
]

VALUES = {"256px": "256px", "16.5": 16.5, "true": True, "nan": float("nan"), "two": "two", "inf": float("inf"),
          "abc": "abc", "[48, 4]": [48, 4], "3": 3, "sixteen": "sixteen", "1": 1, "swish": "swish", "4": 4, "0": 0}


def _apply(change: str) -> dict[str, Any]:
    if change.startswith("-"):
        return _mutated(change[1:], DELETE)
    if "=" not in change:
        return _mutated(change, 1)
    path, raw = change.split("=", 1)
    if path.startswith("layout."):
        d = xxs_dict()
        d["layout"] = {path.split(".", 1)[1]: VALUES[raw]}
        return d
    return _mutated(path, VALUES[raw])


@pytest.mark.parametrize("change,words", PARSE_ERRORS, ids=[c for c, _ in PARSE_ERRORS])
def test_parse_errors_name_the_field(change: str, words: tuple[str, ...]) -> None:
    with pytest.raises(ArchError) as err:
        Arch.from_dict(_apply(change))
    for w in words:
        assert w in str(err.value), (w, str(err.value))


def test_malformed_json_names_line_and_column(tmp_path: Path) -> None:
    with pytest.raises(ArchError, match=r"malformed: .* at line 1 column"):
        Arch.from_json('{"resolution": 256,, }')
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "resolution": 256\n  "stem_width": 16\n}')
    with pytest.raises(ArchError, match=r"bad.json: arch JSON is malformed.*line 3"):
        Arch.load(bad)


def test_non_object_and_missing_or_binary_files(tmp_path: Path) -> None:
    with pytest.raises(ArchError, match="must be a JSON object"):
        Arch.from_json("[1, 2, 3]")
    with pytest.raises(ArchError, match="not found"):
        Arch.load(tmp_path / "missing.json")
    blob = tmp_path / "blob.json"
    blob.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(ArchError, match="not a text file"):
        Arch.load(blob)


def test_too_many_transformer_stages() -> None:
    d = xxs_dict()
    d["transformer"].append(dict(d["transformer"][-1]))
    d["num_transformer_stages"] = 5
    with pytest.raises(ArchError, match="lists 5 transformer stages but its layout allows at most 4"):
        Arch.from_dict(d)


def test_replace_validates_structure() -> None:
    with pytest.raises(ArchError, match="resolution must be >= 8"):
        paper_arch("xxs").replace(resolution=4)
    with pytest.raises(ArchError, match="MBConv stages"):
        paper_arch("xxs").replace(mbconv=paper_arch("xxs").mbconv[:2])


# ------------------------------------------------------------------ validation against a space
@pytest.mark.parametrize("change,field,allowed", [
    ("transformer.0.width=96", "transformer[0].width = 96", "48, 64"),
    ("mbconv.1.kernel=7", "mbconv[1].kernel = 7", "3, 5"),
    ("mbconv.2.expansion=3", "mbconv[2].expansion = 3", "1, 2"),
    ("transformer.3.heads=8", "transformer[3].heads = 8", "2, 3, 4"),
    ("transformer.1.mlp_ratio=4", "transformer[1].mlp_ratio = 4", "1.5, 2"),
    ("head_width=512", "head_width = 512", "1000, 1280"),
    ("stem_width=32", "stem_width = 32", "16, 24"),
    ("resolution=224", "resolution = 224", "256"),
])
def test_value_outside_space_names_field_and_allowed_values(change: str, field: str, allowed: str) -> None:
    path, raw = change.split("=")
    arch = Arch.from_dict(_mutated(path, float(raw) if "." in raw else int(raw)))
    space = SearchSpace.builtin("xxs")
    with pytest.raises(ArchError) as err:
        space.validate(arch)
    assert field in err.value.message and "outside the search space 'xxs'" in err.value.message
    assert err.value.hint == f"allowed values: {allowed}"
    assert not space.contains(arch)


def test_stage_count_outside_space() -> None:
    d = SearchSpace.builtin("xxs").to_dict()
    d["num_transformer_stages"] = [4]
    only_four = SearchSpace.from_dict(d)
    arch = paper_arch("xxs").replace(transformer=paper_arch("xxs").transformer[:3])
    with pytest.raises(ArchError, match="num_transformer_stages = 3 is outside"):
        only_four.validate(arch)


def test_layout_mismatch_names_the_layout_fields() -> None:
    arch = paper_arch("xxs").replace(layout=Layout(head_dim=32, fusion_kernel=3))
    with pytest.raises(ArchError, match="layout differs from the space 'xxs' in head_dim, fusion_kernel"):
        SearchSpace.builtin("xxs").validate(arch)


def test_constraint_violation_and_switching_it_off() -> None:
    space = SearchSpace.builtin("xs")
    t = paper_arch("xs").transformer
    decreasing = paper_arch("xs").replace(transformer=(TransformerStage(96, 4, 4, 1.5),
                                                       TransformerStage(80, 3, 6, 2)) + t[2:])
    with pytest.raises(ArchError, match=r"transformer widths \[96, 80, 144, 168\] decrease"):
        space.validate(decreasing)
    assert space.with_constraint(False).contains(decreasing)


@pytest.mark.parametrize("size", ["xxs", "xs", "s"])
def test_paper_archs_belong_to_their_space(size: str) -> None:
    SearchSpace.builtin(size).validate(paper_arch(size))
