"""Generic static torch layers shared by every block kind: activation, Conv+BN+act, multi-head
attention and MLP (their elastic twins live in `autovit.blocks.elastic`)."""

# No `from __future__ import annotations` here: torch.fx copies forward()'s annotations into the
# code it generates, and string annotations there break scripting an FX graph (timm's fx + jit test).
import torch
from torch import nn


def make_activation(name: str) -> nn.Module:
    return {"silu": nn.SiLU, "relu": nn.ReLU, "gelu": nn.GELU, "hardswish": nn.Hardswish}[name]()


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias) + BatchNorm2d + optional activation."""

    def __init__(self, in_chs: int, out_chs: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 act: str | None = "silu") -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_chs)
        self.act = make_activation(act) if act else nn.Identity()


def multi_head_attention(qkv: torch.Tensor, heads: int, head_dim: int, scale: float) -> torch.Tensor:
    """Scaled dot-product attention on the output of a fused projection laid out as
    [q heads | k heads | v heads]: [B, N, 3 * heads * head_dim] -> [B, N, heads * head_dim]."""
    B, N, _ = qkv.shape
    qkv = qkv.reshape(B, N, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    attn = ((q * scale) @ k.transpose(-2, -1)).softmax(dim=-1)
    return (attn @ v).transpose(1, 2).reshape(B, N, heads * head_dim)


class Attention(nn.Module):
    """Multi-head self-attention with a fixed head dim: inner width = heads * head_dim.

    qkv rows are laid out as [q heads | k heads | v heads], so the first h heads of a larger
    block are a prefix slice of each third (weight inheritance in the supernet).
    """

    def __init__(self, dim: int, heads: int, head_dim: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.scale = head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * heads * head_dim)
        self.proj = nn.Linear(heads * head_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(multi_head_attention(self.qkv(x), self.heads, self.head_dim, self.scale))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, act: str) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = make_activation(act)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))

