"""Saving and loading standalone subnets: ``model.safetensors`` + ``arch.json`` + ``meta.json``.

A saved subnet reloads without the supernet (the arch JSON rebuilds the static `AutoViT`).
Each file is written atomically and `meta.json` (written last) records the SHA-256 of the other two,
so a half-written or mixed-up directory is detected on load instead of loading wrong weights.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from autovit.arch import Arch
from autovit.errors import ArchError, AutovitError
from autovit.io_utils import atomic_write, atomic_write_text, save_json
from autovit.model import AutoViT

WEIGHTS, ARCH, META = "model.safetensors", "arch.json", "meta.json"
# meta.json's optional "data_config" (the preprocessing the weights were trained with) overrides
# these keys of the model's timm cfg, whose defaults are autovit's ImageNet pipeline.
DATA_CONFIG_KEYS = ("mean", "std", "crop_pct", "interpolation")
FORMAT = "autovit-subnet"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_subnet(model: AutoViT, directory: str | Path, extra_meta: Mapping[str, Any] | None = None) -> Path:
    """Writes `model` (a static `AutoViT`, e.g. from `Supernet.extract`) to `directory`; returns it.

    `extra_meta` (JSON-serialisable, e.g. accuracy, supernet checkpoint, space) goes into meta.json;
    its "data_config" ({"mean": ..., "std": ..., "crop_pct": ..., "interpolation": ...}) becomes the
    preprocessing in the reloaded model's timm cfg.
    """
    from autovit import __version__

    if not isinstance(model, AutoViT):
        raise AutovitError(f"save_subnet needs a static AutoViT network, got {type(model).__name__}",
                           hint="extract it from the supernet first: supernet.extract(arch)")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    arch_json = model.arch.to_json()
    atomic_write(directory / WEIGHTS, lambda p: save_file(tensors, str(p), metadata={"format": FORMAT,
                                                                                      "arch": model.arch.to_json(None)}))
    atomic_write_text(directory / ARCH, arch_json + "\n")
    meta = {
        "format": FORMAT,
        "format_version": 1,
        "autovit_version": __version__,
        "num_classes": model.num_classes,
        "in_chans": int(model.stem.conv.weight.shape[1]),
        "arch_key": model.arch.key(),
        "params": sum(p.numel() for p in model.parameters()),
        "sha256": {WEIGHTS: _sha256(directory / WEIGHTS), ARCH: _sha256(directory / ARCH)},
        **dict(extra_meta or {}),
    }
    save_json(directory / META, meta)
    return directory


def _data_config_overlay(data_config: Any, in_chans: int, path: Path) -> dict[str, Any]:
    """The timm-cfg entries of meta.json's "data_config", checked."""
    if not isinstance(data_config, dict):
        raise AutovitError(f"corrupt subnet: 'data_config' in {path} is not an object")
    overlay = {k: data_config[k] for k in DATA_CONFIG_KEYS if k in data_config}
    for key in ("mean", "std"):
        value = overlay.get(key)
        if value is not None:
            if (not isinstance(value, list) or len(value) != in_chans
                    or not all(isinstance(v, (int, float)) for v in value)):
                raise AutovitError(f"corrupt subnet: data_config.{key} in {path} must be {in_chans} numbers, "
                                   f"got {value!r}")
            overlay[key] = tuple(float(v) for v in value)
    return overlay


def read_subnet_meta(directory: str | Path) -> dict[str, Any]:
    """meta.json of a saved subnet (checked to be one)."""
    path = Path(directory) / META
    if not path.is_file():
        raise AutovitError(f"not a saved subnet: {path} is missing",
                           hint="save subnets with autovit.subnet_io.save_subnet (or `autovit supernet extract`)")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise AutovitError(f"corrupt subnet: {path} is not valid JSON ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise AutovitError(f"corrupt subnet: {path} is not an autovit subnet description")
    for key in ("num_classes", "in_chans"):
        if not isinstance(meta.get(key), int):
            raise AutovitError(f"corrupt subnet: {path} has no valid '{key}'")
    return meta


def load_subnet(directory: str | Path, map_location: str | torch.device = "cpu") -> AutoViT:
    """Rebuilds the static `AutoViT` saved by `save_subnet` in `directory` and loads its weights
    strictly (in eval mode), with its timm cfg (`pretrained_cfg`, hub-ready: see docs/architecture.md,
    "timm contract"). Missing, corrupt or mismatched files raise `AutovitError`."""
    directory = Path(directory)
    if not directory.is_dir():
        raise AutovitError(f"subnet directory not found: {directory}",
                           hint="pass the directory written by save_subnet")
    meta = read_subnet_meta(directory)
    for name in (WEIGHTS, ARCH):
        path = directory / name
        if not path.is_file():
            raise AutovitError(f"corrupt subnet: {path} is missing")
        expected = meta.get("sha256", {}).get(name)
        if expected is not None and _sha256(path) != expected:
            raise AutovitError(f"corrupt subnet: {path} does not match the checksum in {META}",
                               hint="the file was changed or only partly written; save the subnet again")
    try:
        arch = Arch.load(directory / ARCH)
    except ArchError as err:
        raise AutovitError(f"corrupt subnet: {err.message}", err.hint) from None
    try:
        tensors = load_file(str(directory / WEIGHTS), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as err:
        raise AutovitError(f"corrupt subnet: cannot read {directory / WEIGHTS} ({err})") from None
    from autovit.registry import create_autovit, timm_model_name

    # built through timm's builder, so the model carries its timm cfg (save_for_hf, resolve_data_config)
    overlay = _data_config_overlay(meta.get("data_config", {}), meta["in_chans"], directory / META)
    model = create_autovit(timm_model_name(arch), arch=arch, num_classes=meta["num_classes"],
                           in_chans=meta["in_chans"], pretrained_cfg_overlay=overlay).to(map_location)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0:2]
        raise AutovitError(f"corrupt subnet: the weights in {directory / WEIGHTS} do not fit {ARCH} "
                           f"({' '.join(first)})") from None
    return model.eval()
