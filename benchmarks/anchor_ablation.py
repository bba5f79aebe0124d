"""Anchors vs every module, without new timing: which anchor rule keeps the latency model accurate.

Reads the every-module table that `benchmarks/latency_validation.py` measured (committed next to
its results) and the fitting and held-out subnet measurements of that run. For each anchor rule it
keeps only the anchors' entries, imputes the rest (`autovit.latency.imputation`), refits Eq. 6 on
the same fitting subnets and scores the same held-out subnets. Deterministic; a few seconds.

    python benchmarks/anchor_ablation.py --space xxs --space s
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from unittest import mock

import numpy as np

from autovit.latency import imputation
from autovit.latency.blocks import BlockSig
from autovit.latency.lut import LatencyTable
from autovit.latency.predictor import LatencyModel
from autovit.latency.validate import error_metrics, fit_data
from autovit.io_utils import atomic_write_text, save_json
from autovit.space import SearchSpace
from latency_validation import held_out_archs

ROOT = Path(__file__).resolve().parents[1]
RULES = {  # name: (anchors per model term, MBConv knob residuals)
    "2 x terms, no knob residuals": (2, False),
    "3 x terms, no knob residuals": (3, False),
    "4 x terms, no knob residuals": (4, False),
    "default: 3 x terms + MBConv knob residuals": (3, True),
    "4 x terms + MBConv knob residuals": (4, True),
}


def score(full: LatencyTable, per_feature: int, knobs: bool, fit_a, fit_y, held, truth) -> dict:
    sigs = [BlockSig.parse(k) for k in full.entries]
    with contextlib.nullcontext() if knobs else mock.patch.dict(imputation.KNOBS, clear=True):
        anchors = imputation.select_anchors(sigs, per_feature)
        entries, _ = imputation.impute_entries({str(s): full.entries[str(s)] for s in anchors}, sigs,
                                               full.reference_ms, "ablation")
    table = LatencyTable.from_dict({**full.to_dict(), "entries": entries, "model": None})
    model, selection = LatencyModel.fit_select(table, fit_a, fit_y)
    return {**error_metrics(model.predict_ratio(held), truth), "modules": len(anchors), "terms": selection["chosen"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", action="append", default=None)
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    out: dict = {}
    for name in args.space or ["xxs", "s"]:
        res = json.loads((args.results / f"latency_validation_{name}.json").read_text())
        full_model = LatencyModel.load(args.results / f"latency_validation_{name}_every_module_table.json")
        full = full_model.table
        fit_a, fit_y = fit_data(full_model)
        v = res["validation"]
        held = held_out_archs(SearchSpace.builtin(name), full_model, v)
        truth = np.asarray(v["measured_ratio"])
        model, _ = LatencyModel.fit_select(full, fit_a, fit_y)
        rows = {"every module measured": {**error_metrics(model.predict_ratio(held), truth),
                                          "modules": len(full.entries)}}
        for rule, (per_feature, knobs) in RULES.items():
            rows[rule] = score(full, per_feature, knobs, fit_a, fit_y, held, truth)
        out[name] = rows
    save_json(args.results / "anchor_ablation.json", out)
    lines = ["# Anchor rules on the same measurements", "",
             "Command: `python benchmarks/anchor_ablation.py` (no timing: it reuses the every-module tables, "
             "fitting subnets and held-out subnets measured by `benchmarks/latency_validation.py`; machine and "
             "versions in `latency_validation_{xxs,s}.md`).", "",
             "| rule | " + " | ".join(f"{n.upper()} modules | {n.upper()} MAPE | within 5% | tau" for n in out) + " |",
             "|---|" + "---|---|---|---|" * len(out)]
    for rule in next(iter(out.values())):
        cells = []
        for rows in out.values():
            r = rows[rule]
            cells.append(f"{r['modules']} | {r['mape']:.2f} | {r['within_5']:.0f} | {r['kendall_tau']:.3f}")
        lines.append(f"| {rule} | " + " | ".join(cells) + " |")
    atomic_write_text(args.results / "anchor_ablation.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
