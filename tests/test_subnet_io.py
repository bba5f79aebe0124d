"""Saving and reloading standalone subnets (safetensors + arch.json + meta.json)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from autovit.errors import AutovitError
from autovit.model import AutoViT
from autovit.space import SearchSpace
from autovit.subnet_io import load_subnet, read_subnet_meta, save_subnet
from autovit.supernet import Supernet


@pytest.fixture(scope="module")
def subnet() -> AutoViT:
    torch.manual_seed(0)
    space = SearchSpace.builtin("xxs")
    net = Supernet(space, num_classes=7)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net.extract(space.sample(random.Random(3))).eval()


def test_round_trip_is_exact(subnet: AutoViT, tmp_path: Path) -> None:
    out = save_subnet(subnet, tmp_path / "sub", extra_meta={"top1": 12.5})
    assert sorted(p.name for p in out.iterdir()) == ["arch.json", "meta.json", "model.safetensors"]
    loaded = load_subnet(out)
    assert loaded.arch == subnet.arch and not loaded.training
    ref, got = subnet.state_dict(), loaded.state_dict()
    assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(subnet(x), loaded(x))
    meta = read_subnet_meta(out)
    assert meta["num_classes"] == 7 and meta["in_chans"] == 3 and meta["top1"] == 12.5
    assert meta["arch_key"] == subnet.arch.key() and "autovit_version" in meta
    assert json.loads((out / "arch.json").read_text())["stem_width"] == subnet.arch.stem_width


def test_missing_and_corrupt_files_fail_clearly(subnet: AutoViT, tmp_path: Path) -> None:
    with pytest.raises(AutovitError, match="not found"):
        load_subnet(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AutovitError, match="meta.json is missing"):
        load_subnet(tmp_path / "empty")

    d = save_subnet(subnet, tmp_path / "a")
    weights = d / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(AutovitError, match="checksum"):
        load_subnet(d)

    d = save_subnet(subnet, tmp_path / "b")
    (d / "arch.json").unlink()
    with pytest.raises(AutovitError, match="arch.json is missing"):
        load_subnet(d)

    d = save_subnet(subnet, tmp_path / "c")
    (d / "meta.json").write_text("{not json")
    with pytest.raises(AutovitError, match="not valid JSON"):
        load_subnet(d)


def test_weights_that_do_not_fit_the_arch_fail_clearly(subnet: AutoViT, tmp_path: Path) -> None:
    d = save_subnet(subnet, tmp_path / "d")
    meta = json.loads((d / "meta.json").read_text())
    meta["num_classes"] = 3
    del meta["sha256"]  # a hand-edited description without checksums
    (d / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(AutovitError, match="do not fit arch.json"):
        load_subnet(d)


def test_save_needs_a_static_network(tmp_path: Path) -> None:
    with pytest.raises(AutovitError, match="extract"):
        save_subnet(Supernet("xxs", num_classes=7), tmp_path)  # type: ignore[arg-type]
