"""Wiring of the real components for `autovit search`: the supernet checkpoint, the latency table,
the held-out validation split and BN-calibration set, and the outputs of a finished run."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from autovit.arch import Arch
from autovit.errors import AutovitError
from autovit.search.evolution import SearchResult
from autovit.space import SearchSpace


@dataclass
class LoadedSupernet:
    supernet: Any
    space: SearchSpace  # at the resolution the supernet was trained at, when that is recorded
    train_config: dict[str, Any] | None  # the training run's config (data settings), when recorded
    num_classes: int


def load_supernet_checkpoint(path: str | Path, space: str | None = None) -> LoadedSupernet:
    """The supernet of a training checkpoint (or a bare `supernet_state` file), checked to be of
    `space` when one is named."""
    from autovit.supernet import Supernet, load_supernet_state
    from autovit.train.checkpoint import (SUBNET_FORMAT, at_trained_resolution, model_state_of, read_checkpoint,
                                          training_config_of)

    ckpt = read_checkpoint(path)
    payload = model_state_of(ckpt)
    if payload.get("format") == SUBNET_FORMAT:
        raise AutovitError(f"{path} holds a single trained subnet, not a supernet",
                           hint="search needs the supernet checkpoint (`autovit supernet train`); export the "
                                "subnet with `autovit export --subnet` instead")
    try:
        ckpt_space = SearchSpace.from_dict(payload["space"])
        num_classes, in_chans = int(payload["num_classes"]), int(payload.get("in_chans", 3))
    except (KeyError, TypeError, ValueError) as err:
        raise AutovitError(f"corrupt supernet checkpoint {path}: {err}") from None
    if space is not None:
        wanted = SearchSpace.load(space)
        if _structure(wanted) != _structure(ckpt_space):
            raise AutovitError(f"{path} is a supernet of the space '{ckpt_space.name}', not of '{wanted.name}'",
                               hint=f"drop --space (the checkpoint names its space) or pass --space {ckpt_space.name}")
    cfg = training_config_of(ckpt, path)
    # Searched at the resolution it was trained at; the supernet itself also accepts archs at the
    # space file's resolution (e.g. `export --arch` of an arch sampled from that file).
    searched = SearchSpace.from_dict(at_trained_resolution(payload, cfg, only=True)["space"])
    payload = at_trained_resolution(payload, cfg)
    supernet = Supernet(SearchSpace.from_dict(payload["space"]), num_classes=num_classes, in_chans=in_chans)
    load_supernet_state(supernet, payload)
    return LoadedSupernet(supernet.eval(), searched, cfg, num_classes)


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


def _structure(space: SearchSpace) -> dict[str, Any]:
    """The choices and layout of a space (not its name, description or resolution: a supernet is
    the same network at every input resolution)."""
    return {k: v for k, v in space.to_dict().items()
            if k not in ("name", "description", "paper_param_range", "resolution")}


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
                         device: str = "auto", seed: int = 0) -> tuple[Callable[[Arch], float], dict[str, Any]]:
    """`SubnetEvaluator` on the held-out validation split (never the test split) of the data the
    supernet was trained on, with BN recalibrated on a fixed, seeded subset of the training images."""
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
    evaluator = SubnetEvaluator(loaded.supernet, calib, val_batches, device=dev)
    info = {"dataset": data.name, "val_images": len(val), "calib_images": sum(len(b[1]) for b in calib),
            "resolution": cfg.resolution, "device": str(dev), "calibration": recipe}
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


def init_distributed() -> tuple[int, int]:
    """Joins the torchrun process group when launched by torchrun (gloo on CPU, nccl on GPU)."""
    import torch
    import torch.distributed as dist

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


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
