"""Issue 6 head-to-head on CIFAR-10: the searched AutoViT model vs timm's mobilevit_xxs and
mobilenetv2_100, trained on the same images for the same number of steps with the same recipe.

The searched model is the winner of benchmarks/search_cifar10.py (the pipeline's search stage on
the supernet of benchmarks/supernet_cifar10.py and the XXS latency table of this CPU). Each model is
trained from scratch with autovit's trainer and the `cifar-cpu` recipe (AdamW, cosine with
warm-up, label smoothing, random-resized crops and flips) for `--steps` steps of `--batch-size`
images at `--resolution` px; top-1 is on the CIFAR-10 test split (10,000 images). The searched
model is also reported as the pipeline hands it over: inherited supernet weights after BN
recalibration, with no training of its own.

Latency: onnxruntime, batch 1, 1 thread, pinned, all models timed in interleaved rounds, at 256 px
(the latency table's resolution, where the search budget was set) and at the training resolution.
Predicted latency comes from the latency model (table units converted to ms of this session
through the table's reference network, as the search does).

Each model's training result is cached in --run-dir/<name>.json, so the phases can run separately
(e.g. one model per core) and an interrupted run resumes:

    taskset -c 1 .venv/bin/python benchmarks/cifar10_e2e.py train --model mobilevit_xxs
    taskset -c 1 .venv/bin/python benchmarks/cifar10_e2e.py train --model mobilenetv2_100
    .venv/bin/python benchmarks/cifar10_e2e.py train --model autovit
    .venv/bin/python benchmarks/cifar10_e2e.py report
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from _log import LogConsole, log  # benchmarks/_log.py

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BASELINES = ("mobilevit_xxs", "mobilenetv2_100")


def searched_arch(path: Path):
    """The arch of the search benchmark's winner (`best.json` holds it under "arch")."""
    from autovit.arch import Arch

    if not path.is_file():
        sys.exit(f"error: {path} not found; run benchmarks/search_cifar10.py first (or pass --arch)")
    data = json.loads(path.read_text())
    return Arch.from_dict(data.get("arch", data))


def train_config(args: argparse.Namespace):
    from autovit.train.config import preset

    return preset("cifar-cpu").replace(data_dir=args.data_dir, resolution=args.resolution, batch_size=args.batch_size,
                                       max_steps=args.steps, val_size=5000, ckpt_every_steps=0,
                                       eval_every_epoch=False, progress=False, tensorboard=False,
                                       log_every_steps=10, seed=args.seed, threads=args.threads)


def build_model(name: str, arch, num_classes: int) -> torch.nn.Module:
    """The searched AutoViT (`arch`) or a timm baseline, with random weights."""
    if name == "autovit":
        from autovit.model import AutoViT

        return AutoViT(arch, num_classes=num_classes)
    import timm

    return timm.create_model(name, pretrained=False, num_classes=num_classes)


def cmd_train(args: argparse.Namespace) -> None:
    from autovit.data import build_datasets, eval_loader
    from autovit.io_utils import save_json
    from autovit.supernet.evaluate import evaluate
    from autovit.train.trainer import Trainer, seed_everything

    torch.set_num_threads(args.threads)
    cfg = train_config(args)
    data = build_datasets(cfg)
    seed_everything(args.seed)
    arch = searched_arch(args.arch) if args.model == "autovit" else None
    model = build_model(args.model, arch, data.num_classes)
    log(f"{args.model}: {sum(p.numel() for p in model.parameters()):,} params, {args.steps} steps of {args.batch_size}")
    trainer = Trainer(cfg, model, data, console=LogConsole())
    t0 = time.time()
    trainer.fit()
    train_s = time.time() - t0
    test = evaluate(model, eval_loader(data.test, 250))
    row = {"name": args.model, "steps": trainer.step, "images": trainer.step * args.batch_size,
           "train_s": round(train_s, 1), "threads": args.threads, "test_top1": test["top1"], "test_top5": test["top5"],
           "final_loss": trainer.history[-1].loss if trainer.history else None, "config": cfg.to_dict()}
    if arch is not None:
        row["arch"] = arch.to_dict()
    save_json(args.run_dir / f"{args.model}.json", row)
    log(f"{args.model}: test top-1 {test['top1']:.2f}% after {trainer.step} steps ({train_s / 60:.1f} min)")


def inherited_top1(args: argparse.Namespace) -> dict | None:
    """Test top-1 of the searched arch with inherited supernet weights (BN recalibrated)."""
    from autovit.data import build_datasets, eval_loader
    from autovit.train.checkpoint import load_supernet_checkpoint
    from autovit.supernet.bn_calibration import calibration_batches
    from autovit.supernet.evaluate import SubnetEvaluator

    ckpt = args.supernet / "supernet.pt"
    if not ckpt.is_file():
        return None
    data = build_datasets(train_config(args))
    loaded = load_supernet_checkpoint(ckpt)
    evaluator = SubnetEvaluator(loaded.supernet, calibration_batches(data.train_eval, args.calib_images),
                                eval_loader(data.test, 250))
    return evaluator.evaluate(searched_arch(args.arch))


def cmd_report(args: argparse.Namespace) -> None:
    from autovit.bench import bench_models, versions
    from autovit.io_utils import atomic_write_text, save_json
    from autovit.latency.predictor import LatencyModel
    from autovit.latency.profile import reference_arch

    torch.set_num_threads(args.threads)
    rows = {}
    for name in ("autovit", *BASELINES):
        path = args.run_dir / f"{name}.json"
        if not path.is_file():
            sys.exit(f"error: {path} missing; run `cifar10_e2e.py train --model {name}` first")
        rows[name] = json.loads(path.read_text())
    if len({r["images"] for r in rows.values()}) != 1:
        sys.exit("error: the models were trained on different numbers of images; retrain with the same --steps")
    arch = searched_arch(args.arch)
    model = LatencyModel.load(args.lut)
    files = {"autovit": args.run_dir / "searched_arch.json", "reference": args.run_dir / "reference_arch.json"}
    arch.save(files["autovit"])
    reference_arch(model.table.resolution).save(files["reference"])
    by_path = {str(v): k for k, v in files.items()}
    latency: dict[int, dict[str, dict]] = {}
    machine: dict = {}
    for res in (model.table.resolution, args.resolution):
        log(f"timing at {res}px")
        names = [str(files["autovit"]), *BASELINES] + ([str(files["reference"]), "autovit_xxs"]
                                                        if res == model.table.resolution else [])
        report = bench_models(names, resolution=res, threads=1, rounds=args.rounds, num_classes=10,
                              reference=BASELINES[0])
        latency[res] = {by_path.get(r.name, r.name): r.to_dict() for r in report.rows}
        machine = report.machine
    lut_res = model.table.resolution
    # table units -> ms of this session, through the table's reference network timed alongside
    predicted_table = float(model.predict([arch.replace(resolution=lut_res)])[0])
    predicted_ms = predicted_table * latency[lut_res]["reference"]["median_ms"] / model.table.reference_ms
    inh = inherited_top1(args)
    result = {
        "benchmark": "cifar10_e2e",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine, "versions": versions(),
        "recipe": rows["autovit"]["config"], "images_per_model": rows["autovit"]["images"],
        "searched_arch": arch.to_dict(), "searched_arch_key": arch.key(),
        "lut": os.path.relpath(args.lut, ROOT),
        "lut_resolution": lut_res,
        "predicted_ms_table_units": predicted_table, "predicted_ms": predicted_ms,
        "inherited": inh, "models": {},
        "paper_xxs_latency_ms": latency[lut_res]["autovit_xxs"]["median_ms"],
    }
    for name, r in rows.items():
        hi, lo = latency[lut_res][name], latency[args.resolution][name]
        result["models"][name] = {
            "test_top1": r["test_top1"], "test_top5": r["test_top5"], "train_s": r["train_s"], "steps": r["steps"],
            "params": hi["params"], "macs_lut_res": hi["macs"], "macs_train_res": lo["macs"],
            "latency_ms_lut_res": hi["median_ms"], "latency_ratio_lut_res": hi["ratio_to_ref"],
            "latency_ms_train_res": lo["median_ms"], "latency_ratio_train_res": lo["ratio_to_ref"]}
    out = Path(args.out)
    save_json(out.with_suffix(".json"), result)
    atomic_write_text(out.with_suffix(".md"), render_markdown(result, args.resolution))
    log(f"wrote {out.with_suffix('.md')}")


def render_markdown(r: dict, res: int) -> str:
    cfg, hi = r["recipe"], r["lut_resolution"]
    lines = [
        "# CIFAR-10 head-to-head (issue 6)", "",
        f"- Command: `{r['command']}` (after the three `train` runs)",
        f"- Machine: {r['machine'].get('cpu', '')}; latency: onnxruntime {r['versions'].get('onnxruntime', '')}, "
        f"batch 1, 1 thread, pinned, all models interleaved in one session per resolution; torch {r['versions'].get('torch', '')}, timm {r['versions'].get('timm', '')}",
        f"- Same recipe for all (autovit `cifar-cpu` preset: AdamW lr {cfg['lr']}, weight decay "
        f"{cfg['weight_decay']}, cosine, {cfg['warmup_steps']} warm-up steps, label smoothing "
        f"{cfg['label_smoothing']}, crop scale {cfg['crop_scale']}), from scratch, "
        f"{r['images_per_model']:,} training images each ({cfg['batch_size']} x "
        f"{r['images_per_model'] // cfg['batch_size']} steps) at {cfg['resolution']} px; top-1 on the "
        "10,000-image test split",
        "- Training: `cifar10_e2e.py train --model NAME` for each model, one torch thread pinned to one core "
        "(the other core ran other benchmark jobs, so training times are indicative only)",
        f"- Searched arch (winner of benchmarks/search_cifar10.py): `{r['searched_arch_key']}`", "",
        f"| model | top-1 (%) | params (M) | MACs @{res} (M) | MACs @{hi} (M) | latency @{res} (ms) "
        f"| latency @{hi} (ms) | @{hi} vs mobilevit_xxs | predicted @{hi} (ms) | train time (min) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, e in r["models"].items():
        label = "AutoViT searched (ours)" if name == "autovit" else f"{name} (timm)"
        pred = f"{r['predicted_ms']:.2f}" if name == "autovit" else "-"
        lines.append(f"| {label} | {e['test_top1']:.2f} | {e['params'] / 1e6:.3f} | {e['macs_train_res'] / 1e6:.1f} | "
                     f"{e['macs_lut_res'] / 1e6:.1f} | {e['latency_ms_train_res']:.2f} | {e['latency_ms_lut_res']:.2f} | "
                     f"{e['latency_ratio_lut_res']:.3f} | {pred} | {e['train_s'] / 60:.1f} |")
    if r["inherited"]:
        lines += ["", f"The searched model as the pipeline hands it over (inherited supernet weights, BN "
                      f"recalibrated, no training of its own): test top-1 {r['inherited']['top1']:.2f}%."]
    p = r["models"]["autovit"]["test_top1"] / 100
    sd = 100 * (p * (1 - p) / 10_000) ** 0.5
    lines += ["", f"Noise: one top-1 figure on the 10,000 test images has a binomial standard deviation of about "
                  f"{sd:.1f} points; latency ratios come from one interleaved session per resolution."]
    lines += ["", f"Predicted latency: the latency model ({r['lut']}) in table units, converted to this session's "
                  f"ms through the table's reference network timed in the same rounds. For scale, the paper's "
                  f"AutoViT-XXS (Table 5) measured {r['paper_xxs_latency_ms']:.2f} ms at {hi} px in the same session.",
              ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("phase", choices=("train", "report"))
    ap.add_argument("--model", choices=("autovit", *BASELINES), help="train: which model")
    ap.add_argument("--arch", type=Path, default=ROOT / "runs" / "search_cifar10" / "search" / "best.json")
    ap.add_argument("--supernet", type=Path, default=ROOT / "runs" / "supernet_cifar10")
    ap.add_argument("--lut", type=Path, default=ROOT / "luts" / "xxs_ort_1t_256.json")
    ap.add_argument("--data-dir", default="/work/shared/data/cifar10")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--calib-images", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "cifar10_e2e")
    ap.add_argument("--out", default=str(RESULTS / "cifar10_e2e"))
    args = ap.parse_args()
    args.run_dir.mkdir(parents=True, exist_ok=True)
    if args.phase == "train":
        if not args.model:
            ap.error("train needs --model")
        cmd_train(args)
    else:
        cmd_report(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
