"""Vectorised view of a search space for the coarse stage: archs as rows of choice indices,
exact params/MACs by table lookup, and decoding rows back into `Arch` objects.

10^5 archs are sampled and costed in well under a second: each stage's cost depends only on the
resolution, its input width and its own choices, so per-stage tables (filled once from
`autovit.costs.stage_costs`) summed over stages give exactly `count_params` / `count_macs`.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Sequence

import numpy as np

from autovit.arch import Arch
from autovit.costs import stage_costs
from autovit.space import SearchSpace



class Genome:
    """Column layout: resolution, stem, one per gene field of each MBConv stage, stage count, one
    per gene field of each transformer stage, head. Genes of inactive transformer stages are 0 so
    equal archs have equal rows. A field with one choice is a column of zeros (it draws nothing)."""

    def __init__(self, space: SearchSpace, num_classes: int = 1000) -> None:
        self.space = space
        self.num_classes = num_classes
        self.sizes: list[int] = [len(space.resolution), len(space.stem_width)]
        conv = space.conv_kind  # MBConv or UIB
        att = space.attention_kind  # MobileViT transformer or Mobile MQA
        # The gene fields of each kind, in order; width is always the first.
        self._mb = _MB = conv.field_names
        self._tr = _TR = att.field_names
        for c in space.mbconv:
            self.sizes += [len(getattr(c, n)) for n in _MB]
        self.col_n = len(self.sizes)
        self.sizes.append(len(space.num_transformer_stages))
        self.col_tr = len(self.sizes)
        for c in space.transformer:
            self.sizes += [len(getattr(c, n)) for n in _TR]
        self.col_head = len(self.sizes)
        self.sizes.append(len(space.head_width))
        self._mb_stages = [{idx: conv.make(*(getattr(c, n)[i] for n, i in zip(_MB, idx)))
                            for idx in itertools.product(*(range(len(getattr(c, n))) for n in _MB))}
                           for c in space.mbconv]
        self._tr_stages = [{idx: att.make(*(getattr(c, n)[i] for n, i in zip(_TR, idx)))
                            for idx in itertools.product(*(range(len(getattr(c, n))) for n in _TR))}
                           for c in space.transformer]
        self._tables = self._cost_tables()

    # ------------------------------------------------------------------ columns
    def _mb_cols(self, i: int) -> slice:
        return slice(2 + len(self._mb) * i, 2 + len(self._mb) * (i + 1))

    def _tr_cols(self, i: int) -> slice:
        return slice(self.col_tr + len(self._tr) * i, self.col_tr + len(self._tr) * (i + 1))

    def num_stages(self, genes: np.ndarray) -> np.ndarray:
        return np.asarray(self.space.num_transformer_stages)[genes[:, self.col_n]]

    # ------------------------------------------------------------------ sampling
    def sample(self, n: int, rng: np.random.Generator, max_rounds: int = 100) -> np.ndarray:
        """`n` uniform rows satisfying the space's constraint (rejection, bounded rounds).

        Same distribution as `SearchSpace.sample`: uniform per dimension, conditioned on validity.
        """
        genes = self._draw(n, rng)
        for _ in range(max_rounds):
            bad = ~self.valid(genes)
            if not bad.any():
                return genes
            genes[bad] = self._draw(int(bad.sum()), rng)
        return genes[self.valid(genes)]

    def _draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        genes = np.stack([rng.integers(0, k, size=n) for k in self.sizes], axis=1).astype(np.int16)
        stages = self.num_stages(genes)
        for i in range(len(self.space.transformer)):
            genes[stages <= i, self._tr_cols(i)] = 0
        return genes

    def valid(self, genes: np.ndarray) -> np.ndarray:
        """Rows whose active transformer widths never decrease (when the space demands it)."""
        ok = np.ones(len(genes), dtype=bool)
        if not self.space.nondecreasing_widths:
            return ok
        stages = self.num_stages(genes)
        widths = [np.asarray(c.width)[genes[:, self._tr_cols(i).start]] for i, c in enumerate(self.space.transformer)]
        for i in range(1, len(widths)):
            ok &= (stages <= i) | (widths[i] >= widths[i - 1])
        return ok

    def unique(self, genes: np.ndarray) -> np.ndarray:
        """Distinct rows in a deterministic (sorted) order; one mixed-radix int64 code per row is
        much faster to sort than rows."""
        if int(np.prod([float(k) for k in self.sizes])) >= 2 ** 62:
            return np.unique(genes, axis=0)
        radix = np.cumprod([1] + self.sizes[:0:-1])[::-1].astype(np.int64)
        _, first = np.unique(genes.astype(np.int64) @ radix, return_index=True)
        return genes[first]

    # ------------------------------------------------------------------ decoding
    def decode(self, row: Sequence[int]) -> Arch:
        sp = self.space
        row = [int(v) for v in row]
        mb = tuple(self._mb_stages[i][tuple(row[self._mb_cols(i)])] for i in range(len(sp.mbconv)))
        n = sp.num_transformer_stages[row[self.col_n]]
        tr = tuple(self._tr_stages[i][tuple(row[self._tr_cols(i)])] for i in range(n))
        return Arch(sp.resolution[row[0]], sp.stem_width[row[1]], mb, tr, sp.head_width[row[self.col_head]], sp.layout)

    def decode_many(self, genes: np.ndarray) -> list[Arch]:
        return [self.decode(row) for row in genes.tolist()]

    # ------------------------------------------------------------------ costs
    def _cost_tables(self) -> dict[str, list[np.ndarray]]:
        """Per-stage (params, macs) tables indexed by (resolution, input width, own choices)."""
        sp = self.space
        base = sp.largest()
        n_mb, n_tr_max = len(sp.mbconv), len(sp.transformer)
        stem = np.zeros((2, len(sp.resolution), len(sp.stem_width)), dtype=np.int64)
        for r, s in itertools.product(range(len(sp.resolution)), range(len(sp.stem_width))):
            c = stage_costs(base.replace(resolution=sp.resolution[r], stem_width=sp.stem_width[s]), self.num_classes)[0]
            stem[:, r, s] = c.params, c.macs
        mb_tables = []
        prev_widths = sp.stem_width
        for i, choices in enumerate(sp.mbconv):
            shape = (2, len(sp.resolution), len(prev_widths)) + tuple(len(getattr(choices, n)) for n in self._mb)
            table = np.zeros(shape, dtype=np.int64)
            for r, p in itertools.product(range(len(sp.resolution)), range(len(prev_widths))):
                for idx, stage in self._mb_stages[i].items():
                    arch = self._with_input(base, sp.resolution[r], "mbconv", i, prev_widths[p])
                    arch = arch.replace(mbconv=arch.mbconv[:i] + (stage,) + arch.mbconv[i + 1:])
                    c = stage_costs(arch, self.num_classes)[1 + i]
                    table[(slice(None), r, p) + idx] = c.params, c.macs
            mb_tables.append(table)
            prev_widths = choices.width
        tr_tables = []
        for i, choices in enumerate(sp.transformer):
            shape = (2, len(sp.resolution), len(prev_widths)) + tuple(len(getattr(choices, n)) for n in self._tr)
            table = np.zeros(shape, dtype=np.int64)
            for r, p in itertools.product(range(len(sp.resolution)), range(len(prev_widths))):
                for idx, stage in self._tr_stages[i].items():
                    arch = self._with_input(base, sp.resolution[r], "transformer", i, prev_widths[p])
                    arch = arch.replace(transformer=arch.transformer[:i] + (stage,) + arch.transformer[i + 1:])
                    c = stage_costs(arch, self.num_classes)[1 + n_mb + i]
                    table[(slice(None), r, p) + idx] = c.params, c.macs
            tr_tables.append(table)
            prev_widths = choices.width
        finals = [sp.transformer[n - 1].width if n else sp.mbconv[-1].width for n in range(n_tr_max + 1)]
        max_w = max(len(f) for f in finals)
        head = np.zeros((2, len(sp.resolution), n_tr_max + 1, max_w, len(sp.head_width)), dtype=np.int64)
        for r, n in itertools.product(range(len(sp.resolution)), sp.num_transformer_stages):
            for w, h in itertools.product(range(len(finals[n])), range(len(sp.head_width))):
                if n:
                    tr = base.transformer[:n - 1] + (replace(base.transformer[n - 1],
                                                                         width=sp.transformer[n - 1].width[w]),)
                    arch = base.replace(resolution=sp.resolution[r], transformer=tr, head_width=sp.head_width[h])
                else:  # no transformer stage: the head follows the last conv stage
                    arch = self._with_input(base.replace(transformer=()), sp.resolution[r], "transformer", 0,
                                            sp.mbconv[-1].width[w]).replace(head_width=sp.head_width[h])
                c = stage_costs(arch, self.num_classes)[-1]
                head[:, r, n, w, h] = c.params, c.macs
        return {"stem": [stem], "mbconv": mb_tables, "transformer": tr_tables, "head": [head]}

    @staticmethod
    def _with_input(base: Arch, resolution: int, kind: str, i: int, in_width: int) -> Arch:
        """`base` at `resolution` whose stage before (kind, i) outputs `in_width` channels."""
        arch = base.replace(resolution=resolution)
        if kind == "mbconv" and i == 0:
            return arch.replace(stem_width=in_width)
        if kind == "mbconv" or i == 0:
            j = i - 1 if kind == "mbconv" else len(arch.mbconv) - 1
            prev = arch.mbconv[j]
            mb = arch.mbconv[:j] + (replace(prev, width=in_width),) + arch.mbconv[j + 1:]
            return arch.replace(mbconv=mb)
        prev = arch.transformer[i - 1]
        tr = arch.transformer[:i - 1] + (replace(prev, width=in_width),) + arch.transformer[i:]
        return arch.replace(transformer=tr)

    def costs(self, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact (params, macs) of every row, as `count_params` / `count_macs` would give."""
        t = self._tables
        res = genes[:, 0]
        total = t["stem"][0][:, res, genes[:, 1]].astype(np.int64)
        prev = genes[:, 1]
        for i, table in enumerate(t["mbconv"]):
            cols = genes[:, self._mb_cols(i)]
            total += table[(slice(None), res, prev) + tuple(cols.T)]
            prev = cols[:, 0]
        stages = self.num_stages(genes)
        for i, table in enumerate(t["transformer"]):
            cols = genes[:, self._tr_cols(i)]
            active = stages > i
            total += np.where(active, table[(slice(None), res, prev) + tuple(cols.T)], 0)
            prev = np.where(active, cols[:, 0], prev)
        total += t["head"][0][:, res, stages, prev, genes[:, self.col_head]]
        return total[0], total[1]
