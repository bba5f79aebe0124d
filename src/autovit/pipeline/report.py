"""The run report (`report.md`): the chosen model, its accuracy, its measured latency against the
baselines on this machine, the latency model's validation, the Pareto plot and the exported files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from autovit.io_utils import atomic_write_text

if TYPE_CHECKING:
    from autovit.pipeline.run import Pipeline


def evaluate_exported(pipe: "Pipeline", model_dir: Path) -> dict[str, Any]:
    """Top-1/top-5 of the exported model (reloaded from safetensors) on the held-out validation
    split and on the test split, with the supernet's data settings."""
    from autovit.data import build_datasets, eval_loader
    from autovit.search.runner import data_config
    from autovit.train.checkpoint import load_supernet_checkpoint
    from autovit.subnet_io import load_subnet
    from autovit.supernet.evaluate import evaluate

    loaded = load_supernet_checkpoint(pipe.supernet_ckpt)
    data = build_datasets(data_config(loaded))
    model = load_subnet(model_dir).eval()
    return {
        "val": evaluate(model, eval_loader(data.val)),
        "test": evaluate(model, eval_loader(data.test)),
        "dataset": data.name,
        "test_images": len(data.test),
    }


def _load(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _rel(path: Path, root: Path) -> str:
    return os.path.relpath(path, root)


def _fmt(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


# (key in the metrics dict, row name, unit) of `autovit latency validate`'s error metrics.
_VALIDATION_ROWS = (
    ("mape", "mean absolute error (MAPE)", "%"),
    ("rmspe", "root-mean-square error (RMSPE)", "%"),
    ("max_error", "largest absolute error", "%"),
    ("bias", "bias (mean signed error; < 0: predicted too fast)", "%"),
    ("within_5", "subnets predicted within 5 %", "% of subnets"),
    ("within_10", "subnets predicted within 10 %", "% of subnets"),
    ("kendall_tau", "Kendall tau (rank agreement, 1 = same order)", "-"),
    ("spearman_rho", "Spearman rho (rank correlation)", "-"),
)


def validation_markdown(validation: Mapping[str, Any]) -> str:
    """The latency model's held-out errors (validation.json) as a markdown table with units, next
    to the re-test noise (the same subnets measured twice) when recorded."""
    columns = [("latency model", validation.get("metrics") or {})]
    if isinstance(validation.get("retest_noise"), Mapping):
        columns.append(("re-test noise (measured twice)", validation["retest_noise"]))
    lines = ["| metric | unit | " + " | ".join(name for name, _ in columns) + " |",
             "|---|---|" + "---:|" * len(columns)]
    for key, name, unit in _VALIDATION_ROWS:
        if any(key in values for _, values in columns):
            digits = 3 if unit == "-" else (0 if unit == "% of subnets" else 2)
            cells = [_fmt(values.get(key), digits) for _, values in columns]
            lines.append(f"| {name} | {unit} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(pipe: "Pipeline", summaries: Mapping[str, Any]) -> Path:
    """Writes report.md in the run folder and returns its path."""
    root = pipe.root
    best = _load(root / "search" / "best.json") or {}
    metrics = _load(root / "export" / "export.json") or {}
    bench = _load(root / "final_bench" / "bench.json") or {"models": []}
    validation = _load(root / "latency_validation" / "validation.json")
    export_report = _load(root / "export" / "model" / "export.json") or {}
    arch_file = root / "export" / "model" / "arch.json"

    from autovit.search.budget import bench_contract, contract_line

    budget = _load(root / "search" / "budget.json") or {}
    resolved = budget.get("resolved")
    lines = [f"# autovit run: {pipe.cfg.name}", ""]
    lines += [f"Space `{pipe.space.name}` at {pipe.resolution}x{pipe.resolution}; latency budget "
              + (resolved["description"] if resolved else f"`{pipe.cfg.search.latency_budget}`")
              + ". Stage wall times (s): "
              + ", ".join(f"{k} {v.get('wall_s', '-')}" for k, v in summaries.items()) + ".", ""]
    if resolved:
        searched = next((r["name"] for r in bench.get("models", []) if str(r["name"]).endswith("arch.json")), "")
        measured = _load(root / "final_bench" / "contract.json")
        lines += [contract_line(measured or bench_contract(bench, resolved, searched)), ""]

    lines += ["## The chosen model", ""]
    if arch_file.is_file():
        lines += ["```json", arch_file.read_text().strip(), "```", ""]
    val, test = metrics.get("val", {}), metrics.get("test", {})
    lat = best.get("latency_ms") if isinstance(best.get("latency_ms"), dict) else {}
    lines += [f"- Accuracy with inherited weights (BN recalibrated): validation top-1 {_fmt(val.get('top1'))}%, "
              f"test top-1 {_fmt(test.get('top1'))}% on {metrics.get('test_images', '-')} test images of "
              f"`{metrics.get('dataset', '-')}`.",
              f"- Search fitness (validation top-1): {_fmt(best.get('accuracy'))}%; latency predicted "
              f"{_fmt(lat.get('predicted'))} ms (at table time), measured {_fmt(lat.get('measured'))} ms "
              "(search stage, ms now); "
              f"{_fmt((best.get('params') or 0) / 1e6, 3)}M params, {_fmt((best.get('macs') or 0) / 1e6, 1)}M MACs.",
              ""]

    lines += ["## Measured latency on this machine (onnxruntime, batch 1)", "",
              "| model | params (M) | MACs (M) | median (ms) | IQR (ms) | ratio to reference |",
              "|---|---:|---:|---:|---:|---:|"]
    for row in bench.get("models", []):
        name = "**searched model**" if str(row["name"]).endswith("arch.json") else row["name"]
        if row.get("skipped"):
            lines.append(f"| {name} | - | - | skipped: {row['skipped']} | | |")
            continue
        lines.append(f"| {name} | {row['params'] / 1e6:.3f} | {row['macs'] / 1e6:.1f} | {_fmt(row['median_ms'])} | "
                     f"{_fmt(row['iqr_ms'])} | {_fmt(row['ratio_to_ref'], 3)} |")
    lines.append("")

    lines += ["## Search", ""]
    if budget.get("verification"):
        from autovit.search.budget import Verification

        lines += [Verification.from_dict(budget["verification"]).markdown().replace("## ", "### ", 1), ""]
    for name, title in (("search.png", "Accuracy vs predicted latency (Pareto front, baselines)"),
                        ("coarse_cloud.png", "Coarse stage: sampled archs and the budget")):
        if (root / "search" / name).is_file():
            lines += [f"![{title}]({_rel(root / 'search' / name, root)})", ""]
    if (root / "search" / "report.md").is_file():
        lines += [f"Details: [search/report.md]({_rel(root / 'search' / 'report.md', root)}) "
                  "(Pareto front, Eq. 7 latency impact, history).", ""]

    lines += ["## Latency model", ""]
    if validation:
        lines += [f"Predicted vs measured latency of {validation.get('samples', '?')} held-out random subnets "
                  "(errors relative to the measured latency):", "", validation_markdown(validation), ""]
        for name, g in (validation.get("groups") or {}).items():
            lines.append(f"- {name.replace('_', ' ')} subnets ({g['n']}): MAPE {g['mape']:.1f}%, max error "
                         f"{g['max_error']:.1f}%, bias {g['bias']:+.1f}% (predicted vs measured ratio)")
        lines.append("")
        lines += [f"![latency validation]({_rel(root / 'latency_validation' / 'validation.png', root)})", ""]
    else:
        lines += ["(validation skipped in this config)", ""]

    lines += ["## Exported files", ""]
    results = export_report.get("formats", [])
    if results:
        lines += ["| format | status | file | max abs. difference to PyTorch | relative to the largest output | note |",
                  "|---|---|---|---:|---:|---|"]
    for res in results:
        path = f"`{_rel(Path(res['path']), root)}`" if res.get("path") else "-"
        abs_diff, rel_diff = res.get("max_abs_diff"), res.get("max_rel_diff")
        lines.append(f"| {res.get('format')} | {res.get('status')} | {path} | "
                     f"{'-' if abs_diff is None else f'{abs_diff:.2e}'} | "
                     f"{'-' if rel_diff is None else f'{rel_diff:.1e}'} | {res.get('message') or ''} |")
    lines.append("")
    path = root / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path
