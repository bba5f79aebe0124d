"""Weight-sharing supernet: elastic layers, extraction equality, gradients, inheritance,
checkpoints, weight-sharing efficiency, BN recalibration and subnet evaluation."""

from __future__ import annotations

import copy
import random

import pytest
import torch
from torch import nn

from autovit.arch import Layout, TransformerStage
from autovit.costs import count_params
from autovit.errors import ArchError, AutovitError
from autovit.model import Attention
from autovit.space import SearchSpace
from autovit.supernet import (
    Supernet,
    SubnetEvaluator,
    calibration_batches,
    evaluate,
    load_supernet_state,
    recalibrate_bn,
    supernet_state,
    weight_sharing_stats,
)
from autovit.supernet.bn_calibration import batch_images
from autovit.supernet.efficiency import layer_sharing_ratios
from autovit.supernet.elastic import (
    ElasticAttention,
    ElasticBatchNorm2d,
    ElasticConv2d,
    ElasticDepthwiseConv2d,
    ElasticLayerNorm,
    ElasticLinear,
    ElasticMlp,
    make_plan,
)

NUM_CLASSES = 10
RES = 64


@torch.no_grad()
def randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial norm affines, BN statistics and biases, so that equality tests can fail."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)):
            m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
        if isinstance(m, nn.Linear) and m.bias is not None:
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.02)
    return model


@pytest.fixture(scope="module", params=("xxs", "xs", "s"))
def supernet(request: pytest.FixtureRequest) -> Supernet:
    torch.manual_seed(0)
    return randomize_norms(Supernet(SearchSpace.builtin(request.param), num_classes=NUM_CLASSES)).eval()


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(v, b[k]) for k, v in a.items())


def _archs(space: SearchSpace, n: int, seed: int = 0) -> list:
    rng = random.Random(seed)
    return [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(n - 2)]


# ---------------------------------------------------------------------------- extraction
def test_extracted_subnets_equal_supernet(supernet: Supernet) -> None:
    x = torch.randn(2, 3, RES, RES, generator=torch.Generator().manual_seed(1))
    for arch in _archs(supernet.space, 20):
        supernet.set_active(arch)
        static = supernet.extract()
        assert static.arch == arch and not static.training
        assert sum(p.numel() for p in static.parameters()) == count_params(arch, NUM_CLASSES)
        assert supernet.active_num_params() == count_params(arch, NUM_CLASSES)
        with torch.no_grad():
            diff = (supernet(x) - static(x)).abs().max().item()
        assert diff <= 1e-5, (arch.key(), diff)


def test_layout_variants_extract_exactly() -> None:
    """Fusion conv (input channels sliced per half), head expansion, other activation and local
    kernel, and no width constraint (a wider 3rd stage than 4th)."""
    data = SearchSpace.builtin("xxs").to_dict()
    data["layout"].update(fusion_kernel=3, head_expansion=2, activation="gelu", local_kernel=5)
    data["transformer"][2]["width"] = [80, 128]
    data["constraints"] = {"nondecreasing_widths": False}
    space = SearchSpace.from_dict(data)
    torch.manual_seed(0)
    net = randomize_norms(Supernet(space, num_classes=NUM_CLASSES)).eval()
    x = torch.randn(2, 3, 32, 32)
    for arch in _archs(space, 6, seed=1):
        static = net.set_active(arch) and net.extract()
        assert net.active_num_params() == count_params(arch, NUM_CLASSES)
        with torch.no_grad():
            assert (net(x) - static(x)).abs().max().item() <= 1e-5, arch.key()


def test_supernet_stores_exactly_the_largest_subnet(supernet: Supernet) -> None:
    assert supernet.num_params() == count_params(supernet.space.largest(), NUM_CLASSES)


def test_extract_with_arch_leaves_active_arch(supernet: Supernet) -> None:
    space = supernet.space
    supernet.set_active(space.largest())
    static = supernet.extract(space.smallest())
    assert static.arch == space.smallest() and supernet.active_arch == space.largest()
    # Copies, not views: changing the subnet leaves the supernet alone.
    with torch.no_grad():
        static.stem.conv.weight.add_(1.0)
    assert not torch.equal(static.stem.conv.weight, supernet.stem.conv.weight[:space.smallest().stem_width, :, :, :])


def test_train_mode_matches_and_updates_only_active_bn_slice() -> None:
    space = SearchSpace.builtin("xxs")
    torch.manual_seed(0)
    net = randomize_norms(Supernet(space, num_classes=NUM_CLASSES))
    arch = space.smallest()
    net.set_active(arch)
    static = net.extract().train()
    net.train()
    before = net.stem.bn.running_mean.clone()
    x = torch.randn(4, 3, 32, 32)
    diff = (net(x) - static(x)).abs().max().item()
    assert diff <= 1e-5
    c = arch.stem_width
    assert not torch.equal(net.stem.bn.running_mean[:c], before[:c])
    assert torch.equal(net.stem.bn.running_mean[c:], before[c:])
    assert torch.allclose(net.stem.bn.running_mean[:c], static.stem.bn.running_mean, atol=1e-6)


# ---------------------------------------------------------------------------- set_active / sampling
def test_arch_outside_the_supernet_is_rejected() -> None:
    net = Supernet("xxs", num_classes=NUM_CLASSES)
    xs_arch = SearchSpace.builtin("xs").largest()
    with pytest.raises(ArchError, match="outside the supernet"):
        net.set_active(xs_arch)
    assert net.active_arch == net.space.largest()


def test_same_seed_gives_same_subnet_sequence() -> None:
    net = Supernet("xxs", num_classes=NUM_CLASSES)
    seq = lambda seed: [net.sample_active(random.Random(seed * 1000 + i)).key() for i in range(10)]  # noqa: E731
    assert seq(3) == seq(3)
    assert seq(3) != seq(4)


def test_depth_and_stage_skipping_uses_only_leading_layers() -> None:
    space = SearchSpace.builtin("xxs")
    net = Supernet(space, num_classes=NUM_CLASSES)
    arch = space.smallest()
    assert arch.num_transformer_stages == 3
    net.set_active(arch)
    used = {id(leaf) for leaf in net.active_leaves()}
    stage4 = net.stages[6]
    assert not any(id(m) in used for m in stage4.modules())
    layers = net.stages[3].block.layers
    depth = arch.transformer[0].depth
    assert all(id(layers[i].norm1) in used for i in range(depth))
    assert not any(id(layers[i].norm1) in used for i in range(depth, len(layers)))


# ---------------------------------------------------------------------------- gradients
def test_gradients_reach_only_the_active_slices() -> None:
    space = SearchSpace.builtin("xxs")
    torch.manual_seed(0)
    net = randomize_norms(Supernet(space, num_classes=NUM_CLASSES)).train()
    rng = random.Random(5)
    arch = next(a for a in iter(lambda: space.sample(rng), None) if a.num_transformer_stages == 3)
    net.set_active(arch)
    static = net.extract().train()
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, NUM_CLASSES, (4,))
    nn.functional.cross_entropy(net(x), y).backward()
    nn.functional.cross_entropy(static(x), y).backward()

    active = {id(leaf): leaf for leaf in net.active_leaves()}
    for name, module in net.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            if id(module) not in active:
                assert p.grad is None, f"{name}.{pname} is not in the subnet but got a gradient"
                continue
            outside = p.grad.clone()
            module._plans[pname].view(outside).zero_()
            assert torch.count_nonzero(outside) == 0, f"{name}.{pname} has gradient outside its active slice"
            sliced = module._plans[pname].apply(p.grad)
            ref = static.get_parameter(f"{name}.{pname}").grad
            # float32 round-off only: kernels may differ for the dense copy of a sliced weight
            diff = (sliced - ref).abs().max().item()
            assert diff <= 1e-4 * ref.abs().max().item() + 1e-6, f"{name}.{pname}: gradient differs by {diff}"


# ---------------------------------------------------------------------------- elastic layers
def _twin_check(layer: nn.Module, x: torch.Tensor) -> nn.Module:
    twin = layer.get_active_subnet()
    with torch.no_grad():
        assert torch.allclose(layer(x), twin(x), atol=1e-6)
    return twin


def test_elastic_conv_kernel_centre_crop_and_channels() -> None:
    torch.manual_seed(0)
    conv = ElasticConv2d(8, 6, kernel=5)
    conv.set_active(4, 3, kernel=3)
    twin = _twin_check(conv, torch.randn(2, 4, 9, 9))
    assert torch.equal(twin.weight, conv.weight[:3, :4, 1:4, 1:4])
    assert conv.active_params() == 3 * 4 * 3 * 3

    dw = ElasticDepthwiseConv2d(8, kernel=5, stride=2)
    dw.set_active(5, kernel=3)
    twin = _twin_check(dw, torch.randn(2, 5, 9, 9))
    assert twin.groups == 5 and torch.equal(twin.weight, dw.weight[:5, :, 1:4, 1:4])


def test_elastic_fusion_conv_slices_each_half() -> None:
    conv = ElasticConv2d(8, 4, kernel=3, in_groups=2)  # input = cat(a[4], b[4])
    conv.set_active(4, 3)  # cat(a[:2], b[:2])
    twin = _twin_check(conv, torch.randn(1, 4, 5, 5))
    assert torch.equal(twin.weight[:, :2], conv.weight[:3, :2]) and torch.equal(twin.weight[:, 2:], conv.weight[:3, 4:6])


def test_elastic_linear_layernorm_batchnorm_twins() -> None:
    torch.manual_seed(0)
    lin = ElasticLinear(8, 6)
    lin.set_active(5, 4)
    assert torch.equal(_twin_check(lin, torch.randn(3, 5)).weight, lin.weight[:4, :5])
    ln = randomize_norms(ElasticLayerNorm(8))
    ln.set_active(5)
    _twin_check(ln, torch.randn(3, 5))
    bn = randomize_norms(ElasticBatchNorm2d(8)).eval()
    bn.set_active(5)
    twin = _twin_check(bn, torch.randn(2, 5, 3, 3))
    assert torch.equal(twin.running_var, bn.running_var[:5])


def test_elastic_attention_uses_the_first_heads_of_each_third() -> None:
    torch.manual_seed(0)
    head_dim, max_heads, max_dim = 4, 3, 8
    attn = ElasticAttention(max_dim, max_heads, head_dim)
    attn.set_active(6, 2)
    twin = _twin_check(attn, torch.randn(2, 5, 6))
    assert isinstance(twin, Attention) and twin.heads == 2
    inner, max_inner = 2 * head_dim, max_heads * head_dim
    for t in range(3):  # q, k, v
        rows = attn.qkv.weight[t * max_inner: t * max_inner + inner, :6]
        assert torch.equal(twin.qkv.weight[t * inner:(t + 1) * inner], rows)
    assert attn.active_params() == 6 * 3 * inner + 3 * inner + inner * 6 + 6


def test_elastic_mlp_twin() -> None:
    mlp = ElasticMlp(8, 16, "silu")
    mlp.set_active(6, 9)
    assert _twin_check(mlp, torch.randn(2, 3, 6)).fc1.weight.shape == (9, 6)


def test_slice_plan_rejects_larger_targets() -> None:
    with pytest.raises(AutovitError, match="smaller"):
        make_plan((4, 4), (5, 4))
    with pytest.raises(AutovitError, match="equal parts"):
        make_plan((12, 4), (8, 4), groups=(3, 1))


# ---------------------------------------------------------------------------- cross-supernet inheritance
def _common_arch(small: SearchSpace, large: SearchSpace, seed: int) -> object:
    """An arch valid in both spaces: sampled from `small`, transformer choices moved into both."""
    rng = random.Random(seed)
    arch = small.sample(rng)
    stages = []
    for s, cs, cl in zip(arch.transformer, small.transformer, large.transformer):
        width = rng.choice(sorted(set(cs.width) & set(cl.width)))
        heads = rng.choice(sorted(set(cs.heads) & set(cl.heads)))
        ratio = rng.choice(sorted(set(cs.mlp_ratio) & set(cl.mlp_ratio)))
        stages.append(TransformerStage(width, s.depth, heads, ratio))
    return large.validate(small.validate(arch.replace(transformer=tuple(stages))))


def test_inherit_xxs_from_xs_gives_the_same_subnets() -> None:
    xxs, xs = SearchSpace.builtin("xxs"), SearchSpace.builtin("xs")
    torch.manual_seed(0)
    large = randomize_norms(Supernet(xs, num_classes=NUM_CLASSES)).eval()
    small = Supernet(xxs, num_classes=NUM_CLASSES).eval()
    small.inherit_from(supernet_state(large))
    x = torch.randn(2, 3, 32, 32)
    for seed in range(3):
        arch = _common_arch(xxs, xs, seed)
        with torch.no_grad():
            assert torch.equal(small.extract(arch)(x), large.extract(arch)(x))


def test_inherit_rejects_smaller_source_and_other_layout() -> None:
    small = Supernet("xxs", num_classes=NUM_CLASSES)
    large = Supernet("xs", num_classes=NUM_CLASSES)
    before = copy.deepcopy(large.state_dict())
    with pytest.raises(AutovitError, match="smaller"):
        large.inherit_from(small)
    assert same_state(before, large.state_dict())  # nothing copied
    other = SearchSpace.from_dict({**SearchSpace.builtin("xs").to_dict(),
                                   "layout": {**Layout().to_dict(), "head_dim": 8}})
    with pytest.raises(AutovitError, match="layout differs in head_dim"):
        small.inherit_from(Supernet(other, num_classes=NUM_CLASSES))
    with pytest.raises(AutovitError, match="classes"):
        small.inherit_from(Supernet("xs", num_classes=5))
    small.inherit_from(Supernet("xs", num_classes=5), skip_classifier=True)


# ---------------------------------------------------------------------------- checkpoints
def test_supernet_state_round_trip_and_bad_checkpoints() -> None:
    torch.manual_seed(0)
    src = randomize_norms(Supernet("xxs", num_classes=NUM_CLASSES))
    dst = Supernet("xxs", num_classes=NUM_CLASSES)
    state = supernet_state(src)
    load_supernet_state(dst, state)
    assert same_state(src.state_dict(), dst.state_dict())

    fresh = Supernet("xxs", num_classes=NUM_CLASSES)
    before = copy.deepcopy(fresh.state_dict())
    with pytest.raises(AutovitError, match="space 'xs', not of 'xxs'"):
        load_supernet_state(fresh, supernet_state(Supernet("xs", num_classes=NUM_CLASSES)))
    corrupt = {**state, "state_dict": dict(state["state_dict"])}
    last = list(corrupt["state_dict"])[-1]
    corrupt["state_dict"][last] = torch.zeros(3)
    with pytest.raises(AutovitError, match=f"'{last}' is \\[3\\]"):
        load_supernet_state(fresh, corrupt)
    del corrupt["state_dict"][last]
    with pytest.raises(AutovitError, match="missing"):
        load_supernet_state(fresh, corrupt)
    with pytest.raises(AutovitError, match="not an autovit supernet"):
        load_supernet_state(fresh, state["state_dict"])
    with pytest.raises(AutovitError, match="corrupt"):
        load_supernet_state(fresh, {"format": "autovit-supernet", "space": state["space"]})
    assert same_state(before, fresh.state_dict())  # never loaded half


# ---------------------------------------------------------------------------- weight-sharing efficiency
def test_sharing_ratios_hand_computed() -> None:
    lin = ElasticLinear(4, 4)
    # candidates (in, out): (2, 2) reads 4 + 2 params, (4, 4) reads 16 + 4; they share the 6 of (2, 2).
    assert layer_sharing_ratios(lin, [(2, 2), (4, 4)]) == pytest.approx([1.0, 6 / 20])
    attn = ElasticAttention(4, 2, 2)
    # (dim 4, 1 head) vs (dim 4, 2 heads): qkv 4*6+6 vs 4*12+12, proj 2*4+4 vs 4*4+4.
    small, big = 4 * 6 + 6 + 2 * 4 + 4, 4 * 12 + 12 + 4 * 4 + 4
    assert layer_sharing_ratios(attn, [(4, 1), (4, 2)]) == pytest.approx([1.0, small / big])


def test_weight_sharing_stats_xxs() -> None:
    stats = weight_sharing_stats("xxs", num_classes=NUM_CLASSES)
    assert 0.5 < stats.efficiency < 1.0
    assert stats.supernet_params == Supernet("xxs", num_classes=NUM_CLASSES).num_params()
    assert stats.separate_params > 4 * stats.supernet_params
    # 38 layers: stem, 2+3+3 MBConv slots, 4 x (transition, block convs, 5 transformer layers), head.
    assert stats.num_layers == 38


# ---------------------------------------------------------------------------- BN recalibration
def test_recalibrated_bn_statistics_are_the_subset_statistics() -> None:
    bn = nn.BatchNorm2d(3)
    model = nn.Sequential(bn, nn.Dropout(0.5)).train()
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 3, 5, 5, generator=g) * 2 + 1, torch.randn(2, 3, 5, 5, generator=g) - 3
    assert recalibrate_bn(model, [a], num_batches=1) == 4
    assert torch.allclose(bn.running_mean, a.mean(dim=(0, 2, 3)), atol=1e-6)
    assert torch.allclose(bn.running_var, a.var(dim=(0, 2, 3), unbiased=True), atol=1e-5)
    recalibrate_bn(model, [(a, None), (b, None), (a * 100, None)], num_batches=2)
    assert torch.allclose(bn.running_mean, torch.cat([a, b]).mean(dim=(0, 2, 3)), atol=1e-6)
    var = (4 * a.var(dim=(0, 2, 3)) + 2 * b.var(dim=(0, 2, 3))) / 6
    assert torch.allclose(bn.running_var, var, atol=1e-5)
    assert model.training and bn.momentum == 0.1 and model[1].training


def test_recalibration_on_supernet_equals_recalibrating_the_subnet() -> None:
    space = SearchSpace.builtin("xxs")
    torch.manual_seed(0)
    net = randomize_norms(Supernet(space, num_classes=NUM_CLASSES)).eval()
    arch = space.sample(random.Random(2))
    net.set_active(arch)
    static = net.extract()
    batches = [torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    recalibrate_bn(net, batches, 2)
    recalibrate_bn(static, batches, 2)
    assert not net.training
    first_bn = net.stages[0][0].dw.bn
    assert torch.allclose(first_bn.running_mean[:first_bn.active_channels], static.stages[0][0].dw.bn.running_mean,
                          atol=1e-5)
    with torch.no_grad():
        assert (net(batches[2]) - static(batches[2])).abs().max().item() <= 1e-4


class _Pairs(torch.utils.data.Dataset):
    def __init__(self, n: int, classes: int = NUM_CLASSES, size: int = 32) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, size, size, generator=g)
        self.y = torch.randint(0, classes, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i] + torch.rand(()) * 0.01, int(self.y[i])  # a random "transform"


def test_calibration_batches_are_fixed_by_the_seed() -> None:
    data = _Pairs(20)
    a, b = calibration_batches(data, 10, 4, seed=1), calibration_batches(data, 10, 4, seed=1)
    assert [x.shape[0] for x, _ in a] == [4, 4, 2]
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))
    c = calibration_batches(data, 10, 4, seed=2)
    assert not torch.equal(a[0][0], c[0][0])
    with pytest.raises(AutovitError):
        calibration_batches(data, 0, 4)


# ---------------------------------------------------------------------------- evaluation
class _FixedLogits(nn.Module):
    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = nn.Parameter(logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits[x.long().flatten()]


def test_evaluate_hand_computed() -> None:
    logits = torch.tensor([[5.0, 4, 3, 2, 1, 0], [0, 1, 2, 3, 4, 5], [0, 0, 0, 9, 0, 0], [1, 2, 3, 4, 5, 6]])
    model = _FixedLogits(logits)
    x = torch.arange(4)[:, None]
    y = torch.tensor([0, 0, 3, 1])  # top-1 hits: 0 and 2; top-5 misses only sample 1 (class 0 is last)
    out = evaluate(model, [(x[:2], y[:2]), (x[2:], y[2:])])
    assert out["top1"] == 50.0 and out["top5"] == 75.0 and out["images"] == 4
    assert out["loss"] == pytest.approx(nn.functional.cross_entropy(logits, y).item(), rel=1e-6)


def _evaluator_setup() -> tuple[SearchSpace, Supernet, list, list, dict]:
    """(space, supernet in train mode, 2 calibration batches, 2 validation batches, its state)."""
    space = SearchSpace.builtin("xxs")
    torch.manual_seed(0)
    net = randomize_norms(Supernet(space, num_classes=NUM_CLASSES)).train()
    data = _Pairs(12)
    calib = calibration_batches(data, 8, 4, seed=0)
    val = [(data.x[:6], data.y[:6]), (data.x[6:], data.y[6:])]
    return space, net, calib, val, copy.deepcopy(net.state_dict())


def test_subnet_evaluator_restores_supernet_and_memoises() -> None:
    space, net, calib, val, before = _evaluator_setup()
    evaluator = SubnetEvaluator(net, calib, val, calib_batches=2)
    arch = space.sample(random.Random(1))
    top1 = evaluator(arch)
    assert 0.0 <= top1 <= 100.0
    assert net.training and net.active_arch == space.largest()
    assert same_state(before, net.state_dict())
    # Same number as recalibrating and evaluating the extracted subnet.
    static = net.extract(arch)
    recalibrate_bn(static, calib, 2)
    assert evaluate(static, val)["top1"] == pytest.approx(top1)
    evaluator.calib = None  # a second call must not recalibrate again
    assert evaluator(arch) == top1 and list(evaluator.results) == [arch.key()]


def test_subnet_evaluator_autocast_runs_calibration_and_evaluation_in_bf16() -> None:
    space, net, calib, val, before = _evaluator_setup()
    seen: list[tuple[bool, torch.dtype]] = []
    hook = net.head.register_forward_hook(
        lambda m, i, out: seen.append((torch.is_autocast_enabled("cpu"), out.dtype)))
    arch = space.sample(random.Random(1))
    bf16 = SubnetEvaluator(net, calib, val, calib_batches=2, eval_dtype="bfloat16").evaluate(arch)
    assert seen == [(True, torch.bfloat16)] * 4  # 2 calibration + 2 evaluation batches
    assert same_state(before, net.state_dict()) and net.active_arch == space.largest()
    seen.clear()
    fp32 = SubnetEvaluator(net, calib, val, calib_batches=2).evaluate(arch)
    hook.remove()
    assert seen == [(False, torch.float32)] * 4
    assert bf16["loss"] == pytest.approx(fp32["loss"], rel=0.05) and bf16["loss"] != fp32["loss"]
    with pytest.raises(AutovitError, match="float64"):
        SubnetEvaluator(net, calib, val, eval_dtype="float64")


def test_batch_images_rejects_unknown_batches() -> None:
    with pytest.raises(AutovitError, match="images"):
        batch_images("not a batch")
