"""Training: config, per-step subnet seeds, exact resume, checkpoint errors, init-from, outputs, CLI."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
import torch
from train_toys import TRAIN_SPACE, tiny_config, train_space
from typer.testing import CliRunner

from autovit.data import build_datasets
from autovit.errors import AutovitError
from autovit.model import AutoViT
from autovit.supernet import Supernet
from autovit.train.checkpoint import load_model_from_checkpoint, read_checkpoint
from autovit.train.config import TrainConfig
from autovit.train.trainer import Trainer, step_archs


@pytest.fixture(scope="module")
def data():
    return build_datasets(tiny_config())


class Interrupt(Exception):
    pass


def _supernet(seed: int = 0, drop_rate: float = 0.0) -> Supernet:
    torch.manual_seed(seed)
    return Supernet(train_space(), num_classes=10, drop_rate=drop_rate)


# ------------------------------------------------------------------------------ config
def test_config_yaml_round_trip_and_flags(tmp_path: Path) -> None:
    cfg = TrainConfig().replace(lr=0.01, crop_scale=[0.5, 1.0], rand_augment=None, max_steps="7")
    cfg.save_yaml(tmp_path / "c.yaml")
    back = TrainConfig.from_yaml(tmp_path / "c.yaml")
    assert back == cfg and back.crop_scale == (0.5, 1.0) and back.max_steps == 7
    flags = TrainConfig().replace(amp="false", clip_grad="1.5", rand_augment=None)
    assert flags.amp is False and flags.clip_grad == 1.5 and flags.rand_augment is None


@pytest.mark.parametrize("changes,message", [
    (dict(lrr=1.0), "unknown training option 'lrr'"),
    (dict(batch_size="big"), "option 'batch_size' expects int"),
    (dict(crop_scale=[0.1, 0.5, 1.0]), "expects 2 values"),
    (dict(sampling="greedy"), "unknown sampling 'greedy'"),
    (dict(kd="soft"), "needs a teacher"),
    (dict(kd_alpha=1.5), "kd_alpha must be in"),
])
def test_config_errors(changes: dict, message: str) -> None:
    with pytest.raises(AutovitError, match=message):
        TrainConfig().replace(**changes)


def test_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(AutovitError, match="training config not found"):
        TrainConfig.from_yaml(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("lr: [1, 2\n")
    with pytest.raises(AutovitError, match="malformed YAML"):
        TrainConfig.from_yaml(tmp_path / "bad.yaml")


# ------------------------------------------------------------------------------ subnet seeds
def test_same_seed_same_subnet_sequence_and_different_seed_differs() -> None:
    space = train_space()
    seq = [step_archs(space, 7, s, "uniform")[0].key() for s in range(30)]
    assert seq == [step_archs(space, 7, s, "uniform")[0].key() for s in range(30)]
    assert seq != [step_archs(space, 8, s, "uniform")[0].key() for s in range(30)]
    assert len(set(seq)) > 10  # really sampled, not a constant
    # the sequence does not depend on any global RNG state (no communication between ranks needed)
    random.seed(123)
    torch.manual_seed(123)
    assert seq == [step_archs(space, 7, s, "uniform")[0].key() for s in range(30)]
    sandwich = step_archs(space, 7, 3, "sandwich", 3)
    assert [a.key() for a in sandwich[:2]] == [space.largest().key(), space.smallest().key()] and len(sandwich) == 5


def test_trainer_samples_the_step_sequence(data) -> None:
    cfg = tiny_config(max_steps=3, seed=5)
    logs = Trainer(cfg, _supernet(), data).fit()
    assert [log.archs[0] for log in logs] == [step_archs(train_space(), 5, s, "uniform")[0].key() for s in range(3)]


# ------------------------------------------------------------------------------ resume
RECIPE = dict(mixup=0.8, cutmix=1.0, rand_augment="rand-m9-mstd0.5-inc1", random_erasing=0.25, drop_rate=0.2,
              label_smoothing=0.1, warmup_steps=2)


def _timm_model(strides_changed: bool = False, name: str = "mobilenetv3_small_050") -> torch.nn.Module:
    import timm

    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10, in_chans=3, drop_rate=0.2)
    if strides_changed:  # same tensor shapes, another layout (what a CIFAR variant changes)
        model.conv_stem.stride = (1, 1)
    return model


@pytest.mark.parametrize("kind", ["supernet", "standalone", "timm"])
def test_interrupted_and_resumed_run_equals_uninterrupted(kind: str, data, tmp_path: Path) -> None:
    cfg = tiny_config(max_steps=7, ckpt_every_steps=3, **RECIPE, sampling="sandwich" if kind == "supernet" else "uniform",
                      sandwich_random=1, log_every_steps=1)

    def model():
        torch.manual_seed(0)
        if kind == "supernet":
            return Supernet(train_space(), num_classes=10, drop_rate=0.2)
        if kind == "timm":  # any other module (the baselines): class + structure + state dict
            return _timm_model()
        return AutoViT(train_space().smallest(), num_classes=10, drop_rate=0.2)

    full = Trainer(cfg, model(), data, out_dir=tmp_path / "full").fit()

    run = tmp_path / "cut"
    first = Trainer(cfg, model(), data, out_dir=run)

    def kill_at_5(trainer, log):
        if log.step == 5:
            raise Interrupt

    first.callbacks.append(kill_at_5)
    with pytest.raises(Interrupt):
        first.fit()
    assert read_checkpoint(run / "checkpoints" / "last.pt")["step"] == 3  # lost only steps 4-5
    second = Trainer(cfg, model(), data, out_dir=run)
    second.resume(run / "checkpoints" / "last.pt")
    rest = second.fit()
    assert [log.step for log in rest] == [4, 5, 6, 7]
    assert [log.loss for log in rest] == [log.loss for log in full[3:]]  # bitwise
    a, b = Trainer(cfg, model(), data), second
    a.resume(tmp_path / "full" / "checkpoints" / "last.pt")
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    rows = list(csv.DictReader(open(run / "train_log.csv")))
    assert [int(r["step"]) for r in rows] == list(range(1, 8))  # rows of the lost steps were replaced
    if kind == "timm":  # its final weights: model.safetensors, loadable into the same module
        from safetensors.torch import load_model, safe_open

        with safe_open(str(run / "model.safetensors"), "pt") as f:
            assert f.metadata()["class"] == "timm.models.mobilenetv3.MobileNetV3"
        fresh = _timm_model()
        load_model(fresh, str(run / "model.safetensors"))
        assert all(torch.equal(x, y) for x, y in zip(fresh.state_dict().values(), b.model.state_dict().values()))


def test_corrupt_or_foreign_checkpoint_loads_nothing(data, tmp_path: Path) -> None:
    cfg = tiny_config(max_steps=1)
    Trainer(cfg, _supernet(), data, out_dir=tmp_path / "run").fit()
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    trainer = Trainer(cfg, _supernet(seed=1), data)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}

    def unchanged() -> bool:
        return all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())

    broken = tmp_path / "broken.pt"
    broken.write_bytes(ckpt.read_bytes()[:5000])
    with pytest.raises(AutovitError, match="corrupt or unreadable checkpoint"):
        trainer.resume(broken)
    other = Trainer(cfg, Supernet(_other_space(), num_classes=10), data)
    with pytest.raises(AutovitError, match="supernet of space 'other', not of 'train-tiny'"):
        trainer.resume(_checkpoint_of(other, tmp_path / "other"))
    with pytest.raises(AutovitError, match="checkpoint not found"):
        trainer.resume(tmp_path / "nope.pt")
    torch.save({"format": "something"}, tmp_path / "alien.pt")
    with pytest.raises(AutovitError, match="not an autovit checkpoint"):
        trainer.resume(tmp_path / "alien.pt")
    assert unchanged()
    trainer.resume(ckpt)
    assert not unchanged() and trainer.step == 1


def _other_space():
    from autovit.space import SearchSpace

    return SearchSpace.from_yaml_text(TRAIN_SPACE.replace("stem_width: [8, 12]", "stem_width: [8, 16]")
                                      .replace("name: train-tiny", "name: other"))


def _checkpoint_of(trainer: Trainer, out: Path) -> Path:
    trainer.out_dir = out
    return trainer.save_checkpoint()


def test_standalone_checkpoint_of_another_arch_is_rejected(data, tmp_path: Path) -> None:
    cfg = tiny_config(max_steps=1)
    space = train_space()
    Trainer(cfg, AutoViT(space.largest(), num_classes=10), data, out_dir=tmp_path / "a").fit()
    other = Trainer(cfg, AutoViT(space.smallest(), num_classes=10), data)
    with pytest.raises(AutovitError, match="another architecture"):
        other.resume(tmp_path / "a" / "checkpoints" / "last.pt")
    with pytest.raises(AutovitError, match="subnet training run, this is a supernet run"):
        Trainer(cfg, _supernet(), data).resume(tmp_path / "a" / "checkpoints" / "last.pt")


def test_checkpoint_of_another_module_is_rejected(data, tmp_path: Path) -> None:
    cfg = tiny_config(max_steps=1)
    Trainer(cfg, _timm_model(), data, out_dir=tmp_path / "t").fit()
    ckpt = tmp_path / "t" / "checkpoints" / "last.pt"
    with pytest.raises(AutovitError, match="another structure .*strides differ"):
        Trainer(cfg, _timm_model(strides_changed=True), data).resume(ckpt)
    with pytest.raises(AutovitError, match="holds timm.models.mobilenetv3.MobileNetV3, but a timm.models.efficientnet"):
        Trainer(cfg, _timm_model(name="efficientnet_b0"), data).resume(ckpt)
    with pytest.raises(AutovitError, match="holds another kind of model, but a single AutoViT subnet"):
        Trainer(cfg, AutoViT(train_space().smallest(), num_classes=10), data).resume(ckpt)
    Trainer(cfg, AutoViT(train_space().smallest(), num_classes=10), data, out_dir=tmp_path / "a").fit()
    with pytest.raises(AutovitError, match="holds an AutoViT subnet or supernet, but a timm.models.mobilenetv3"):
        Trainer(cfg, _timm_model(), data).resume(tmp_path / "a" / "checkpoints" / "last.pt")


# ------------------------------------------------------------------------------ init-from, outputs
def test_init_from_larger_supernet_slices_its_weights(data, tmp_path: Path) -> None:
    big_space = _other_space()  # stem width up to 16 > 12
    big = Supernet(big_space, num_classes=10)
    big_trainer = Trainer(tiny_config(max_steps=1), big, data, out_dir=tmp_path / "big")
    big_trainer.fit()
    small = Trainer(tiny_config(max_steps=1, init_from=str(tmp_path / "big" / "supernet.pt")), _supernet(seed=3), data)
    assert torch.equal(small.model.stem.conv.weight, big.stem.conv.weight[:12])
    assert torch.equal(small.model.head.fc.weight, big.head.fc.weight)


def test_outputs_and_standalone_fine_tuning_from_supernet(data, tmp_path: Path) -> None:
    cfg = tiny_config(max_steps=2, log_every_steps=1, tensorboard=True)
    trainer = Trainer(cfg, _supernet(), data, out_dir=tmp_path / "run")
    trainer.fit()
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.yaml", "checkpoints", "supernet.pt", "train_log.csv", "summary.json", "tb"} <= names
    assert TrainConfig.from_yaml(tmp_path / "run" / "config.yaml") == cfg
    arch = train_space().sample(random.Random(1))
    sub = load_model_from_checkpoint(tmp_path / "run" / "supernet.pt", arch)
    ref = trainer.model.extract(arch)
    assert all(torch.equal(a, b) for a, b in zip(sub.state_dict().values(), ref.state_dict().values()))
    tuned = Trainer(cfg.replace(init_from=str(tmp_path / "run" / "supernet.pt")), AutoViT(arch, num_classes=10), data)
    assert all(torch.equal(a, b) for a, b in zip(tuned.model.state_dict().values(), ref.state_dict().values()))
    res = tuned.evaluate_val()
    assert set(res) == {"model"} and res["model"]["images"] == len(data.val)


# ------------------------------------------------------------------------------ CLI
def test_cli_train_eval_and_standalone(tmp_path: Path) -> None:
    from autovit.cli import app

    space_file = tmp_path / "space.yaml"
    space_file.write_text(TRAIN_SPACE)
    runner = CliRunner()
    run = tmp_path / "sn"
    res = runner.invoke(app, ["supernet", "train", "--space", str(space_file), "--preset", "tiny", "--max-steps", "2",
                              "--out", str(run), "--set", "ckpt_every_steps=1", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output[res.output.index("{"):])["steps"] == 2
    res = runner.invoke(app, ["supernet", "train", "--space", str(space_file), "--preset", "tiny", "--max-steps", "3",
                              "--out", str(run), "--resume"])
    assert res.exit_code == 0, res.output
    assert read_checkpoint(run)["step"] == 3
    arch_file = tmp_path / "arch.json"
    train_space().smallest().save(arch_file)
    res = runner.invoke(app, ["supernet", "eval", "--supernet", str(run / "supernet.pt"), "--arch", str(arch_file),
                              "--arch", "largest", "--set", "calib_images=32", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)["results"]
    assert [r["arch"] for r in rows] == [str(arch_file), "largest"] and all(0 <= r["top1"] <= 100 for r in rows)
    res = runner.invoke(app, ["train", "--arch", str(arch_file), "--space", str(space_file), "--preset", "tiny",
                              "--max-steps", "2", "--out", str(tmp_path / "alone")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "alone" / "subnet" / "model.safetensors").is_file()
    # the subnet advertises the preprocessing it was trained with (timm's pretrained_cfg), not ImageNet's
    from autovit.data import data_config
    from autovit.subnet_io import load_subnet

    trained_cfg = TrainConfig.from_yaml(tmp_path / "alone" / "config.yaml")
    pretrained = load_subnet(tmp_path / "alone" / "subnet").pretrained_cfg
    assert {k: (list(pretrained[k]) if k in ("mean", "std") else pretrained[k]) for k in data_config(trained_cfg)} \
        == data_config(trained_cfg)
    # `export --subnet` takes the subnet folder or the training checkpoint (old spelling: --checkpoint)
    for i, args in enumerate((["--subnet", str(tmp_path / "alone" / "subnet")],
                              ["--checkpoint", str(tmp_path / "alone" / "checkpoints" / "last.pt")])):
        res = runner.invoke(app, ["export", *args, "--formats", "safetensors", "--out", str(tmp_path / f"exp{i}"),
                                  "--json"])
        assert res.exit_code == 0, res.output
        assert (tmp_path / f"exp{i}" / "model.safetensors").is_file()


def test_cli_errors_are_one_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from autovit.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["supernet", "train", "--dataset", "cifar10", "--data-dir", str(tmp_path / "none"), "--preset", "tiny",
              "--max-steps", "1", "--out", str(tmp_path / "x")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "CIFAR-10 not found" in err and "--data-dir" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exit_info:
        main(["supernet", "eval", "--supernet", str(tmp_path / "missing.pt")])
    assert exit_info.value.code == 2 and "checkpoint not found" in capsys.readouterr().err


def test_cli_info_json() -> None:
    from autovit.cli import app

    res = CliRunner().invoke(app, ["supernet", "info", "xxs", "--json", "--num-classes", "10"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["supernet_params"] == Supernet("xxs", num_classes=10).num_params()
    assert 0 < info["efficiency"] <= 1 and info["largest_subnet_params"] == info["supernet_params"]
