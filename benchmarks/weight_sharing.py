"""Weight-sharing efficiency E (paper Eq. 1) and supernet sizes of the builtin spaces.

    .venv/bin/python benchmarks/weight_sharing.py   # writes benchmarks/results/weight_sharing.json
"""

from __future__ import annotations

import json
from pathlib import Path

from autovit.supernet import weight_sharing_stats

if __name__ == "__main__":
    rows = [weight_sharing_stats(name, num_classes=1000).to_dict() for name in ("xxs", "xs", "s")]
    for r in rows:
        print(f"{r['space']:4s} E={r['efficiency']:.4f} layers={r['num_layers']} candidates={r['num_candidates']} "
              f"supernet={r['supernet_params']:,} separate={r['separate_params']:,}")
    out = Path("benchmarks/results/weight_sharing.json")
    out.write_text(json.dumps(rows, indent=2) + "\n")
