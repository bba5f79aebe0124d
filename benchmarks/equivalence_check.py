"""Deterministic behaviour fingerprint of the space / costs / latency / supernet / search code.

Run it before and after a refactor that must not change behaviour, and compare the two JSON files
(they must be identical):

    PYTHONPATH=src python benchmarks/equivalence_check.py --out /tmp/before.json
    ... change the code ...
    PYTHONPATH=src python benchmarks/equivalence_check.py --out /tmp/after.json
    cmp /tmp/before.json /tmp/after.json

It records, with fixed seeds: 200 sampled archs per builtin space (keys, params, MACs, predicted
latency with the committed luts/ tables, a mutation and a crossover of each), the exact cardinality
of each space, the coarse-stage genome sample and its costs, a hash of the forward pass of 5
sampled subnets of the xxs supernet and of their extracted static networks, and the best arch of a
short coarse + evolution search on a synthetic accuracy. Wall time: ~1 min on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from pathlib import Path

import numpy as np
import torch

from autovit.costs import count_macs, count_params
from autovit.latency.predictor import LatencyModel
from autovit.search.config import SearchConfig
from autovit.search.evolution import search
from autovit.search.genome import Genome
from autovit.space import BUILTIN_SPACES, SearchSpace
from autovit.supernet import Supernet

ROOT = Path(__file__).resolve().parents[1]
LUTS = {"xxs": ROOT / "luts" / "xxs_ort_1t_256.json", "s": ROOT / "luts" / "s_ort_1t_256.json"}


def _hash(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().to(torch.float64).numpy().round(6).tobytes()).hexdigest()[:16]


def space_fingerprint(name: str) -> dict:
    space = SearchSpace.builtin(name)
    rng = random.Random(0)
    archs = [space.sample(rng) for _ in range(200)]
    model = LatencyModel.load(LUTS[name]) if name in LUTS else None
    latency = [round(float(v), 9) for v in model.predict(archs)] if model else None
    mrng = random.Random(1)
    mutated = [space.mutate(a, mrng).key() for a in archs]
    crossed = [space.crossover(a, b, mrng).key() for a, b in zip(archs, archs[1:])]
    genome = Genome(space)
    genes = genome.unique(genome.sample(2000, np.random.default_rng(0)))
    gp, gm = genome.costs(genes)
    decoded = genome.decode_many(genes[:50])
    return {
        "cardinality": space.cardinality(),
        "keys": [a.key() for a in archs],
        "params": [count_params(a) for a in archs],
        "macs": [count_macs(a) for a in archs],
        "latency": latency,
        "mutated": mutated,
        "crossed": crossed,
        "genome_rows": len(genes),
        "genome_cost_sum": [int(gp.sum()), int(gm.sum())],
        "genome_decoded": [a.key() for a in decoded],
        "largest": space.largest().key(),
        "smallest": space.smallest().key(),
    }


def supernet_fingerprint() -> dict:
    torch.manual_seed(0)
    net = Supernet("xxs", num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    rng = random.Random(0)
    out = []
    with torch.no_grad():
        for _ in range(5):
            arch = net.sample_active(rng)
            y = net(x)
            z = net.extract(arch).eval()(x)
            out.append({"key": arch.key(), "supernet": _hash(y), "static": _hash(z),
                        "params": net.active_num_params()})
    return {"subnets": out}


def search_fingerprint() -> dict:
    space = SearchSpace.builtin("xxs")
    model = LatencyModel.load(LUTS["xxs"])
    budget = float(np.median(model.predict([space.sample(random.Random(i)) for i in range(20)])))

    def accuracy(arch):  # synthetic, deterministic: grows with capacity, saturating
        return 1.0 - 1.0 / (1.0 + count_params(arch, 10) / 1e6)

    cfg = SearchConfig(latency_budget_ms=budget, coarse_samples=5000, coarse_top_k=10, population=10,
                       generations=3, parents=4, num_classes=10, seed=0)
    result = search(space, accuracy, model, cfg)
    return {"budget_ms": round(budget, 9), "best": result.best.arch.key() if result.best else None,
            "evaluations": result.evaluations}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = {name: space_fingerprint(name) for name in BUILTIN_SPACES}
    result["supernet_xxs"] = supernet_fingerprint()
    result["search_xxs"] = search_fingerprint()
    Path(args.out).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
