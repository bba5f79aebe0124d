"""Block kinds: one module per kind (stem, MBConv, UIB, MobileViT transformer stage, Mobile MQA, head).

`STAGE_KINDS` lists the searched stage kinds in network order; generic code iterates over it and
over each kind's `fields`. Adding a kind: write its module (gene, choices, costs, signatures; see
`autovit.blocks.mbconv`), import it here and add it to `STAGE_KINDS` (docs/architecture.md).
"""

from typing import Any, Mapping

from autovit.blocks import stem  # noqa: F401  (registers its latency-table kind first: table order)
from autovit.blocks.base import BlockSig, GeneField, StageCost, StageKind, table_kinds
from autovit.blocks.mbconv import MBCONV, MBConvChoices, MBConvStage
from autovit.blocks.uib import UIB, UIBChoices, UIBStage
from autovit.blocks.mobilevit import TRANSFORMER, TransformerChoices, TransformerStage
from autovit.blocks.mqa import MQA, MQAChoices, MQAStage
from autovit.blocks import head  # noqa: F401,E402  (registers its latency-table kind last)

STAGE_KINDS: tuple[StageKind, ...] = (MBCONV, UIB, TRANSFORMER, MQA)
# Kinds that can fill the conv stage slots of a space (an arch's `mbconv` group) and its attention
# stage slots (an arch's `transformer` group); docs/architecture.md.
CONV_KINDS: tuple[StageKind, ...] = (MBCONV, UIB)
ATTENTION_KINDS: tuple[StageKind, ...] = (TRANSFORMER, MQA)


def stage_kind(name: str) -> StageKind:
    """The stage kind called `name` ('mbconv', 'transformer')."""
    for kind in STAGE_KINDS:
        if kind.name == name:
            return kind
    raise KeyError(name)


def listed_kinds(data: Mapping[str, Any], what: str, error: type[Exception]) -> tuple[StageKind, StageKind]:
    """The (conv, attention) stage kinds an arch or space mapping lists its stages under (MBConv
    and MobileViT when it names neither); `error` (naming `what`) when it lists two of a group."""
    chosen = []
    for group, default, label in ((CONV_KINDS, MBCONV, "conv"), (ATTENTION_KINDS, TRANSFORMER, "attention")):
        keys = [k.name for k in group if k.name in data]
        if len(keys) > 1:
            raise error(f"{what} lists both {keys[0]!r} and {keys[1]!r} {label} stages",
                        hint=f"{what}'s {label} stages are all of one kind: keep one of the lists")
        chosen.append(next((k for k in group if k.name in data), default))
    return chosen[0], chosen[1]


def kind_of(stage_or_choices: object) -> StageKind:
    """The stage kind of a gene (`MBConvStage`, `UIBStage`, ...) or of a slot's choices."""
    for kind in STAGE_KINDS:
        if isinstance(stage_or_choices, (kind.gene, kind.choices)):
            return kind
    raise TypeError(f"not a stage gene or choices: {stage_or_choices!r}")


__all__ = ["ATTENTION_KINDS", "BlockSig", "CONV_KINDS", "MQA", "MQAChoices", "MQAStage", "GeneField", "MBCONV", "UIB", "UIBChoices", "UIBStage", "kind_of", "listed_kinds", "MBConvChoices", "MBConvStage", "STAGE_KINDS", "StageCost", "StageKind",
           "TRANSFORMER", "TransformerChoices", "TransformerStage", "stage_kind", "table_kinds"]
