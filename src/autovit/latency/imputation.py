"""Measuring a few block variants ("anchors") and imputing the rest from operator counts.

A space has many block variants that differ only in a width, kernel, expansion or head count
(XXS: 132, S: 229). Their in-context costs follow the work they do closely, so per block kind

    cost(sig) = sum_j w_j * x_j(sig)        (x: pointwise MACs, depthwise MACs, tensor elements, 1, ...)

with non-negative weights fitted (relative least squares) on the measured anchors of that kind
predicts the others to within about the timing noise of one in-context measurement (~10%).

MBConv blocks have *knobs* (expansion, kernel): variants of one shape (input and output width,
stride, side) that differ only in a knob. What the operator counts miss about a shape (the
residual add, a stride, memory layout at that width) is shared by its knob variants, so one
variant per shape is measured (the cheapest knob setting) and the others are imputed as the
model's prediction plus that measured sibling's residual. This keeps the subnet-level error at
the level of a fully measured table (docs/latency.md, "Anchors").

Anchors are chosen deterministically: per kind ``per_feature x (number of terms)``, for MBConv
at least one variant per shape plus one more per cost term; the extra ones start
from the largest and smallest block and continue by farthest-point picks in standardised log
features. The stem (two variants) is always measured.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from autovit.errors import AutovitError
from autovit.blocks import mbconv, mobilevit, mqa, uib
from autovit.blocks.base import expand_width
from autovit.latency.blocks import KINDS, BlockSig

# Per kind: the names of the features `block_features` returns, in order (the last is the constant).
FEATURES: dict[str, tuple[str, ...]] = {
    "stem": ("one",),
    "mbconv": ("pointwise_macs", "depthwise_macs", "elements", "one"),
    "uib": ("pointwise_macs", "depthwise_macs", "elements", "one"),
    "mqa": ("dense_macs", "attention_macs", "elements", "one"),
    "tfixed": ("dense_macs", "depthwise_macs", "elements", "one"),
    "attn": ("linear_macs", "attention_macs", "attention_elements", "elements", "one"),
    "mlp": ("linear_macs", "elements", "one"),
    "head": ("pooled_elements", "linear_macs", "one"),
}
DEFAULT_PER_FEATURE = 3
MEASURE_MODES = ("anchors", "all")  # measure the anchors and impute the rest, or measure every block
ALWAYS_MEASURED = ("stem",)
# Per kind: the parameters whose variants are imputed from a measured sibling of the same shape.
KNOBS: dict[str, tuple[str, ...]] = {"mbconv": mbconv.KNOBS, "uib": uib.KNOBS}
# Knobs whose value is imputed but whose presence (0 or not) is part of the shape.
PRESENCE_KNOBS: dict[str, tuple[str, ...]] = {"uib": uib.PRESENCE_KNOBS}


def block_features(sig: BlockSig) -> list[float]:
    """Operator counts of one block variant (see `FEATURES[sig.kind]` for their names)."""
    p = dict(sig.params)
    kind = sig.kind
    if kind in ("mbconv", "uib"):
        c = (mbconv if kind == "mbconv" else uib).sig_counts(sig)
        return [c.dense_macs, c.depthwise_macs, c.elements, 1.0]
    if kind == "mqa":
        c = mqa.sig_counts(sig)
        return [c.dense_macs + c.depthwise_macs, c.attention_macs, c.elements, 1.0]
    if kind == "tfixed":
        f = mobilevit.fixed_counts(int(p["cin"]), int(p["d"]), int(p["s"]), int(p["h"]), p["te"], int(p["lk"]),
                                   int(p["fk"]))
        return [f.dense_macs, f.depthwise_macs, f.elements, 1.0]
    if kind in ("attn", "mlp"):
        d, patch, h = int(p["d"]), int(p["p"]), int(p["h"])
        heads, hd = int(p.get("heads", 1)), int(p.get("hd", 1))
        tokens, area = mobilevit.padded_tokens(h, patch), patch * patch
        layer = mobilevit.layer_counts(d, heads, hd, p.get("r", 1), tokens, area)
        if kind == "mlp":
            hid = expand_width(d, p["r"])
            return [layer.mlp_linear_macs, tokens * (d + hid), 1.0]
        n, inner = tokens / area, heads * hd
        return [layer.attn_linear_macs, layer.attention_macs, area * heads * n * n, tokens * (d + 3 * inner), 1.0]
    if kind == "head":
        cin, w, n = int(p["cin"]), int(p["w"]), int(p["n"])
        return [cin * int(p["h"]) ** 2, cin * w + w * n, 1.0]
    return [1.0]


def shape_of(sig: BlockSig) -> tuple[Any, ...]:
    """The signature without its knobs: variants with equal shapes share a measured residual. A
    knob in `PRESENCE_KNOBS` keeps whether it is 0 in the shape (a UIB kernel of 0 removes a conv)."""
    knobs = KNOBS.get(sig.kind, ())
    flags = tuple((name, bool(sig.get(name))) for name in PRESENCE_KNOBS.get(sig.kind, ()))
    return (sig.kind,) + tuple(kv for kv in sig.params if kv[0] not in knobs) + flags


def _farthest_points(group: Sequence[BlockSig], chosen: list[int], n: int) -> list[int]:
    """Extends `chosen` (indices into `group`) to `n` by farthest-point picks in standardised
    log-feature space; starts from the largest and smallest block when `chosen` is empty."""
    X = np.array([block_features(s)[:-1] for s in group], dtype=np.float64)
    Z = np.log1p(X)
    Z = (Z - Z.mean(0)) / np.where(Z.std(0) > 0, Z.std(0), 1.0)
    chosen = list(chosen)
    if not chosen:
        total = X.sum(1)
        chosen = list(dict.fromkeys([int(np.argmax(total)), int(np.argmin(total))]))
    dist = np.min(((Z[:, None, :] - Z[None, chosen, :]) ** 2).sum(-1), axis=1)
    while len(chosen) < min(n, len(group)):
        dist[chosen] = -1.0
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, ((Z - Z[nxt]) ** 2).sum(-1))
    return chosen


def select_anchors(sigs: Sequence[BlockSig], per_feature: int = DEFAULT_PER_FEATURE) -> list[BlockSig]:
    """The variants to measure (deterministic, independent of the order of `sigs`).

    Stem: all. Other kinds: `per_feature` variants per cost term; for kinds with knobs (MBConv)
    at least the cheapest knob setting of every shape plus one variant per cost term."""
    if per_feature < 1:
        raise AutovitError(f"anchors per feature must be >= 1, got {per_feature}",
                           hint="use the default (3), or measure every block with --blocks all")
    out: list[BlockSig] = []
    for kind in KINDS:
        group = sorted({s for s in sigs if s.kind == kind}, key=str)
        if not group:  # a kind the space does not use (MBConv in a UIB space, UIB in the paper's)
            continue
        n_terms = len(FEATURES[kind])
        if kind in ALWAYS_MEASURED:
            out += group
            continue
        if kind in KNOBS:
            shapes: dict[tuple[Any, ...], list[int]] = {}
            for i, s in enumerate(group):
                shapes.setdefault(shape_of(s), []).append(i)
            base = [min(idx, key=lambda i: sum(block_features(group[i])[:-1])) for idx in shapes.values()]
            picked = _farthest_points(group, sorted(base), max(len(base) + n_terms, per_feature * n_terms))
        else:
            picked = _farthest_points(group, [], per_feature * n_terms)
        out += [group[i] for i in sorted(picked)]
    return out


def blocks_to_measure(sigs: Sequence[BlockSig], measure: str = "anchors",
                      per_feature: int = DEFAULT_PER_FEATURE) -> list[BlockSig]:
    """The signatures a table build times: `select_anchors` for ``"anchors"``, all for ``"all"``."""
    if measure not in MEASURE_MODES:
        raise AutovitError(f"unknown measure mode '{measure}'", hint=f"use one of {', '.join(MEASURE_MODES)}")
    return list(sigs) if measure == "all" else select_anchors(sigs, per_feature)


def fit_kind(sigs: Sequence[BlockSig], costs: Sequence[float]) -> np.ndarray:
    """Non-negative weights of one kind's features, minimising the relative error on `costs`."""
    from scipy.optimize import nnls

    X = np.array([block_features(s) for s in sigs], dtype=np.float64)
    y = np.asarray(costs, dtype=np.float64)
    scale = np.where(X.max(0) > 0, X.max(0), 1.0)
    w = 1.0 / np.maximum(np.abs(y), 1e-6 * max(float(np.abs(y).max()), 1e-12))
    coef, _ = nnls(X / scale * w[:, None], y * w)
    return coef / scale


def impute_entries(entries: Mapping[str, Mapping[str, Any]], sigs: Sequence[BlockSig], reference_ms: float,
                   fingerprint_id: str) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """`entries` (measured, keyed by signature string) completed with imputed entries for every
    signature of `sigs` they lack, plus a report of the per-kind fits.

    Imputed entries carry ``source: imputed`` and ``count: 0``; measured ones keep their fields
    (``source`` defaults to measured)."""
    out = {k: {"source": "measured", **dict(v)} for k, v in entries.items()}
    report: dict[str, Any] = {}
    for kind in KINDS:
        missing = [s for s in sigs if s.kind == kind and str(s) not in out]
        if not missing:
            continue
        measured = [BlockSig.parse(k) for k in out if k.startswith(f"{kind}:")]
        n_feat = len(FEATURES[kind])
        if len(measured) < n_feat:
            raise AutovitError(
                f"cannot impute {len(missing)} '{kind}' blocks (first: {missing[0]}) from {len(measured)} measured "
                f"ones: their cost model has {n_feat} terms and needs at least {n_feat} measured variants",
                hint="measure more variants of this kind (--anchors-per-feature) or every block (--blocks all)")
        coef = fit_kind(measured, [out[str(s)]["ratio_to_ref"] for s in measured])
        pred = np.array([block_features(s) for s in measured]) @ coef
        truth = np.array([out[str(s)]["ratio_to_ref"] for s in measured])
        residuals: dict[tuple[Any, ...], list[float]] = {}
        for s, p, y in zip(measured, pred, truth):
            residuals.setdefault(shape_of(s), []).append(float(y - p))
        for s in missing:
            ratio = float(np.dot(block_features(s), coef))
            entry = {"source": "imputed", "count": 0, "fingerprint": fingerprint_id}
            siblings = residuals.get(shape_of(s)) if kind in KNOBS else None
            if siblings:
                ratio += float(np.mean(siblings))
                entry["from_siblings"] = len(siblings)
            out[str(s)] = {"ratio_to_ref": ratio, "median_ms": ratio * reference_ms, **entry}
        report[kind] = {"features": list(FEATURES[kind]), "coef": coef.tolist(), "measured": len(measured),
                        "imputed": len(missing), "knobs": list(KNOBS.get(kind, ())),
                        "anchor_fit_mape": float(np.mean(np.abs(pred - truth) / np.maximum(np.abs(truth), 1e-12)) * 100)}
    return out, report
