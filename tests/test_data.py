"""Datasets: digits / .npz CIFAR layout / ImageFolder, the seeded validation hold-out, resumable
sampling, per-sample augmentation seeds and clear errors."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from train_toys import tiny_config

from autovit.data import (
    ResumableSampler,
    build_datasets,
    load_cifar10_splits,
    load_digits_splits,
    load_splits,
    normalisation,
    train_loader,
)
from autovit.errors import AutovitError


def test_digits_splits_are_disjoint_seeded_and_complete() -> None:
    s = load_digits_splits(val_size=0.1, val_seed=0)
    assert (len(s.train), len(s.val), len(s.test)) == (1294, 144, 359) and s.num_classes == 10
    assert not set(s.train.indices) & set(s.val.indices)
    assert len(s.train) + len(s.val) == len(s.train.base)
    again, other = load_digits_splits(0.1, 0), load_digits_splits(0.1, 1)
    assert np.array_equal(again.val.indices, s.val.indices)
    assert not np.array_equal(other.val.indices, s.val.indices)
    assert len(load_digits_splits(val_size=100).val) == 100


def test_digits_images_resized_to_the_configured_resolution() -> None:
    data = build_datasets(tiny_config(resolution=24))
    x, y = data.val[0]
    assert x.shape == (3, 24, 24) and x.dtype == torch.float32 and 0 <= y < 10
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])  # gray replicated to 3 channels


def _write_npz_cifar(root: Path, n_train: int = 40, n_test: int = 20) -> None:
    rng = np.random.default_rng(0)
    for name, n in (("train_part1", n_train // 2), ("train_part2", n_train - n_train // 2), ("test", n_test)):
        np.savez_compressed(root / f"{name}.npz", x=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
                            y=rng.integers(0, 10, n))


def test_cifar10_from_npz_folder(tmp_path: Path) -> None:
    _write_npz_cifar(tmp_path)
    s = load_cifar10_splits(tmp_path, val_size=10)
    assert (len(s.train), len(s.val), len(s.test)) == (30, 10, 20) and s.classes[0] == "airplane"
    data = build_datasets(tiny_config(dataset="cifar10", data_dir=str(tmp_path), val_size=10, resolution=16))
    assert data.test[0][0].shape == (3, 16, 16)


def test_missing_or_bad_data_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AutovitError, match=f"CIFAR-10 not found in {tmp_path}") as err:
        load_cifar10_splits(tmp_path)
    assert "--data-dir" in err.value.hint and "--download" in err.value.hint
    with pytest.raises(AutovitError, match="needs a data directory"):
        load_cifar10_splits(None)
    (tmp_path / "train_part1.npz").write_bytes(b"not a zip")
    (tmp_path / "test.npz").write_bytes(b"not a zip")
    with pytest.raises(AutovitError, match="cannot read"):
        load_cifar10_splits(tmp_path)
    with pytest.raises(AutovitError, match="unknown dataset 'mnist'"):
        load_splits(tiny_config(dataset="mnist"))
    with pytest.raises(AutovitError, match="image folder split not found"):
        load_splits(tiny_config(dataset="imagefolder", data_dir=str(tmp_path)))
    with pytest.raises(AutovitError, match="leaves no training images"):
        load_digits_splits(val_size=5000)


def test_imagefolder_layout(tmp_path: Path) -> None:
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(5):
                Image.new("RGB", (20, 20), (i * 40, 0, 0)).save(tmp_path / split / cls / f"{i}.png")
    data = build_datasets(tiny_config(dataset="imagefolder", data_dir=str(tmp_path), val_size=2))
    assert (len(data.train), len(data.val), len(data.test)) == (8, 2, 10)
    assert data.classes == ("cat", "dog") and data.val[0][0].shape == (3, 16, 16)
    assert normalisation(tiny_config(dataset="imagefolder", mean=(0.1, 0.2, 0.3)))[0] == (0.1, 0.2, 0.3)


def test_sampler_resumes_mid_epoch_and_shards_ranks() -> None:
    full = list(ResumableSampler(100, 8, seed=3))
    assert len(full) == 96 and len({i for i, _ in full}) == 96
    tail = ResumableSampler(100, 8, seed=3)
    tail.set_epoch(0, start_batch=5)
    assert list(tail) == full[40:] and len(tail) == 56
    nxt = ResumableSampler(100, 8, seed=3)
    nxt.set_epoch(1)
    assert [i for i, _ in nxt] != [i for i, _ in full]
    shards = [list(ResumableSampler(100, 8, seed=3, rank=r, world_size=2)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 48 and not {i for i, _ in shards[0]} & {i for i, _ in shards[1]}
    with pytest.raises(AutovitError, match="fewer than one batch"):
        ResumableSampler(10, 8, world_size=2)


def test_augmentation_is_a_function_of_the_sample_seed_and_keeps_global_rngs() -> None:
    data = build_datasets(tiny_config(rand_augment="rand-m9-mstd0.5-inc1", random_erasing=0.5,
                                      crop_scale=(0.2, 1.0)))
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    states = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    a, b, c = data.train[(3, 11)], data.train[(3, 11)], data.train[(3, 12)]
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])
    assert random.getstate() == states[0] and np.array_equal(np.random.get_state()[1], states[1])
    assert torch.equal(torch.get_rng_state(), states[2])


def test_train_loader_batches() -> None:
    cfg = tiny_config(batch_size=32)
    data = build_datasets(cfg)
    loader = train_loader(data, cfg)
    x, y = next(iter(loader))
    assert x.shape == (32, 3, 16, 16) and y.shape == (32,)
    assert len(loader) == len(data.train) // 32
