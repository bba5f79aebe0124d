"""`LatencyModel`: the paper's Eq. 6 latency model on top of a lookup table.

    L(arch) = sum_k a_k * (table cost of the arch's blocks of kind k)      (operator terms l_i o_i)
            [+ m * GMACs]                                                   (optional operator cost)
            + b_1 * #MBConv blocks + b_2 * #transformer layers + b_3 * #transformer stages
            + c                                                             (design terms t_j d_j)

All terms are in units of the reference network's latency (table entries are ratios to an
interleaved reference), so a table stays valid while the machine's absolute speed drifts;
milliseconds are ratio * the reference's time (stored at profiling, or updated with
`with_reference_ms`). Coefficients are fitted with non-negative least squares on measured whole
subnets; `fit_select` picks the term set (per-kind or single table scale, with or without
the MACs term) by leave-one-out error. With no fit (`coef=None`) the model is the raw table sum.

Prediction is batched: every stage's contribution is a scalar that depends only on (stage slot,
input width, stage choices), so it is computed once and cached; an arch then costs ~10 dict
lookups (>= 1e5 archs/s).
"""

from __future__ import annotations

from operator import attrgetter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from autovit.arch import Arch
from autovit.costs import count_macs, stage_costs
from autovit.errors import AutovitError
from autovit.blocks import MBCONV, TRANSFORMER, MBConvStage, TransformerStage, kind_of
from autovit.blocks.base import down
from autovit.latency.blocks import (KINDS, arch_blocks, head_sig, mbconv_stage_blocks, stage_sides, stem_sig,
                                    transformer_stage_blocks)
from autovit.latency.lut import LatencyTable, LatencyTableError

TABLE_TERMS = tuple(f"table_{k}" for k in KINDS)
DESIGN_TERMS = ("mbconv_blocks", "transformer_layers", "transformer_stages", "intercept")
FEATURES = TABLE_TERMS + DESIGN_TERMS
# The simpler variant: one scale for the whole table sum (the ablation of per-kind scales).
SIMPLE_FEATURES = ("table",) + DESIGN_TERMS
# Optional operator-cost term: total multiply-accumulates (GMACs, closed form from autovit.costs).
MACS_TERM = "gmacs"
CANDIDATE_TERMS = (FEATURES, SIMPLE_FEATURES, SIMPLE_FEATURES + (MACS_TERM,), FEATURES + (MACS_TERM,))
RAW_SUM = {f: 1.0 for f in TABLE_TERMS}


def table_terms(table: LatencyTable) -> tuple[str, ...]:
    """The Eq. 6 terms that apply to `table`: one scale per block kind it holds (a paper space has no
    `uib` / `mqa` blocks, an mnv4 space no `tfixed` / `attn` / `mlp` ones), then the design terms."""
    kinds = {key.partition(":")[0] for key in table.entries}
    return tuple(t for t in TABLE_TERMS if t.removeprefix("table_") in kinds) + DESIGN_TERMS


def arch_features(table: LatencyTable, arch: Arch) -> dict[str, float]:
    """The Eq. 6 terms of one arch (reference-ratio units for the table terms)."""
    feats = dict.fromkeys(FEATURES, 0.0)
    for sig, count in arch_blocks(arch, table.num_classes):
        feats[f"table_{sig.kind}"] += count * table.cost(sig)
    feats["mbconv_blocks"] = float(sum(s.depth for s in arch.mbconv))
    feats["transformer_layers"] = float(sum(s.depth for s in arch.transformer))
    feats["transformer_stages"] = float(arch.num_transformer_stages)
    feats["intercept"] = 1.0
    feats[MACS_TERM] = count_macs(arch, table.num_classes) / 1e9
    return feats


def feature_matrix(table: LatencyTable, archs: Sequence[Arch], names: Sequence[str] = FEATURES) -> np.ndarray:
    rows = []
    for a in archs:
        f = arch_features(table, a)
        f["table"] = sum(f[t] for t in TABLE_TERMS)
        rows.append([f[n] for n in names])
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(names))


def fit_nnls(X: np.ndarray, y: np.ndarray, relative: bool = True) -> np.ndarray:
    """Non-negative least squares; `relative` weights rows by 1/y (minimises relative error)."""
    from scipy.optimize import nnls

    w = 1.0 / np.asarray(y) if relative else np.ones(len(y))
    coef, _ = nnls(X * w[:, None], np.asarray(y) * w)
    return coef


class LatencyModel:
    """Predicts batch-1 latency (ms) of archs from a lookup table plus fitted Eq. 6 terms."""

    def __init__(self, table: LatencyTable, coef: dict[str, float] | None = None,
                 reference_ms: float | None = None) -> None:
        self.table = table
        self.coef = dict(coef) if coef is not None else dict(RAW_SUM)
        unknown = set(self.coef) - set(FEATURES) - {"table", MACS_TERM}
        if unknown:
            raise LatencyTableError(f"latency model has unknown terms {sorted(unknown)}")
        self.reference_ms = float(reference_ms if reference_ms is not None else table.reference_ms)
        self.layout = table.layout
        self._mb_sides, self._tr_sides = stage_sides(self, table.resolution)
        self._cache: dict[str, Any] = {}

    # ---------------------------------------------------------------- identity
    @property
    def space_name(self) -> str:
        return self.table.space

    @property
    def fingerprint(self) -> dict[str, Any]:
        return self.table.fingerprint

    @property
    def fitted(self) -> bool:
        return self.table.model is not None or self.coef != RAW_SUM

    def with_reference_ms(self, reference_ms: float) -> "LatencyModel":
        """The same model converting to ms with a freshly measured reference time."""
        return LatencyModel(self.table, self.coef, reference_ms)

    # ---------------------------------------------------------------- I/O
    @classmethod
    def load(cls, path: str | Path) -> "LatencyModel":
        """A model from a table JSON (fitted coefficients in its 'model' section, else the raw sum)."""
        table = LatencyTable.load(path)
        coef = (table.model or {}).get("coef")
        return cls(table, coef)

    def save(self, path: str | Path) -> Path:
        model = dict(self.table.model or {})
        model["coef"] = self.coef
        self.table.model = model
        return self.table.save(path)

    @classmethod
    def fit(cls, table: LatencyTable, archs: Sequence[Arch], measured_ratio: Sequence[float],
            terms: Sequence[str] | None = None) -> "LatencyModel":
        """NNLS fit of the Eq. 6 coefficients on measured subnets (latency / reference latency);
        `terms` defaults to `table_terms(table)`."""
        terms = table_terms(table) if terms is None else terms
        y = np.asarray(measured_ratio, dtype=np.float64)
        if len(archs) != len(y) or len(y) < len(terms):
            raise AutovitError(f"fitting {len(terms)} latency terms needs at least as many measured subnets "
                               f"(got {len(y)} archs / {len(archs)} measurements)")
        coef = fit_nnls(feature_matrix(table, archs, terms), y)
        return cls(table, {n: float(c) for n, c in zip(terms, coef)})

    @classmethod
    def fit_select(cls, table: LatencyTable, archs: Sequence[Arch], measured_ratio: Sequence[float],
                   candidates: Sequence[Sequence[str]] | None = None) -> tuple["LatencyModel", dict]:
        """Fits every candidate term set and keeps the one with the lowest leave-one-out MAPE
        (per-kind table scales can overfit a few noisy subnets; one scale, with or without a
        MACs term, are the alternatives). Default candidates: `CANDIDATE_TERMS` restricted to the
        block kinds of `table`."""
        if candidates is None:
            full = table_terms(table)
            candidates = (full, SIMPLE_FEATURES, SIMPLE_FEATURES + (MACS_TERM,), full + (MACS_TERM,))
        y = np.asarray(measured_ratio, dtype=np.float64)
        scores = {}
        for terms in candidates:
            X = feature_matrix(table, archs, terms)
            errs = []
            for i in range(len(y)):
                keep = np.arange(len(y)) != i
                coef = fit_nnls(X[keep], y[keep])
                errs.append(abs(X[i] @ coef - y[i]) / y[i])
            scores["+".join(terms)] = float(np.mean(errs) * 100)
        best = min(candidates, key=lambda t: scores["+".join(t)])
        return cls.fit(table, archs, y, best), {"loo_mape": scores, "chosen": list(best)}

    def table_share(self, archs: Sequence[Arch]) -> float:
        """Mean share of the predicted latency of `archs` that the lookup-table terms give (0 when a fit
        set every table coefficient to zero: the model then ignores the measured blocks)."""
        names = list(self.coef)
        X, c = self.features(archs), np.array([self.coef[n] for n in names])
        total = X @ c
        table = [i for i, n in enumerate(names) if n == "table" or n in TABLE_TERMS]
        if not len(archs) or not table:
            return 0.0
        return float(np.mean(np.divide(X[:, table] @ c[table], total, out=np.zeros_like(total), where=total > 0)))

    # ---------------------------------------------------------------- prediction
    def features(self, archs: Sequence[Arch]) -> np.ndarray:
        """Feature matrix (rows: archs) in the order of `self.coef`."""
        return feature_matrix(self.table, archs, list(self.coef))

    def _check(self, arch: Arch) -> None:
        if arch.layout != self.layout:
            raise LatencyTableError(f"the arch's layout differs from the one the latency table '{self.space_name}' "
                                    "was built for", hint="use a table profiled for the arch's search space")
        if arch.resolution != self.table.resolution:
            raise LatencyTableError(f"the arch is at {arch.resolution}px but the latency table was built at "
                                    f"{self.table.resolution}px",
                                    hint="profile a table at this resolution with `autovit latency profile "
                                         f"--resolution {arch.resolution}`")

    def _scale(self, kind: str) -> float:
        return self.coef.get(f"table_{kind}", self.coef.get("table", 0.0))

    def _macs_value(self, arch: Arch, index: int) -> float:
        """The MACs term of one stage (index into `stage_costs`: stem, MBConv..., transformer..., head)."""
        w = self.coef.get(MACS_TERM, 0.0)
        return w * stage_costs(arch, self.table.num_classes)[index].macs / 1e9 if w else 0.0

    def _stem_value(self, arch: Arch) -> float:
        return (self._scale("stem") * self.table.cost(stem_sig(arch.layout, arch.resolution, arch.stem_width))
                + self._macs_value(arch, 0))

    def _mbconv_value(self, arch: Arch, i: int, cin: int) -> float:
        lay, s = arch.layout, arch.mbconv[i]
        val = sum(n * self.table.cost(sig)
                  for sig, n in mbconv_stage_blocks(lay, cin, s, lay.mbconv_strides[i], self._mb_sides[i]))
        return (self._scale("mbconv") * val + self.coef.get("mbconv_blocks", 0.0) * s.depth
                + self._macs_value(arch, 1 + i))

    def _transformer_value(self, arch: Arch, i: int, cin: int) -> float:
        lay, s = arch.layout, arch.transformer[i]
        val = sum(self._scale(sig.kind) * n * self.table.cost(sig)
                  for sig, n in transformer_stage_blocks(lay, cin, s, lay.transformer_strides[i], self._tr_sides[i]))
        return (val + self.coef.get("transformer_layers", 0.0) * s.depth + self.coef.get("transformer_stages", 0.0)
                + self._macs_value(arch, 1 + len(arch.mbconv) + i))

    def _head_value(self, arch: Arch, cin: int) -> float:
        lay, n_st, t = arch.layout, arch.num_transformer_stages, self.table
        side = (down(self._tr_sides[n_st - 1], lay.transformer_strides[n_st - 1]) if n_st
                else down(self._mb_sides[-1], lay.mbconv_strides[-1]))
        return (self._scale("head") * t.cost(head_sig(lay, cin, arch.head_width, side, t.num_classes))
                + self.coef.get("intercept", 0.0) + self._macs_value(arch, -1))

    def predict_ratio(self, archs: Sequence[Arch]) -> np.ndarray:
        """Latency in units of the reference network's latency."""
        # One cache per stage slot, keyed by plain int/float tuples (hashing the frozen stage
        # dataclasses calls Python code and would halve the throughput).
        if not self._cache:
            self._cache.update(stem={}, head={}, mb=[{} for _ in self._mb_sides], tr=[{} for _ in self._tr_sides])
        stem_c, head_c, mb_c, tr_c = self._cache["stem"], self._cache["head"], self._cache["mb"], self._cache["tr"]
        # Every gene field is in the key (width first: the next stage's input), one C call per stage.
        conv_type, mb_fields = MBConvStage, attrgetter(*MBCONV.field_names)
        att_type, tr_fields = TransformerStage, attrgetter(*TRANSFORMER.field_names)
        out: list[float] = []
        push = out.append
        res, lay = self.table.resolution, self.layout
        mb_slots, tr_slots = list(enumerate(mb_c)), list(enumerate(tr_c))
        for a in archs:
            if a.layout is not lay or a.resolution != res:
                self._check(a)
                lay = a.layout  # equal to the table's: later archs sharing this object skip the compare
            if a.mbconv and type(a.mbconv[0]) is not conv_type:  # a UIB space's archs
                conv_type, mb_fields = type(a.mbconv[0]), attrgetter(*kind_of(a.mbconv[0]).field_names)
            if a.transformer and type(a.transformer[0]) is not att_type:  # an MQA space's archs
                att_type, tr_fields = type(a.transformer[0]), attrgetter(*kind_of(a.transformer[0]).field_names)
            cin = a.stem_width
            total = stem_c.get(cin)
            if total is None:
                total = stem_c[cin] = self._stem_value(a)
            for (i, cache), s in zip(mb_slots, a.mbconv):
                key = (cin, mb_fields(s))
                v = cache.get(key)
                if v is None:
                    v = cache[key] = self._mbconv_value(a, i, cin)
                total += v
                cin = key[1][0]
            for (i, cache), s in zip(tr_slots, a.transformer):
                key = (cin, tr_fields(s))
                v = cache.get(key)
                if v is None:
                    v = cache[key] = self._transformer_value(a, i, cin)
                total += v
                cin = key[1][0]
            key = (len(a.transformer), cin, a.head_width)
            v = head_c.get(key)
            if v is None:
                v = head_c[key] = self._head_value(a, cin)
            push(total + v)
        return np.array(out, dtype=np.float64)

    def predict(self, archs: Sequence[Arch]) -> np.ndarray:
        """Predicted latency in milliseconds (batch 1), one value per arch."""
        return self.predict_ratio(archs) * self.reference_ms

    def predict_one(self, arch: Arch) -> float:
        return float(self.predict([arch])[0])

    def breakdown(self, arch: Arch) -> list[dict[str, Any]]:
        """Per-block contributions (ms) of one arch, for reports."""
        self._check(arch)
        rows = []
        for sig, n in arch_blocks(arch, self.table.num_classes):
            scale = self._scale(sig.kind)
            rows.append({"block": str(sig), "count": n, "ms": n * scale * self.table.cost(sig) * self.reference_ms})
        return rows
