"""Training checkpoints: written atomically, loaded all-or-nothing, resumable exactly.

A checkpoint holds the model (a `supernet_state()` for supernets; arch + state dict for a static
subnet; class, structure fingerprint + state dict for any other module, e.g. a timm baseline),
optimizer, LR scheduler, AMP scaler, the step and the data position (epoch and images of its
permutation consumed: the sampler resumes mid-epoch from it, on any number of processes), the
training config and the space. No RNG state: each step's RNGs derive from (seed, rank, step).
It is read with `torch.load(weights_only=True)`: no pickled code.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from autovit.arch import Arch
from autovit.errors import AutovitError
from autovit.space import SearchSpace
from autovit.io_utils import atomic_torch_save, torch_load_tensors

FORMAT = "autovit-train"
SUBNET_FORMAT = "autovit-subnet-state"
MODULE_FORMAT = "autovit-module-state"
VERSION = 1


# ------------------------------------------------------------------------------ sanity
def nonfinite_tensors(state: Any, prefix: str = "") -> list[str]:
    """Names of the floating-point tensors in a nested dict/list state that hold NaN or inf."""
    if isinstance(state, torch.Tensor):
        return [prefix] if state.is_floating_point() and not bool(torch.isfinite(state).all()) else []
    if isinstance(state, Mapping):
        return [name for k, v in state.items() for name in nonfinite_tensors(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(state, (list, tuple)):
        return [name for i, v in enumerate(state) for name in nonfinite_tensors(v, f"{prefix}[{i}]")]
    return []


# ------------------------------------------------------------------------------ model payloads
def is_supernet(model: nn.Module) -> bool:
    return hasattr(model, "set_active") and hasattr(model, "space")


def is_autovit_subnet(model: nn.Module) -> bool:
    return isinstance(getattr(model, "arch", None), Arch) and not is_supernet(model)


def module_identity(model: nn.Module) -> dict[str, str]:
    """Class and a fingerprint of the module tree (its repr: layer kinds, widths, strides), so a
    checkpoint of another layout with the same tensor shapes (e.g. other strides) is refused."""
    import hashlib

    cls = type(model)
    return {"class": f"{cls.__module__}.{cls.__qualname__}",
            "structure": hashlib.sha256(repr(model).encode()).hexdigest()[:16]}


def model_payload(model: nn.Module) -> dict[str, Any]:
    """A self-describing snapshot of a Supernet, a static AutoViT or any other module."""
    if is_supernet(model):
        from autovit.supernet import supernet_state

        return supernet_state(model)
    if not is_autovit_subnet(model):
        return {"format": MODULE_FORMAT, **module_identity(model), "state_dict": model.state_dict()}
    return {"format": SUBNET_FORMAT, "arch": model.arch.to_dict(), "num_classes": model.num_classes,
            "in_chans": model.stem.conv.in_channels, "state_dict": model.state_dict()}


def _load_subnet_payload(model: nn.Module, payload: Mapping[str, Any]) -> None:
    try:
        arch = Arch.from_dict(payload["arch"])
    except (KeyError, AutovitError) as err:
        raise AutovitError(f"corrupt checkpoint: unreadable subnet arch ({err})") from None
    if arch != model.arch:
        raise AutovitError("the checkpoint holds another architecture than the model being trained",
                           hint=f"checkpoint arch: {arch.key()}; pass the same --arch to resume")
    _load_state_all_or_nothing(model, payload.get("state_dict"))


def _load_state_all_or_nothing(model: nn.Module, state: Any) -> None:
    own = model.state_dict()
    if not isinstance(state, Mapping):
        raise AutovitError("corrupt checkpoint: no model state dict")
    bad = [k for k in own if k not in state or not isinstance(state[k], torch.Tensor) or state[k].shape != own[k].shape]
    extra = [k for k in state if k not in own]
    if bad or extra:
        raise AutovitError(f"the checkpoint does not match the model: '{(bad + extra)[0]}' "
                           f"({len(bad)} missing or mis-shaped, {len(extra)} unexpected tensors)",
                           hint="check num_classes, in_chans and the architecture")
    model.load_state_dict(state)


def restore_model(model: nn.Module, payload: Mapping[str, Any]) -> None:
    """Loads a `model_payload` into `model` after checking it fits (nothing is loaded otherwise)."""
    if is_supernet(model):
        from autovit.supernet import load_supernet_state

        load_supernet_state(model, payload)
        return
    fmt = payload.get("format") if isinstance(payload, Mapping) else None
    if is_autovit_subnet(model):
        if fmt == MODULE_FORMAT:
            raise AutovitError("the checkpoint holds another kind of model, but a single AutoViT subnet is being "
                               "trained", hint="resume with the model the checkpoint was written for")
        if fmt != SUBNET_FORMAT:
            raise AutovitError("the checkpoint holds a supernet, but a single subnet is being trained",
                               hint="use `autovit supernet train --resume` for supernet checkpoints")
        _load_subnet_payload(model, payload)
        return
    own = module_identity(model)
    if fmt != MODULE_FORMAT or payload.get("class") != own["class"]:
        held = payload.get("class") if fmt == MODULE_FORMAT else "an AutoViT subnet or supernet"
        raise AutovitError(f"the checkpoint holds {held}, but a {own['class']} is being trained",
                           hint="resume with the model the checkpoint was written for")
    if payload.get("structure") != own["structure"]:
        raise AutovitError(f"the checkpoint holds a {own['class']} of another structure (layers, widths or "
                           f"strides differ: fingerprint {payload.get('structure')}, this model {own['structure']})",
                           hint="resume with the same model name, variant and resolution")
    _load_state_all_or_nothing(model, payload.get("state_dict"))


# ------------------------------------------------------------------------------ files
def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> Path:
    """Writes `state` (+ format tag) atomically: a crash leaves the previous file intact."""
    return atomic_torch_save(path, {"format": FORMAT, "version": VERSION, **state})


def keep_previous(last: Path, previous: Path) -> None:
    """Makes `previous` a copy of `last` (a hard link where the filesystem allows), atomically:
    `last` stays in place, so a crash at any point leaves a resumable last.pt."""
    tmp = previous.with_name(f".{previous.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(last, tmp)
    except OSError:
        shutil.copyfile(last, tmp)
    os.replace(tmp, previous)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Reads a training checkpoint or a bare supernet/subnet state; clear errors for bad files."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / "last.pt" if (path / "checkpoints" / "last.pt").is_file() else path / "last.pt"
    if not path.is_file():
        raise AutovitError(f"checkpoint not found: {path}",
                           hint="pass the .pt file (e.g. runs/x/checkpoints/last.pt) or the run directory")
    obj = torch_load_tensors(path)  # truncated zip, pickled objects, ...: one clear error
    if not isinstance(obj, dict) or obj.get("format") not in (FORMAT, SUBNET_FORMAT, "autovit-supernet"):
        raise AutovitError(f"{path} is not an autovit checkpoint (no autovit format tag)")
    if obj["format"] == FORMAT and ("model" not in obj or "step" not in obj):
        raise AutovitError(f"corrupt checkpoint {path}: missing 'model' or 'step'")
    return obj


def model_state_of(ckpt: Mapping[str, Any]) -> Mapping[str, Any]:
    """The model payload of a training checkpoint or a bare state file."""
    return ckpt["model"] if ckpt.get("format") == FORMAT else ckpt


def training_config_of(ckpt: Mapping[str, Any], path: str | Path) -> dict[str, Any] | None:
    """The training config a checkpoint records; for a bare `supernet.pt` written before it
    recorded its own, the `config.yaml` the trainer keeps next to it (None if neither exists)."""
    import yaml

    if isinstance(ckpt.get("config"), Mapping):
        return dict(ckpt["config"])
    path = Path(path)
    cfg_file = (path if path.is_dir() else path.parent) / "config.yaml"
    try:
        cfg = yaml.safe_load(cfg_file.read_text()) if cfg_file.is_file() else None
    except (yaml.YAMLError, UnicodeDecodeError):
        return None
    return dict(cfg) if isinstance(cfg, Mapping) else None


def at_trained_resolution(payload: Mapping[str, Any], config: Mapping[str, Any] | None,
                          only: bool = False) -> Mapping[str, Any]:
    """A supernet payload whose space also offers (or, with `only`, offers just) the resolution the
    training `config` used. The space file names its default resolution; the supernet is searched,
    evaluated and deployed at the one it was trained at. The weights do not depend on it."""
    trained = (config or {}).get("resolution")
    space = payload.get("space")
    if not isinstance(trained, int) or isinstance(trained, bool) or not isinstance(space, Mapping):
        return payload
    current = [int(r) for r in space.get("resolution", [])]
    wanted = [trained] if only else sorted(set(current) | {trained})
    return payload if wanted == current else {**payload, "space": {**space, "resolution": wanted}}


@dataclass
class LoadedSupernet:
    supernet: Any
    space: SearchSpace  # at the resolution the supernet was trained at, when that is recorded
    train_config: dict[str, Any] | None  # the training run's config (data settings), when recorded
    num_classes: int


def load_supernet_checkpoint(path: str | Path, space: str | None = None) -> LoadedSupernet:
    """The supernet (in eval mode) of a training checkpoint or a bare `supernet_state` file, checked
    to be of `space` when one is named, with the space it is searched in and its training config."""
    return _loaded_supernet(read_checkpoint(path), path, space)


def _loaded_supernet(ckpt: Mapping[str, Any], path: str | Path, space: str | None = None) -> LoadedSupernet:
    from autovit.supernet import Supernet, load_supernet_state

    payload = model_state_of(ckpt)
    if payload.get("format") == SUBNET_FORMAT:
        raise AutovitError(f"{path} holds a single trained subnet, not a supernet",
                           hint="search needs the supernet checkpoint (`autovit supernet train`); export the "
                                "subnet with `autovit export --subnet` instead")
    cfg = training_config_of(ckpt, path)
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
    try:
        # Searched at the resolution it was trained at; the supernet itself also accepts archs at the
        # space file's resolution (e.g. `export --arch` of an arch sampled from that file).
        searched = SearchSpace.from_dict(at_trained_resolution(payload, cfg, only=True)["space"])
        payload = at_trained_resolution(payload, cfg)
        supernet = Supernet(SearchSpace.from_dict(payload["space"]), num_classes=num_classes, in_chans=in_chans)
    except (KeyError, TypeError, ValueError) as err:
        raise AutovitError(f"corrupt supernet checkpoint {path}: {err}") from None
    load_supernet_state(supernet, payload)
    return LoadedSupernet(supernet.eval(), searched, cfg, num_classes)


def _structure(space: SearchSpace) -> dict[str, Any]:
    """The choices and layout of a space (not its name, description or resolution: a supernet is
    the same network at every input resolution)."""
    return {k: v for k, v in space.to_dict().items()
            if k not in ("name", "description", "paper_param_range", "resolution")}


def load_model_from_checkpoint(path: str | Path, arch: str | Path | Arch | None = None) -> nn.Module:
    """The network stored in a checkpoint: the static subnet, the supernet (its space at the trained
    resolution), or (with `arch`) the supernet's subnet `arch` extracted with inherited weights."""
    ckpt = read_checkpoint(path)
    payload = model_state_of(ckpt)
    if payload.get("format") == SUBNET_FORMAT:
        from autovit.model import AutoViT

        model = AutoViT(Arch.from_dict(payload["arch"]), num_classes=payload["num_classes"],
                        in_chans=payload.get("in_chans", 3))
        _load_subnet_payload(model, payload)
        return model
    supernet = _loaded_supernet(ckpt, path).supernet.train()  # as built, like a freshly constructed model
    if arch is None:
        return supernet
    if not isinstance(arch, Arch):
        arch = supernet.space.parse_arch(arch)
    return supernet.extract(arch)
