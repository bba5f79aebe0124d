"""Issue 3 benchmark: train the XXS supernet on CIFAR-10 for a fixed CPU budget, then compare the
ranking of subnets with inherited weights against the same subnets trained alone.

Steps (all on one CPU thread):
1. Supernet training (uniform sampling, Eq. 4-5) for `--steps` steps (default 8000, about 45 minutes
   on one quiet core; a fixed step count, not a time budget, so that a busy machine makes the run
   slower but not different).
2. top-1 on the held-out validation split (5,000 train images; never the test split) with
   inherited weights after BN recalibration, for the largest, the smallest and `--n-random`
   random subnets.
3. `--n-standalone` of them (largest, smallest and random ones) trained alone from scratch with the
   same recipe for `--standalone-steps` steps each (default 900, about 5 minutes; the same count
   for every subnet, so the ranking is not a ranking of speed); top-1 on the same split; Kendall
   tau between the inherited and the standalone ranking.
4. Training-speed ratio: seconds per supernet step with a fixed subnet active / seconds per step of
   the same subnet as a static network (interleaved, median), for the standalone subnets.

Run (about 75 minutes on one quiet core):
    taskset -c 0 nice -n 5 .venv/bin/python benchmarks/supernet_cifar10.py \
        --data-dir /work/shared/data/cifar10 --out runs/supernet_cifar10
"""

from __future__ import annotations

import argparse
import copy
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import torch

from autovit.costs import count_macs, count_params
from autovit.data import build_datasets, eval_loader
from autovit.io_utils import atomic_write_text, save_json
from autovit.model import AutoViT
from autovit.space import SearchSpace
from autovit.supernet import Supernet
from autovit.supernet.evaluate import SubnetEvaluator, evaluate
from autovit.train.config import preset
from autovit.train.trainer import Trainer, seed_everything

from _log import LogConsole, log  # benchmarks/_log.py


def pick_archs(space: SearchSpace, n_random: int, seed: int) -> list[tuple[str, object]]:
    rng = random.Random(seed)
    archs = [("largest", space.largest()), ("smallest", space.smallest())]
    seen = {a.key() for _, a in archs}
    while len(archs) < n_random + 2:
        arch = space.sample(rng)
        if arch.key() not in seen:
            seen.add(arch.key())
            archs.append((f"random{len(archs) - 1}", arch))
    return archs


def step_seconds(trainer: Trainer, arch, images, target) -> float:
    t0 = time.perf_counter()
    trainer.train_step(images, target, archs=[arch])
    return time.perf_counter() - t0


def speed_ratio(supernet: Supernet, arch, cfg, data, rounds: int) -> dict:
    """Median s/step of the supernet with `arch` active vs the static subnet, interleaved."""
    sup = Trainer(cfg.replace(max_steps=1000), copy.deepcopy(supernet), data)
    alone = Trainer(cfg.replace(max_steps=1000), AutoViT(arch, num_classes=data.num_classes), data)
    images, target = next(iter(sup.loader))
    step_seconds(sup, arch, images, target), step_seconds(alone, None, images, target)  # warm-up
    s_sup, s_alone = [], []
    for _ in range(rounds):
        s_sup.append(step_seconds(sup, arch, images, target))
        s_alone.append(step_seconds(alone, None, images, target))
    m_sup, m_alone = statistics.median(s_sup), statistics.median(s_alone)
    return {"supernet_step_s": m_sup, "standalone_step_s": m_alone, "ratio": m_sup / m_alone}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default="/work/shared/data/cifar10")
    ap.add_argument("--out", default="runs/supernet_cifar10", help="run directory (checkpoints, supernet.pt)")
    ap.add_argument("--results", default="benchmarks/results/supernet_cifar10", help="results path without suffix")
    ap.add_argument("--space", default="xxs")
    ap.add_argument("--steps", type=int, default=8000, help="supernet training steps")
    ap.add_argument("--standalone-steps", type=int, default=900, help="training steps of each standalone subnet")
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--n-random", type=int, default=10)
    ap.add_argument("--n-standalone", type=int, default=5)
    ap.add_argument("--calib-images", type=int, default=1024)
    ap.add_argument("--speed-rounds", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--note", default="", help="a line about the machine's state for the report")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    wall0 = time.time()
    command = " ".join([Path(sys.executable).name, *sys.argv])

    cfg = preset("cifar-cpu").replace(data_dir=args.data_dir, resolution=args.resolution, batch_size=args.batch_size,
                                      max_steps=args.steps, val_size=5000,
                                      calib_images=args.calib_images, ckpt_every_steps=200, eval_every_epoch=False,
                                      progress=False, tensorboard=True, log_every_steps=10, seed=args.seed,
                                      threads=args.threads)
    data = build_datasets(cfg)
    log(f"data: {len(data.train)} train / {len(data.val)} val images at {args.resolution}px")
    space = SearchSpace.builtin(args.space)
    out = Path(args.out)

    # 1. supernet training --------------------------------------------------------------
    seed_everything(args.seed)
    supernet = Supernet(space, num_classes=data.num_classes)
    trainer = Trainer(cfg, supernet, data, out_dir=out, console=LogConsole())
    if (out / "checkpoints" / "last.pt").is_file():
        trainer.resume(out / "checkpoints" / "last.pt")
    log(f"supernet training: {args.steps} steps, supernet params {supernet.num_params():,}")
    trainer.fit()
    log(f"supernet: {trainer.step} steps in {trainer.elapsed_s:.0f}s "
        f"({trainer.step * args.batch_size / len(data.train):.2f} epochs)")

    # 2. inherited accuracy ------------------------------------------------------------------
    val = eval_loader(data.val, 250)
    evaluator = SubnetEvaluator(supernet, trainer.calibration_batches(), val)
    archs = pick_archs(space, args.n_random, args.seed + 1)
    rows = []
    for name, arch in archs:
        t0 = time.perf_counter()
        m = evaluator.evaluate(arch)
        rows.append({"name": name, "arch": arch.to_dict(), "key": arch.key(),
                     "params": count_params(arch, data.num_classes),
                     "macs": count_macs(arch.replace(resolution=args.resolution), data.num_classes),
                     "inherited_top1": m["top1"], "inherited_top5": m["top5"], "inherited_loss": m["loss"]})
        log(f"inherited {name}: top-1 {m['top1']:.2f}% ({time.perf_counter() - t0:.0f}s)")

    # 3. standalone training -------------------------------------------------------------------
    chosen = [0, 1] + list(range(2, 2 + max(args.n_standalone - 2, 0)))
    chosen = chosen[: args.n_standalone]
    speed = []
    for i in chosen:
        name, arch = archs[i]
        seed_everything(args.seed)
        model = AutoViT(arch, num_classes=data.num_classes)
        alone = Trainer(cfg.replace(max_steps=args.standalone_steps, ckpt_every_steps=0, tensorboard=False),
                        model, data, out_dir=out / "standalone" / name, console=LogConsole())
        alone.fit()
        m = evaluate(model, val)
        rows[i].update(standalone_top1=m["top1"], standalone_top5=m["top5"], standalone_steps=alone.step,
                       standalone_train_s=round(alone.elapsed_s, 1))
        log(f"standalone {name}: top-1 {m['top1']:.2f}% after {alone.step} steps")
        sp = speed_ratio(supernet, arch, cfg, data, args.speed_rounds)
        speed.append({"name": name, **sp})
        rows[i]["speed"] = sp
        log(f"speed {name}: supernet {sp['supernet_step_s']:.3f}s/step, alone {sp['standalone_step_s']:.3f}s/step, "
            f"ratio {sp['ratio']:.3f}")

    # 4. ranking ----------------------------------------------------------------------------------------
    from scipy.stats import kendalltau, spearmanr

    pairs = [(r["inherited_top1"], r["standalone_top1"]) for r in rows if "standalone_top1" in r]
    tau = kendalltau([p[0] for p in pairs], [p[1] for p in pairs])
    rho = spearmanr([p[0] for p in pairs], [p[1] for p in pairs])
    ratios = [s["ratio"] for s in speed]
    result = {
        "benchmark": "supernet_cifar10",
        "command": command,
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "torch_threads": args.threads, "cpu_affinity": sorted(__import__("os").sched_getaffinity(0))},
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "timm": __import__("timm").__version__, "numpy": __import__("numpy").__version__},
        "config": cfg.to_dict(),
        "space": args.space,
        "supernet_params": supernet.num_params(),
        "supernet_steps": trainer.step,
        "supernet_train_s": round(trainer.elapsed_s, 1),
        "supernet_epochs": round(trainer.step * args.batch_size / len(data.train), 3),
        "eval_split": f"validation (held out from train: {len(data.val)} images, seed {cfg.val_seed})",
        "calib_images": args.calib_images,
        "subnets": rows,
        "kendall_tau": None if tau.statistic != tau.statistic else float(tau.statistic),
        "kendall_p": None if tau.pvalue != tau.pvalue else float(tau.pvalue),
        "spearman_rho": None if rho.statistic != rho.statistic else float(rho.statistic),
        "speed_ratio_median": statistics.median(ratios) if ratios else None,
        "speed_ratio_max": max(ratios) if ratios else None,
        "checkpoint": str((out / "supernet.pt").resolve()),
        "wall_time_s": round(time.time() - wall0, 1),
        "note": args.note,
    }
    results = Path(args.results)
    save_json(results.with_suffix(".json"), result)
    atomic_write_text(results.with_suffix(".md"), render_markdown(result))
    log(f"done in {result['wall_time_s']:.0f}s: kendall tau {result['kendall_tau']}, "
        f"speed ratio median {result['speed_ratio_median']}")
    return 0


def render_markdown(r: dict) -> str:
    lines = [
        "# Supernet training on CIFAR-10 (issue 3)", "",
        f"- Command: `{r['command']}`",
        f"- Machine: {r['machine']['platform']}, {r['machine']['processor']}, torch threads "
        f"{r['machine']['torch_threads']}, CPUs {r['machine']['cpu_affinity']}. {r.get('note', '')}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in r["versions"].items()),
        f"- Wall time: {r['wall_time_s'] / 60:.1f} min",
        f"- Supernet `{r['space']}` ({r['supernet_params']:,} params): {r['supernet_steps']} steps "
        f"({r['supernet_epochs']} epochs) in {r['supernet_train_s'] / 60:.1f} min of training, "
        f"uniform sampling, {r['config']['resolution']}px, batch {r['config']['batch_size']}",
        f"- Accuracy on the {r['eval_split']}; inherited weights after BN recalibration on "
        f"{r['calib_images']} training images", "",
        "| subnet | params | inherited top-1 (%) | standalone top-1 (%) | standalone steps | speed ratio |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in r["subnets"]:
        alone = f"{row['standalone_top1']:.2f}" if "standalone_top1" in row else ""
        steps = str(row.get("standalone_steps", ""))
        ratio = f"{row['speed']['ratio']:.3f}" if "speed" in row else ""
        lines.append(f"| {row['name']} | {row['params']:,} | {row['inherited_top1']:.2f} | {alone} | {steps} | {ratio} |")
    tau = r["kendall_tau"]
    lines += ["",
              f"- Kendall tau (inherited vs standalone, {sum('standalone_top1' in x for x in r['subnets'])} subnets): "
              f"{'n/a' if tau is None else f'{tau:.3f}'} (p = {r['kendall_p']}); Spearman rho {r['spearman_rho']}",
              f"- Training-speed ratio supernet step / standalone step (median over subnets): "
              f"{r['speed_ratio_median']:.3f} (max {r['speed_ratio_max']:.3f}; goal <= 1.15)"
              if r["speed_ratio_median"] is not None else "- Speed ratio: n/a",
              f"- Supernet checkpoint (not in git): `{r['checkpoint']}`", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
