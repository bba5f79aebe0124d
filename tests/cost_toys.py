"""Costs counted on built networks, to check the closed-form params/MACs against (test helpers)."""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, flop_registry


class RegistryFlopCounter(TorchDispatchMode):
    """FlopCounterMode's per-op formulas (`flop_registry`) without its per-module bookkeeping,
    which costs more than the forward itself; checked equal to FlopCounterMode below."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        count = flop_registry.get(func._overloadpacket)
        if count is not None:
            self.total += count(*args, **kwargs, out_val=out)
        return out


def counted(model: torch.nn.Module, side: int, fast: bool = False) -> tuple[int, int]:
    """(params, MACs) counted on the built network: numel and FlopCounterMode FLOPs / 2."""
    counter = RegistryFlopCounter() if fast else FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.eval()(torch.zeros(1, 3, side, side))
    flops = counter.total if fast else counter.get_total_flops()
    assert flops % 2 == 0
    return sum(p.numel() for p in model.parameters()), flops // 2
