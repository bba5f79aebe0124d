"""Inputs of a real search (`autovit.search.session`): the latency table at the supernet's resolution,
the held-out validation split and BN-calibration set, the digests a resumed search must match, and
the measured latencies of a finished run. (The supernet comes from `train.checkpoint`.)"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from autovit.arch import Arch
from autovit.errors import AutovitError
from autovit.search.evolution import SearchResult
from autovit.space import SearchSpace
from autovit.train.checkpoint import LoadedSupernet


def search_inputs(loaded: LoadedSupernet, lut: str | Path | None, **evaluation: Any) -> dict[str, Any]:
    """What the accuracies and latencies of a search are measured with: digests of the supernet's
    weights and of the latency table, and the evaluation settings. A resumed search must match."""
    import hashlib

    import torch

    weights = hashlib.sha256()
    for name, tensor in sorted(loaded.supernet.state_dict().items()):
        weights.update(name.encode())
        weights.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    table = hashlib.sha256(Path(lut).read_bytes()).hexdigest()[:16] if lut else None
    return {"supernet_weights": weights.hexdigest()[:16], "latency_table": table,
            **{k: (str(v) if isinstance(v, Path) else v) for k, v in evaluation.items()}}


class TableResolutionModel:
    """A latency model used (with --force-table) for archs of another resolution than its table's:
    predicts each arch as if it ran at the table's resolution."""

    def __init__(self, model: Any) -> None:
        self.model, self.table = model, model.table

    def predict(self, archs: Sequence[Arch]) -> Any:
        res = self.table.resolution
        return self.model.predict([a if a.resolution == res else a.replace(resolution=res) for a in archs])

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


def load_latency_model(path: str | Path, space: SearchSpace, force: bool = False) -> Any:
    """The latency model of a table, refusing (unless `force`) a table of another space, resolution
    or device. `space` is the one searched (at the supernet's training resolution); a forced table of
    another resolution predicts every arch at the table's resolution."""
    from autovit.latency.measure import device_fingerprint
    from autovit.latency.predictor import LatencyModel

    model = LatencyModel.load(path)
    table = model.table
    fp = table.fingerprint or {}
    here = device_fingerprint(fp.get("backend", "ort"), int(fp.get("threads", 1)),
                              fp.get("graph_optimization", "all"), table.resolution)
    resolution = space.resolution[0] if len(space.resolution) == 1 else None
    try:
        table.check_compatible(space=space.name, resolution=resolution, fingerprint=here, force=force)
    except AutovitError as err:
        at = f" --resolution {resolution}" if resolution else ""
        raise AutovitError(f"{path}: {err.message}",
                           hint=f"profile a table for this space and device with `autovit latency profile{at}`; to "
                                "search for another (target) device with its own table, pass --force-table "
                                "(and --no-measure: latency measured here would not be that device's)") from None
    if resolution is not None and resolution != table.resolution:
        return TableResolutionModel(model)
    return model


def validation_evaluator(loaded: LoadedSupernet, dataset: str | None = None, data_dir: str | None = None,
                         val_images: int | None = None, calib_images: int | None = None, batch_size: int = 256,
                         device: str = "auto", seed: int = 0,
                         eval_dtype: str = "float32") -> tuple[Callable[[Arch], float], dict[str, Any]]:
    """`SubnetEvaluator` on the held-out validation split (never the test split) of the data the
    supernet was trained on, with BN recalibrated on a fixed, seeded subset of the training images;
    under `torch.autocast(eval_dtype)` unless float32."""
    import torch

    from autovit.data import build_datasets, eval_loader
    from autovit.supernet import SubnetEvaluator, calibration_batches
    cfg = data_config(loaded, dataset, data_dir)
    data = build_datasets(cfg)
    if data.num_classes != loaded.num_classes:
        raise AutovitError(f"the dataset '{data.name}' has {data.num_classes} classes but the supernet was trained "
                           f"for {loaded.num_classes}", hint="pass the --dataset the supernet was trained on")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    loaded.supernet.to(dev)
    val = data.val
    if val_images is not None and val_images < len(val):
        from torch.utils.data import Subset

        val = Subset(val, list(range(val_images)))
    recipe = {"dataset": cfg.dataset, "data_dir": cfg.data_dir, "images": calib_images or cfg.calib_images,
              "batch_size": min(batch_size, 256), "seed": seed}
    calib = calibration_batches(data.train_eval, recipe["images"], recipe["batch_size"], seed)
    # Eval transforms are deterministic: transform the validation images once, not once per candidate.
    val_batches = [(x, y) for x, y in eval_loader(val, batch_size)]
    evaluator = SubnetEvaluator(loaded.supernet, calib, val_batches, device=dev, eval_dtype=eval_dtype)
    info = {"dataset": data.name, "val_images": len(val), "calib_images": sum(len(b[1]) for b in calib),
            "resolution": cfg.resolution, "device": str(dev), "calibration": recipe, "eval_dtype": eval_dtype}
    return evaluator, info


def calibration_set(loaded: LoadedSupernet, recipe: Mapping[str, Any]) -> list:
    """The BN-calibration batches of a recorded recipe (best.json's data.calibration: dataset,
    data_dir, images, batch_size, seed): the very images, order and batching the search used."""
    from autovit.data import build_datasets
    from autovit.supernet import calibration_batches

    cfg = data_config(loaded, recipe.get("dataset"), recipe.get("data_dir"))
    return calibration_batches(build_datasets(cfg).train_eval, int(recipe["images"]), int(recipe["batch_size"]),
                               int(recipe["seed"]))


def search_calibration(arch_file: str | Path) -> dict[str, Any] | None:
    """The BN-calibration recipe recorded in a search's best.json (None for a plain arch JSON)."""
    import json

    try:
        data = json.loads(Path(arch_file).read_text())
    except (OSError, ValueError):
        return None
    info = data.get("data") if isinstance(data, Mapping) else None
    recipe = info.get("calibration") if isinstance(info, Mapping) else None
    needed = ("images", "batch_size", "seed")
    if not isinstance(recipe, Mapping) or not all(isinstance(recipe.get(k), int) for k in needed):
        return None
    return dict(recipe)


def data_config(loaded: LoadedSupernet, dataset: str | None = None, data_dir: str | None = None) -> Any:
    """The supernet's training data settings (`TrainConfig`), with the dataset overridden if given."""
    from autovit.train.config import TrainConfig

    saved = {k: v for k, v in (loaded.train_config or {}).items() if k in TrainConfig.__dataclass_fields__}
    changes = {k: v for k, v in (("dataset", dataset), ("data_dir", data_dir)) if v is not None}
    return TrainConfig.from_dict({**saved, **changes})


def measured_latencies(result: SearchResult, extra: Mapping[str, Arch] = (), references: Sequence[str] = (),
                       num_classes: int = 1000, rounds: int = 5) -> dict[str, float]:
    """Measured ms (this machine, onnxruntime, 1 thread) of the winner, the best arch per budget,
    `extra` archs (by name) and timm `references`; keyed by arch key / name."""
    from autovit.search.measured import measure_archs

    archs: dict[str, Arch] = {}
    for cand in [result.best, *result.best_per_budget.values()]:
        if cand is not None:
            archs[cand.key] = cand.arch
    archs.update(dict(extra))
    return measure_archs(archs, references, num_classes=num_classes, rounds=rounds)


def finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value
