"""BatchNorm recalibration (Once-for-All's `set_running_statistics`).

A subnet that inherits weights from a supernet also inherits BN running statistics that were
accumulated over *other* subnets, so before evaluating it we reset every BN layer and recompute its
statistics on a fixed, seeded subset of training images.
"""

from __future__ import annotations

import itertools
from typing import Any, Iterable, Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from autovit.errors import AutovitError

Batch = Any  # a tensor of images, or a (images, labels, ...) tuple/list as a DataLoader yields


def batch_images(batch: Batch) -> torch.Tensor:
    """The image tensor of a batch (a tensor, or the first item of a tuple/list/dict['image'])."""
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    if isinstance(batch, dict) and isinstance(batch.get("image"), torch.Tensor):
        return batch["image"]
    raise AutovitError(f"cannot find the images in a batch of type {type(batch).__name__}",
                       hint="pass batches as image tensors or (images, labels) pairs")


def _device_of(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[Batch], num_batches: int | None = None) -> int:
    """Resets the statistics of every BatchNorm layer of `model` and recomputes them on the first
    `num_batches` of `batches` (all if None); returns the number of images used.

    Each BN layer's running mean / var become the average of the per-batch means / (unbiased)
    variances weighted by batch size: the exact mean of the subset's features, and for the
    variance the same estimate as Once-for-All's ``set_running_statistics`` (averaged batch
    variances). Works on a `Supernet` (its active arch) and on any static network. Dropout and all
    other layers stay in eval mode; every module's train/eval flag and BN momentum are restored.
    """
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not bns:
        return 0
    modes = {m: m.training for m in model.modules()}
    momenta = [bn.momentum for bn in bns]
    device = _device_of(model)
    seen = 0
    try:
        for bn in bns:
            bn.reset_running_stats()
        model.eval()
        for bn in bns:
            bn.train()
        chosen = batches if num_batches is None else itertools.islice(batches, num_batches)
        for batch in chosen:
            images = batch_images(batch).to(device, non_blocking=True)
            n = images.shape[0]
            seen += n
            # running = (1 - m) * running + m * batch_stat with m = n / seen is the size-weighted
            # cumulative average over the batches seen so far.
            for bn in bns:
                bn.momentum = n / seen
            model(images)
    finally:
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum
        for m, mode in modes.items():
            m.training = mode
    if seen == 0:
        raise AutovitError("BN recalibration got no batches",
                           hint="pass a non-empty calibration set (see calibration_batches)")
    return seen


def calibration_batches(dataset: Sequence[Any], num_images: int, batch_size: int = 64,
                        seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A fixed, seeded subset of `dataset` as a list of (images, labels) batches, kept in memory so
    that every recalibration sees exactly the same images (random transforms are applied once,
    under the same seed). Use the training set with evaluation transforms."""
    if num_images < 1 or batch_size < 1:
        raise AutovitError(f"num_images and batch_size must be >= 1, got {num_images} and {batch_size}")
    if len(dataset) == 0:
        raise AutovitError("the calibration dataset is empty")
    num_images = min(num_images, len(dataset))
    gen = torch.Generator().manual_seed(seed)
    indices = torch.randperm(len(dataset), generator=gen)[:num_images].tolist()
    batches = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for start in range(0, num_images, batch_size):
            items = [dataset[i] for i in indices[start:start + batch_size]]
            if not hasattr(items[0][0], "shape"):
                raise AutovitError(f"calibration images must be tensors, got {type(items[0][0]).__name__}",
                                   hint="give the dataset a transform that ends with ToTensor / normalisation")
            images = torch.stack([torch.as_tensor(item[0]) for item in items])
            labels = torch.as_tensor([int(item[1]) for item in items])
            batches.append((images, labels))
    return batches
