"""The attention and the block every Transformer here is made of: the sequence encoder, the ViT and the GPT
decoder, so that an option (RMSNorm, SwiGLU, rotary positions, grouped-query attention, a KV cache) is written
once.

Parameter names follow ``torch.nn.TransformerEncoderLayer`` (``attn.qkv``/``attn.proj`` as its fused in/out
projections, ``linear1``/``linear2``, ``norm1``/``norm2``): weights copy across one-to-one, and checkpoints
of the encoder models load unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Norm = Literal["layernorm", "rmsnorm"]
Activation = Literal["relu", "gelu", "gelu_tanh", "swiglu"]


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    causal: bool = False,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """softmax(q k^T / sqrt(hs)) v over real keys (and earlier positions if ``causal``).

    q: (B, nh, L, hs); k, v: (B, nkv, L, hs), nkv dividing nh (grouped-query attention: SDPA reads each
    key/value head for its group of query heads, no copies); mask: (B, L) bool, True at real positions
    -> (B, nh, L, hs).
    """
    attn_mask = None
    if mask is not None:
        attn_mask = mask[:, None, None, :]  # keys only: padded keys get no weight
        if causal:
            L = q.shape[-2]
            attn_mask = attn_mask & torch.ones(L, L, dtype=torch.bool, device=q.device).tril()
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=causal and mask is None,
        enable_gqa=k.shape[1] != q.shape[1],
    )  # fmt: skip


def attention_weights(
    q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None = None, causal: bool = False
) -> torch.Tensor:
    """softmax(q k^T / sqrt(hs)) written out, for looking at: (B, nh, L, L); rows sum to 1 over real keys."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    L = q.shape[-2]
    allowed = torch.ones(L, L, dtype=torch.bool, device=q.device)
    if causal:
        allowed = allowed.tril()
    if mask is not None:
        allowed = allowed & mask[:, None, None, :]
    return scores.masked_fill(~allowed, float("-inf")).softmax(-1)


class Rotary(nn.Module):
    """Rotary position embedding (Su et al. 2021) in the half-split layout of GPT-NeoX and Llama: dimension
    ``i`` of the first half rotates with dimension ``i`` of the second, at frequency ``base^(-2i / hs)``."""

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary positions need an even head width, got {head_dim}")
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

        self._last: tuple | None = (
            None  # (key, cos, sin): every layer of a forward asks for the same positions
        )

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """x: (B, nh, T, hs) at positions ``start .. start + T - 1`` -> x rotated, same shape."""
        T = x.shape[-2]
        key = (start, T, x.device, x.dtype, self.inv_freq.data_ptr())
        if self._last is None or self._last[0] != key or torch.is_grad_enabled():
            positions = torch.arange(start, start + T, device=x.device, dtype=torch.float32)
            angles = torch.outer(positions, self.inv_freq)  # (T, hs / 2)
            self._last = (key, angles.cos().to(x.dtype), angles.sin().to(x.dtype))
        _, cos, sin = self._last
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


@dataclass
class KVCache:
    """Keys and values of the positions seen so far, one per attention layer: (B, n_kv, max_len, hs) each,
    written in place as generation goes."""

    k: torch.Tensor
    v: torch.Tensor

    @classmethod
    def empty(cls, batch: int, kv_heads: int, max_len: int, head_dim: int, like: torch.Tensor) -> KVCache:
        shape = (batch, kv_heads, max_len, head_dim)
        return cls(like.new_empty(shape), like.new_empty(shape))  # positions are read only once written

    def update(self, k: torch.Tensor, v: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new positions' keys and values; return those of every position up to them."""
        end = start + k.shape[-2]
        if end > self.k.shape[-2]:
            raise ValueError(f"KV cache holds {self.k.shape[-2]} positions, position {end - 1} asked")
        self.k[:, :, start:end] = k
        self.v[:, :, start:end] = v
        return self.k[:, :, :end], self.v[:, :, :end]


class MultiheadSelfAttention(nn.Module):
    """Self-attention with ``nn.MultiheadAttention``'s parameters (a fused qkv projection and an output
    projection). ``head_dim`` other than ``d_model // nhead`` gives each head its own width (the course's
    text model: every head ``d_model`` wide, the output projection merging ``nhead * d_model`` back).
    ``kv_heads`` below ``nhead`` is grouped-query attention: each key/value head serves ``nhead / kv_heads``
    query heads (the fused projection is then q, k, v of ``nhead``, ``kv_heads``, ``kv_heads`` heads).
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dropout: float = 0.0,
        head_dim: int | None = None,
        kv_heads: int | None = None,
        bias: bool = True,
    ):
        super().__init__()
        if head_dim is None:
            if d_model % nhead:
                raise ValueError(f"d_model={d_model} is not divisible by nhead={nhead}")
            head_dim = d_model // nhead
        kv_heads = kv_heads or nhead
        if nhead % kv_heads:
            raise ValueError(f"nhead={nhead} is not a multiple of kv_heads={kv_heads}")
        self.nhead, self.kv_heads, self.head_dim, self.dropout = nhead, kv_heads, head_dim, dropout
        self.qkv = nn.Linear(d_model, (nhead + 2 * kv_heads) * head_dim, bias=bias)
        self.proj = nn.Linear(nhead * head_dim, d_model, bias=bias)
        self.record = False  # keep the attention weights of the next forward (in ``weights``)
        self.weights: torch.Tensor | None = None

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        causal: bool = False,
        rotary: Rotary | None = None,
        cache: KVCache | None = None,
        start: int = 0,
    ) -> torch.Tensor:
        """x: (B, L, D) at positions ``start ..``; mask: (B, L) bool, True at real positions; with ``cache``,
        the keys and values of earlier positions come from it (and these are added) -> (B, L, D)."""
        B, L, _ = x.shape
        hs, nh, nkv = self.head_dim, self.nhead, self.kv_heads
        q, k, v = self.qkv(x).split([nh * hs, nkv * hs, nkv * hs], dim=-1)
        q = q.view(B, L, nh, hs).transpose(1, 2)  # (B, nh, L, hs)
        k = k.view(B, L, nkv, hs).transpose(1, 2)  # (B, nkv, L, hs)
        v = v.view(B, L, nkv, hs).transpose(1, 2)
        if rotary is not None:
            q, k = rotary(q, start), rotary(k, start)
        if cache is not None:
            k, v = cache.update(k, v, start)
        if self.record:
            k, v = k.repeat_interleave(nh // nkv, dim=1), v.repeat_interleave(nh // nkv, dim=1)
            self.weights = attention_weights(q, k, mask, causal)
            y = self.weights @ v
        elif k.shape[-2] != L:  # new positions against a cache: each sees every key up to its own position
            if mask is not None:
                raise ValueError("a KV cache takes unpadded batches (mask=None)")
            visible = (
                torch.arange(k.shape[-2], device=x.device)
                <= torch.arange(start, start + L, device=x.device)[:, None]
            )
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=visible if causal and L > 1 else None, enable_gqa=nkv != nh
            )
        else:
            y = attention(q, k, v, mask, causal, self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(B, L, nh * hs))


def make_norm(kind: Norm, d_model: int, eps: float) -> nn.Module:
    if kind == "rmsnorm":
        return nn.RMSNorm(d_model, eps=eps)
    return nn.LayerNorm(d_model, eps=eps)


class Block(nn.Module):
    """Attention then a feed-forward network, each on a residual branch; pre-LN (``norm_first``) or post-LN.

    The feed-forward is ``linear2(act(linear1(x)))``; with ``swiglu``, ``linear1`` holds the gate and the up
    projection stacked (2 x ``dim_feedforward`` outputs) and the hidden is ``silu(gate) * up`` (Shazeer 2020).
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int,
        dropout: float,
        activation: Activation,
        norm_first: bool,
        attention_dropout: float = 0.0,
        head_dim: int | None = None,
        norm_eps: float = 1e-5,
        norm: Norm = "layernorm",
        kv_heads: int | None = None,
        bias: bool = True,
    ):
        super().__init__()
        self.norm_first, self.activation = norm_first, activation
        self.attn = MultiheadSelfAttention(d_model, nhead, attention_dropout, head_dim, kv_heads, bias)
        hidden = 2 * dim_feedforward if activation == "swiglu" else dim_feedforward
        self.linear1 = nn.Linear(d_model, hidden, bias=bias)
        self.linear2 = nn.Linear(dim_feedforward, d_model, bias=bias)
        self.norm1 = make_norm(norm, d_model, norm_eps)
        self.norm2 = make_norm(norm, d_model, norm_eps)
        self.dropout = nn.Dropout(dropout)

    def _act(self, h: torch.Tensor) -> torch.Tensor:
        if self.activation == "swiglu":
            gate, up = h.chunk(2, dim=-1)
            return F.silu(gate) * up
        if self.activation == "relu":
            return F.relu(h)
        return F.gelu(h, approximate="tanh" if self.activation == "gelu_tanh" else "none")

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.linear2(self.dropout(self._act(self.linear1(x)))))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, causal: bool = False,
                rotary: Rotary | None = None, cache: KVCache | None = None, start: int = 0) -> torch.Tensor:  # fmt: skip
        """x: (B, L, D) -> (B, L, D); the attention options as in ``MultiheadSelfAttention.forward``."""
        if self.norm_first:
            x = x + self.dropout(self.attn(self.norm1(x), mask, causal, rotary, cache, start))
            return x + self._mlp(self.norm2(x))
        x = self.norm1(x + self.dropout(self.attn(x, mask, causal, rotary, cache, start)))
        return self.norm2(x + self._mlp(x))


EncoderBlock = Block  # the name the encoder models and their tests use


def sinusoidal_positions(length: int, d_model: int) -> torch.Tensor:
    """PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(...) -> (length, d_model)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    pe = torch.zeros(length, d_model)
    pe[:, 0::2] = torch.sin(position * freq)
    pe[:, 1::2] = torch.cos(position * freq)[:, : d_model // 2]
    return pe
