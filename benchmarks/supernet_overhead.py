"""Training-step cost of a subnet inside the supernet vs the same subnet standalone.

For each space, a few subnets (largest, smallest, random) are trained for a few steps both as the
active subnet of a `Supernet` and as the extracted static `AutoViT` (same batch, AdamW, forward +
backward + optimizer step; the supernet step also runs `set_active`). Steps are interleaved and the median per-step time is reported; the
ratio supernet / standalone is the issue's goal metric (<= 1.15). On CPU the clock is process CPU
time (robust on a shared machine); on CUDA wall time with synchronisation.

    taskset -c 0 nice -n 5 .venv/bin/python benchmarks/supernet_overhead.py --device cpu
    .venv/bin/python benchmarks/supernet_overhead.py --device cuda --batch 128 --res 256
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from autovit.space import SearchSpace
from autovit.supernet import Supernet


def step_fn(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
            amp: bool) -> None:
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def timed(fn, device: torch.device) -> float:
    """Seconds of one call: wall time on CUDA; on CPU the process's CPU time, which other jobs on a
    shared machine disturb much less than wall time."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        return time.perf_counter() - t
    t = time.process_time()
    fn()
    return time.process_time() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spaces", default="xxs,xs,s")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--res", type=int, default=64)
    ap.add_argument("--archs", type=int, default=3, help="random subnets besides the largest and smallest")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--amp", action="store_true")
    ap.add_argument("--out", default="benchmarks/results/supernet_overhead.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = []
    for name in args.spaces.split(","):
        space = SearchSpace.builtin(name)
        torch.manual_seed(0)
        net = Supernet(space, num_classes=10).to(device).train()
        rng = random.Random(0)
        archs = [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(args.archs)]
        for tag, arch in zip(["largest", "smallest"] + [f"random{i}" for i in range(args.archs)], archs):
            net.set_active(arch)
            static = net.extract().train()
            opt_s = torch.optim.AdamW(net.parameters(), lr=1e-4)
            opt_t = torch.optim.AdamW(static.parameters(), lr=1e-4)
            x = torch.randn(args.batch, 3, args.res, args.res, device=device)
            y = torch.randint(0, 10, (args.batch,), device=device)
            sup, std = [], []
            for i in range(args.warmup + args.steps):
                # The supernet step includes set_active, as a training loop samples a subnet each step.
                a = timed(lambda: (net.set_active(arch), step_fn(net, opt_s, x, y, args.amp)), device)
                b = timed(lambda: step_fn(static, opt_t, x, y, args.amp), device)
                if i >= args.warmup:
                    sup.append(a)
                    std.append(b)
            row = dict(space=name, subnet=tag, arch=arch.key(), supernet_ms=1e3 * statistics.median(sup),
                       standalone_ms=1e3 * statistics.median(std))
            row["ratio"] = row["supernet_ms"] / row["standalone_ms"]
            rows.append(row)
            print(f"{name:4s} {tag:9s} supernet {row['supernet_ms']:8.1f} ms  standalone "
                  f"{row['standalone_ms']:8.1f} ms  ratio {row['ratio']:.3f}", flush=True)
    ratios = [r["ratio"] for r in rows]
    summary = dict(median_ratio=statistics.median(ratios), max_ratio=max(ratios))
    print(json.dumps(summary))
    meta = dict(machine=platform.processor() or platform.machine(), python=platform.python_version(),
                torch=torch.__version__, device=str(device),
                gpu=torch.cuda.get_device_name() if device.type == "cuda" else None, args=vars(args))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(meta=meta, summary=summary, rows=rows), indent=2) + "\n")


if __name__ == "__main__":
    main()
