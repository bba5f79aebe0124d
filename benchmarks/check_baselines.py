"""Check that the timm baselines of the Pareto benchmark are benchable: built (random weights), run,
reparameterized and exported to ONNX at each resolution, exactly as `autovit bench` does it.

Per model and resolution it records what `autovit bench --no-latency` reports (params, MACs,
modules reparameterized, built for the resolution, or skipped with the reason), that the
reparameterized model computes the unreparameterized one's function (BN statistics randomized so
the fusion is exercised; scale-relative max difference), and that the ONNX export of the deployed
model runs in onnxruntime with the same output. No timing. Writes
benchmarks/results/check_baselines.{json,md}.

    .venv/bin/python benchmarks/check_baselines.py                 # 11 models x 224, 256 (a few minutes)
    .venv/bin/python benchmarks/check_baselines.py --models repvit_m0_9 --resolutions 224
"""

from __future__ import annotations

import argparse
import copy
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from autovit.bench import bench_models, reparameterize, short_reason, versions
from autovit.io_utils import atomic_write_text, save_json
from autovit.latency.measure import device_fingerprint, ort_session
from autovit.onnx_export import export_onnx, relative_diff

MODELS = ("mobilevit_xxs", "mobilevitv2_050", "edgenext_xx_small", "mobilenetv3_small_100", "mobilenetv3_large_100",
          "mobilenetv4_conv_small", "shvit_s1", "efficientformerv2_s0", "repvit_m0_9", "fastvit_t8", "mobileone_s0")
RESULTS = Path(__file__).resolve().parent / "results"


def randomize_batchnorm(module: nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics and affine terms (fresh BNs are identities, which any fusion keeps)."""
    gen = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            if m.affine:
                m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


def check(name: str, resolution: int, row: dict[str, Any]) -> dict[str, Any]:
    """Reparameterization and ONNX equivalence of one model the bench could run."""
    torch.manual_seed(0)
    kwargs = {"img_size": resolution} if row["img_size"] else {}
    model = timm.create_model(name, pretrained=False, **kwargs).eval()
    randomize_batchnorm(model)
    x = torch.randn(1, 3, resolution, resolution, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model(x)
        fused, _ = reparameterize(copy.deepcopy(model))
        after = fused(x)
    out: dict[str, Any] = {"reparam_rel_diff": relative_diff(before, after)[1]}
    t0 = time.time()
    try:
        data = export_onnx(fused, None, (1, 3, resolution, resolution))
        sess = ort_session(data)
        ort_out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
        out.update(exported=True, onnx_rel_diff=relative_diff(after, ort_out)[1], onnx_mb=len(data) / 2**20)
    except Exception as err:  # report it, go on with the next model
        out.update(exported=False, export_error=short_reason(err))
    out["export_s"] = round(time.time() - t0, 1)
    return out


def render(data: dict[str, Any]) -> str:
    v = data["versions"]
    m = data["machine"]
    lines = ["# Baselines check: built, reparameterized, exported (no timing)", "",
             f"- Machine: {m['cpu']}, {m['cores']} vCPUs (shared), {m['os']}",
             f"- Versions: torch {v['torch']}, timm {v['timm']}, onnxruntime {v['onnxruntime']}, "
             f"autovit {v['autovit']}",
             f"- Command: `{data['command']}` (wall {data['wall_s']:.0f} s); random weights, batch 1, 1000 classes",
             "- reparam diff: max |fused - unfused| / max |unfused| in PyTorch eval mode with randomized BN "
             "statistics; ONNX diff: onnxruntime vs PyTorch on the deployed (fused) model.", "",
             "| model | px | status | params (M) | MACs (G) | modules reparameterized | reparam diff | ONNX diff |",
             "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in data["rows"]:
        if r.get("skipped"):
            lines.append(f"| {r['name']} | {r['resolution']} | skipped: {r['skipped']} | | | | | |")
            continue
        status = "exported" if r["exported"] else f"built; export failed: {r['export_error']}"
        if r["img_size"]:
            status += f" (built for {r['img_size']} px)"
        onnx = f"{r['onnx_rel_diff']:.1e}" if r["exported"] else "-"
        lines.append(f"| {r['name']} | {r['resolution']} | {status} | {r['params'] / 1e6:.3f} | {r['macs'] / 1e9:.3f} "
                     f"| {r['reparameterized']} | {r['reparam_rel_diff']:.1e} | {onnx} |")
    return "\n".join(lines + [""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--resolutions", nargs="+", type=int, default=[224, 256])
    parser.add_argument("--out", type=Path, default=RESULTS / "check_baselines")
    args = parser.parse_args()
    start = time.time()
    rows = []
    for res in args.resolutions:
        report = bench_models(args.models, resolution=res, latency=False, warn=print)
        for r in report.rows:
            row = {**r.to_dict(), "resolution": res}
            if not r.skipped:
                row.update(check(r.name, res, row))
            print(f"[{time.time() - start:5.0f}s] {r.name} @ {res}: "
                  + (f"skipped ({r.skipped})" if r.skipped else f"exported={row['exported']} "
                     f"reparam={r.reparameterized} diff={row['reparam_rel_diff']:.1e}"), flush=True)
            rows.append(row)
    command = ["python", "benchmarks/" + Path(sys.argv[0]).name, *sys.argv[1:]]
    data = {"rows": rows, "versions": versions(), "machine": device_fingerprint(), "wall_s": round(time.time() - start, 1),
            "command": " ".join(shlex.quote(a) for a in command)}
    save_json(args.out.with_suffix(".json"), data)
    md = render(data)
    atomic_write_text(args.out.with_suffix(".md"), md)
    print(md)


if __name__ == "__main__":
    main()
