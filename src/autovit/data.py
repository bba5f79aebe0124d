"""Datasets and loaders for supernet/standalone training and the search.

Three sources: `cifar10` (torchvision's download, or a folder of .npz files with x uint8 NHWC and
y), `imagefolder` (ImageNet layout root/train, root/val) and the offline default `digits`
(scikit-learn's bundled 8x8 digits, resized and replicated to 3 channels). Every source gives
train / val / test splits, where val is a fixed, seeded hold-out of the training images (the
search ranks subnets on it; test is for reporting only).

Augmentation randomness is drawn from a per-sample seed (seed, epoch, position) instead of the
global RNGs, so the data order and the augmented pixels continue exactly after a resume, for any
number of loader workers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from autovit.errors import AutovitError

DATASETS = ("digits", "cifar10", "imagefolder")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "imagefolder": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "digits": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


# ------------------------------------------------------------------------------ raw sources
class ArrayImages(Dataset):
    """uint8 images (N, H, W, C) + labels as (PIL image, label) pairs."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x, self.y = x, np.asarray(y, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[Image.Image, int]:
        img = self.x[i]
        return Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).convert("RGB"), int(self.y[i])

    @property
    def targets(self) -> np.ndarray:
        return self.y


class Subset(Dataset):
    def __init__(self, base: Dataset, indices: Sequence[int]) -> None:
        self.base, self.indices = base, np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.base[int(self.indices[i])]


class Transformed(Dataset):
    """Applies `transform` to the image of `base[i]`.

    Keys may be `(index, seed)`: the transform then runs with Python, NumPy and torch RNGs seeded
    from `seed` (and the callers' RNG states restored afterwards), so augmentation is a pure
    function of the key.
    """

    def __init__(self, base: Dataset, transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        if isinstance(key, tuple):
            index, seed = key
            img, label = self.base[index]
            py, npy, th = random.getstate(), np.random.get_state(), torch.get_rng_state()
            random.seed(seed)
            np.random.seed(seed % 2**32)
            torch.default_generator.manual_seed(seed)  # CPU only: torch.manual_seed is slow (CUDA lazy init)
            try:
                return self.transform(img), label
            finally:
                random.setstate(py)
                np.random.set_state(npy)
                torch.set_rng_state(th)
        img, label = self.base[key]
        return self.transform(img), label


@dataclass
class Splits:
    """Raw (untransformed) splits of one dataset."""

    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    classes: tuple[str, ...]
    name: str


def _holdout(n: int, val_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, val indices): a seeded permutation, val first."""
    n_val = int(round(val_size * n)) if val_size < 1 else int(val_size)
    if not 0 <= n_val < n:
        raise AutovitError(f"val_size {val_size} leaves no training images (dataset has {n})",
                           hint="use a fraction below 1 or a smaller count")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _split_train(train: Dataset, test: Dataset, num_classes: int, classes: Sequence[str], name: str,
                 val_size: float, val_seed: int) -> Splits:
    tr, va = _holdout(len(train), val_size, val_seed)
    return Splits(Subset(train, tr), Subset(train, va), test, num_classes, tuple(classes), name)


def load_digits_splits(val_size: float = 0.1, val_seed: int = 0) -> Splits:
    """scikit-learn's 1797 8x8 digits: 20% fixed test split (seed 1234), val held out from the rest."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.clip(np.round(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[..., None]
    perm = np.random.default_rng(1234).permutation(len(x))
    n_test = len(x) // 5
    test, train = perm[:n_test], perm[n_test:]
    return _split_train(ArrayImages(x[train], d.target[train]), ArrayImages(x[test], d.target[test]), 10,
                        [str(i) for i in range(10)], "digits", val_size, val_seed)


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            x, y = f["x"], f["y"]
    except (OSError, KeyError, ValueError) as err:
        raise AutovitError(f"cannot read {path}: {err}",
                           hint="each .npz needs arrays 'x' (uint8 N,H,W,C) and 'y' (labels)") from None
    if x.dtype != np.uint8 or x.ndim != 4 or len(x) != len(y):
        raise AutovitError(f"{path}: expected x uint8 (N,H,W,C) and y (N,), got x {x.dtype} {x.shape}, y {y.shape}")
    return x, y


def load_cifar10_splits(data_dir: str | Path | None, download: bool = False, val_size: float = 0.1,
                        val_seed: int = 0) -> Splits:
    """CIFAR-10 from a folder of train*.npz + test.npz, or torchvision's CIFAR-10 under data_dir."""
    how = ("pass --data-dir pointing to a folder with train_part*.npz and test.npz "
           "(e.g. /work/shared/data/cifar10), or to a torchvision CIFAR-10 root, or add --download "
           "to let torchvision fetch it into --data-dir")
    if data_dir is None:
        raise AutovitError("dataset cifar10 needs a data directory", hint=how)
    root = Path(data_dir).expanduser()
    train_files = sorted(root.glob("train*.npz"))
    if train_files and (root / "test.npz").is_file():
        parts = [_load_npz(p) for p in train_files]
        x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        tx, ty = _load_npz(root / "test.npz")
        return _split_train(ArrayImages(x, y), ArrayImages(tx, ty), 10, CIFAR10_CLASSES, "cifar10",
                            val_size, val_seed)
    import torchvision

    try:
        tr = torchvision.datasets.CIFAR10(str(root), train=True, download=download)
        te = torchvision.datasets.CIFAR10(str(root), train=False, download=download)
    except RuntimeError as err:
        raise AutovitError(f"CIFAR-10 not found in {root} (looked for train*.npz + test.npz and for "
                           f"torchvision's cifar-10-batches-py): {err}", hint=how) from None
    return _split_train(ArrayImages(tr.data, np.array(tr.targets)), ArrayImages(te.data, np.array(te.targets)),
                        10, tuple(tr.classes), "cifar10", val_size, val_seed)


class CorruptImageError(AutovitError):
    """An image file of a dataset cannot be decoded."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        # Raised in a DataLoader worker, torch re-raises it as CorruptImageError("Caught ... Original
        # Traceback ...<name>: message\n  hint: ..."): keep only our message and hint.
        marker = f"{type(self).__name__}: "
        if hint is None and "Original Traceback" in message and marker in message:
            message, _, hint = message.rsplit(marker, 1)[1].strip().partition("\n  hint: ")
            hint = hint or None
        super().__init__(message, hint)


def load_image(path: str) -> Image.Image:
    """An RGB PIL image; a truncated or non-image file raises one `CorruptImageError` naming it."""
    from PIL import UnidentifiedImageError

    try:
        with open(path, "rb") as f:
            img = Image.open(f)
            return img.convert("RGB")
    except UnidentifiedImageError:
        reason = "not a decodable image (unknown format, or a damaged or truncated file)"
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        reason = str(err)
    raise CorruptImageError(f"cannot read image {path}: {reason}",
                            hint="delete or replace this file (a truncated copy?) and rerun; training stops "
                                 "instead of skipping it so the data order stays reproducible")


def corrupt_images(root: str | Path) -> list[tuple[str, str]]:
    """(file, reason) of every image under `root/train` and `root/val` that cannot be decoded:
    a check to run once before a long training run (decodes every image)."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    bad = []
    for path in sorted(Path(root).expanduser().glob("*/*/*")):
        if path.is_file() and path.parts[-3] in ("train", "val") and path.suffix.lower() in IMG_EXTENSIONS:
            try:
                load_image(str(path))
            except CorruptImageError as err:
                bad.append((str(path), err.message.split(": ", 1)[1]))
    return bad


def load_imagefolder_splits(data_dir: str | Path | None, val_size: float = 0.1, val_seed: int = 0) -> Splits:
    """ImageNet layout: root/train/<class>/*.jpg and root/val/<class>/*.jpg (val is the test split)."""
    how = "pass --data-dir ROOT where ROOT/train/<class>/ and ROOT/val/<class>/ hold the images"
    if data_dir is None:
        raise AutovitError("dataset imagefolder needs a data directory", hint=how)
    import torchvision

    root = Path(data_dir).expanduser()
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise AutovitError(f"image folder split not found: {root / split}", hint=how)
    try:
        tr = torchvision.datasets.ImageFolder(str(root / "train"), loader=load_image)
        te = torchvision.datasets.ImageFolder(str(root / "val"), loader=load_image)
    except (FileNotFoundError, RuntimeError) as err:
        raise AutovitError(f"cannot read image folder {root}: {err}", hint=how) from None
    if len(tr.classes) < 2:
        raise AutovitError(f"{root / 'train'} has {len(tr.classes)} class folder ({', '.join(tr.classes)}): "
                           f"classification needs at least 2 classes", hint=how + ", one folder per class")
    if tr.classes != te.classes:
        raise AutovitError(f"{root}: train/ and val/ have different class folders")
    return _split_train(tr, te, len(tr.classes), tr.classes, "imagefolder", val_size, val_seed)


def load_splits(cfg: Any) -> Splits:
    """Raw splits for `cfg.dataset` (fields: dataset, data_dir, download, val_size, val_seed)."""
    name = cfg.dataset.lower()
    if name == "digits":
        return load_digits_splits(cfg.val_size, cfg.val_seed)
    if name == "cifar10":
        return load_cifar10_splits(cfg.data_dir, cfg.download, cfg.val_size, cfg.val_seed)
    if name == "imagefolder":
        return load_imagefolder_splits(cfg.data_dir, cfg.val_size, cfg.val_seed)
    raise AutovitError(f"unknown dataset '{cfg.dataset}'", hint=f"use one of {', '.join(DATASETS)}")


# ------------------------------------------------------------------------------ transforms
def normalisation(cfg: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    mean, std = _STATS.get(cfg.dataset.lower(), _STATS["imagefolder"])
    return tuple(cfg.mean or mean), tuple(cfg.std or std)


def train_transform(cfg: Any) -> Callable:
    """timm's training pipeline: random-resized crop, flip, [RandAugment], normalise, [RandomErasing]."""
    from timm.data import create_transform

    mean, std = normalisation(cfg)
    transform = create_transform(cfg.resolution, is_training=True, scale=tuple(cfg.crop_scale), hflip=cfg.hflip,
                                 color_jitter=cfg.color_jitter, auto_augment=cfg.rand_augment or None,
                                 interpolation="bicubic", re_prob=cfg.random_erasing, re_mode="pixel",
                                 mean=mean, std=std)
    return guard_posterize(transform)


def _posterize_any_bits(img: Image.Image, bits_to_keep: int, **_: Any) -> Image.Image:
    """timm's posterize, also for 0 bits: every value 0, as Pillow computed it before it began
    rejecting bits outside 1-8 (Pillow 13 raises)."""
    from PIL import ImageOps

    if bits_to_keep >= 8:
        return img
    if bits_to_keep < 1:
        return img.point([0] * 256 * len(img.getbands()))
    return ImageOps.posterize(img, bits_to_keep)


def guard_posterize(transform: Any) -> Any:
    """Makes the posterize ops of timm's RandAugment/AutoAugment/AugMix inside `transform` accept 0 bits.

    timm maps RandAugment magnitude 10 to 0 bits for `PosterizeIncreasing` (`...-inc1`; with
    `mstd0.5` around m9, about 2% of the draws reach 10) and magnitudes below 2.5 to 0 bits for
    `Posterize`; Pillow 13 raises on 0 bits, which killed `rand-m9-mstd0.5-inc1` runs within a few
    dozen steps. Returns `transform`, changed in place."""
    for t in getattr(transform, "transforms", [transform]):
        ops = list(getattr(t, "ops", []))
        for sub in getattr(t, "policy", []):
            ops.extend(sub)
        for op in ops:
            if getattr(op, "name", "").startswith("Posterize"):
                op.aug_fn = _posterize_any_bits
    return transform


def data_config(cfg: Any) -> dict[str, Any]:
    """The preprocessing `eval_transform` applies for `cfg`, in timm's pretrained_cfg keys: what a
    subnet trained with `cfg` advertises in its meta.json (`subnet_io.DATA_CONFIG_KEYS`)."""
    mean, std = normalisation(cfg)
    return {"mean": list(mean), "std": list(std), "crop_pct": 1.0, "interpolation": "bicubic"}


def eval_transform(cfg: Any) -> Callable:
    """Resize + centre crop (crop_pct 1.0: the whole image) + normalise."""
    from timm.data import create_transform

    d = data_config(cfg)
    return create_transform(cfg.resolution, is_training=False, crop_pct=d["crop_pct"],
                            interpolation=d["interpolation"], mean=tuple(d["mean"]), std=tuple(d["std"]))


# ------------------------------------------------------------------------------ sampling
def sample_seed(*parts: int) -> int:
    """A 63-bit seed from integers (seed, epoch, step, ...): the same on every process and run."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint64)[0] >> 1)


class ResumableSampler(Sampler):
    """Epoch-seeded shuffling, sharded over processes like DistributedSampler, resumable mid-epoch.

    Yields `(index, augmentation_seed)` keys for `Transformed`. Image `j` of batch `i` of rank `r`
    is position `start + (i * batch_size + j) * world_size + r` of the epoch's permutation, so after
    `k` steps the processes together consumed exactly its first `k * batch_size * world_size`
    images, whatever the number of processes. `set_epoch(epoch, start_sample=c)` re-enters the
    epoch after its first `c` images (`start_batch` is the same in steps of this sampler), which
    lets a run resume on another number of processes without skipping or repeating an image.
    Every shard gets the same number of whole batches (the tail of the permutation is dropped).
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1) -> None:
        self.n, self.batch_size, self.seed, self.shuffle = n, batch_size, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start_sample = 0, 0
        if self.batches_per_epoch < 1:
            raise AutovitError(f"{n} training images are fewer than one batch of {batch_size} x {world_size} "
                               "processes", hint="lower --batch-size or use more data")

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    @property
    def batches_per_epoch(self) -> int:
        return self.n // self.global_batch

    def batches_left(self, start_sample: int) -> int:
        """Whole global batches left in an epoch after its first `start_sample` images."""
        return max(self.n - start_sample, 0) // self.global_batch

    def set_epoch(self, epoch: int, start_batch: int = 0, start_sample: int | None = None) -> None:
        self.epoch = epoch
        self.start_sample = start_batch * self.global_batch if start_sample is None else start_sample

    def _order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n)
        return np.random.default_rng(sample_seed(self.seed, self.epoch, 0x5EED)).permutation(self.n)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = self._order()
        for j in range(len(self)):
            index = int(order[self.start_sample + j * self.world_size + self.rank])
            yield index, sample_seed(self.seed, self.epoch, index)

    def __len__(self) -> int:
        return self.batches_left(self.start_sample) * self.batch_size


@dataclass
class DataBundle:
    """Transformed datasets ready for loaders."""

    train: Transformed          # training transform, keys (index, seed)
    train_eval: Dataset         # training images with the eval transform (BN calibration)
    val: Dataset
    test: Dataset
    num_classes: int
    classes: tuple[str, ...]
    name: str
    in_chans: int = 3


def build_datasets(cfg: Any) -> DataBundle:
    """train/val/test datasets for `cfg` (dataset, data_dir, resolution, augmentation fields)."""
    splits = load_splits(cfg)
    ev = eval_transform(cfg)
    return DataBundle(train=Transformed(splits.train, train_transform(cfg)), train_eval=Transformed(splits.train, ev),
                      val=Transformed(splits.val, ev), test=Transformed(splits.test, ev),
                      num_classes=splits.num_classes, classes=splits.classes, name=splits.name)


def train_loader(data: DataBundle, cfg: Any, rank: int = 0, world_size: int = 1) -> DataLoader:
    sampler = ResumableSampler(len(data.train), cfg.batch_size, cfg.seed, True, rank, world_size)
    return DataLoader(data.train, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers,
                      drop_last=True, pin_memory=torch.cuda.is_available(),
                      generator=torch.Generator().manual_seed(cfg.seed),
                      persistent_workers=cfg.num_workers > 0)


def eval_loader(dataset: Dataset, batch_size: int = 256, num_workers: int = 0) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)

