"""The attention and the block every Transformer here is made of: the sequence encoder, the ViT and the GPT
decoder, so that an option (RMSNorm, SwiGLU, rotary positions, grouped-query attention, a KV cache) is written
once.

Parameter names follow ``torch.nn.TransformerEncoderLayer`` (``attn.qkv``/``attn.proj`` as its fused in/out
projections, ``linear1``/``linear2``, ``norm1``/``norm2``): weights copy across one-to-one, and checkpoints
of the encoder models load unchanged.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from archbench.errors import NET, ConfigError
from lit_models.moe import MoE, MoEOptions

Norm = Literal["layernorm", "rmsnorm"]
Activation = Literal["relu", "gelu", "gelu_tanh", "swiglu"]


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    allowed: torch.Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """softmax(q k^T / sqrt(hs)) v through SDPA, over the keys ``allowed`` lets each query read (a bool mask
    broadcast to (B, nh, Lq, Lk); None: every key, or the earlier ones with ``is_causal``).

    q: (B, nh, Lq, hs); k, v: (B, nkv, Lk, hs), nkv dividing nh (grouped-query attention: SDPA reads each
    key/value head for its group of query heads, no copies) -> (B, nh, Lq, hs).
    """
    return F.scaled_dot_product_attention(
        q,
        k,
        v,
        attn_mask=allowed,
        dropout_p=dropout_p,
        is_causal=is_causal,
        enable_gqa=k.shape[1] != q.shape[1],
    )


def attention_weights(q: torch.Tensor, k: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q k^T / sqrt(hs)) written out, for looking at: (B, nh, Lq, Lk); ``allowed`` (bool, broadcast to
    that shape) False where a query may not look; rows sum to 1 over the allowed keys."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    return scores.softmax(-1)


Pattern = Literal["full", "local", "strided", "block"]
Kernel = Literal["sdpa", "flex"]


def sparse_window(
    attention: Pattern, window: int | None, default: int, old_default: int | None = None
) -> int:
    """The window of a sparse attention pattern: ``default`` when none is given. A window given to ``full``
    attention is ignored, and said (a warning, so that a sweep over both options goes on); ``old_default`` is the
    value checkpoints saved before ``window`` could be empty, which they pass with ``full``: taken quietly."""
    if attention == "full" and window is not None and window != old_default:
        warnings.warn(
            f"{NET}.window: {window}, but attention is 'full', which has no window: the window is ignored (set "
            "attention local, strided or block to use it)",
            stacklevel=3,
        )
    return default if window is None else window


def pattern_rule(
    pattern: Pattern, i: torch.Tensor, j: torch.Tensor, window: int, causal: bool
) -> torch.Tensor | None:
    """Whether query position ``i`` may read key position ``j`` (tensors that broadcast against each other)
    under ``pattern``; None for ``full`` attention without ``causal``. One rule for both kernels: SDPA's
    bool mask (``pattern_mask``) and FlexAttention's ``mask_mod`` (``flex_block_mask``)."""
    if pattern == "full":
        allowed = None
    elif pattern == "local":
        allowed = (i - j).abs() < window
    elif pattern == "strided":
        allowed = ((i - j).abs() < window) | ((i - j) % window == 0)
    elif pattern == "block":
        allowed = (i // window == j // window) | (j % window == window - 1)
    else:
        raise ValueError(f"unknown attention pattern {pattern!r}: full, local, strided or block")
    if causal:
        allowed = j <= i if allowed is None else allowed & (j <= i)
    return allowed


def pattern_mask(
    pattern: Pattern, queries: torch.Tensor, keys: torch.Tensor, window: int, causal: bool = False
) -> torch.Tensor | None:
    """Which keys each query may read under a sparse attention pattern: (Lq, Lk) bool for query positions
    ``queries`` (Lq,) and key positions ``keys`` (Lk,); None for ``full`` attention without ``causal``.

    - ``local``: keys within ``window`` positions (|i - j| < window; before or at i when causal);
    - ``strided``: the local window and every ``window``-th position back (and forward unless causal): the
      union of the two heads of Child et al. (2019)'s strided pattern;
    - ``block``: the query's own block of ``window`` positions, plus the last position of every block, which
      carries its block's summary across (Child et al.'s fixed pattern with one summary position).
    """
    return pattern_rule(pattern, queries[:, None], keys[None, :], window, causal)


def flex_block_mask(
    pattern: Pattern, window: int, causal: bool, start: int, queries: int, keys: int,
    mask: torch.Tensor | None, device: torch.device,
):  # fmt: skip
    """``pattern`` as a FlexAttention block mask for ``queries`` queries at positions ``start ..`` against
    ``keys`` keys, with ``mask`` (B, keys) bool (True at real keys) keeping padding out, and, as in the SDPA
    mask, every query's own key kept so that no row is empty. FlexAttention skips the blocks of 128 x 128
    that the pattern leaves empty: its work grows with the pattern's density, not with length squared."""
    from torch.nn.attention.flex_attention import create_block_mask

    def mask_mod(b, h, q, k):
        allowed = pattern_rule(pattern, q + start, k, window, causal)
        if mask is not None:
            allowed = (allowed & mask[b, k]) | (q + start == k)
        return allowed

    batch = mask.shape[0] if mask is not None else None
    return create_block_mask(mask_mod, batch, None, queries, keys, device=device)


_compiled_flex = None


def flex_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_mask) -> torch.Tensor:
    """torch's FlexAttention, compiled once (uncompiled it runs a dense reference implementation)."""
    global _compiled_flex
    from torch.nn.attention import flex_attention as flex

    if _compiled_flex is None:
        _compiled_flex = torch.compile(flex.flex_attention, dynamic=False)
    return _compiled_flex(q, k, v, block_mask=block_mask, enable_gqa=k.shape[1] != q.shape[1])


class Rotary(nn.Module):
    """Rotary position embedding (Su et al. 2021) in the half-split layout of GPT-NeoX and Llama: dimension
    ``i`` of the first half rotates with dimension ``i`` of the second, at frequency ``base^(-2i / hs)``."""

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        if head_dim % 2:
            raise ConfigError(f"{NET}.positions: rotary positions need an even head width, got {head_dim}")
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
        pattern: Pattern = "full",
        window: int = 16,
        kernel: Kernel = "sdpa",
    ):
        super().__init__()
        if pattern != "full" and window < 1:
            raise ConfigError(
                f"{NET}.window: {window} is below 1 (attention {pattern!r} needs a window of positions)"
            )
        if kernel not in ("sdpa", "flex"):
            raise ValueError(f"unknown attention kernel {kernel!r}: sdpa or flex")
        if kernel == "flex" and dropout:
            raise ValueError(
                f"the flex attention kernel has no attention dropout (got {dropout}): set it to 0"
            )
        self.pattern, self.window, self.kernel = pattern, window, kernel
        self._block_masks: dict = {}  # FlexAttention block masks by shape (kernel flex, no padding)
        if head_dim is None:
            if d_model % nhead:
                raise ConfigError(f"{NET}.nhead: {nhead} heads do not divide d_model {d_model}")
            head_dim = d_model // nhead
        kv_heads = kv_heads or nhead
        if nhead % kv_heads:
            raise ConfigError(f"{NET}: {nhead} heads are not a multiple of {kv_heads} key/value heads")
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
            if mask is not None:
                raise ValueError("a KV cache takes unpadded batches (mask=None)")
            k, v = cache.update(k, v, start)
        if self.kernel == "flex" and self.pattern != "full" and x.is_cuda and not self.record:
            block_mask = flex_block_mask(
                self.pattern, self.window, causal, start, L, k.shape[-2], mask, x.device
            )
            y = flex_attention(q, k, v, block_mask)
            return self.proj(y.transpose(1, 2).reshape(B, L, nh * hs))
        allowed = self._allowed(L, k.shape[-2], start, mask, causal, x.device)
        if self.record:
            k, v = k.repeat_interleave(nh // nkv, dim=1), v.repeat_interleave(nh // nkv, dim=1)
            if allowed is None and causal:
                allowed = pattern_mask("full", torch.arange(L, device=x.device), torch.arange(L, device=x.device),
                                       self.window, causal)  # fmt: skip
            self.weights = attention_weights(q, k, allowed)
            y = self.weights @ v
        else:
            dropout = self.dropout if self.training else 0.0
            y = attention(
                q, k, v, allowed, causal and allowed is None and L == k.shape[-2] and L > 1, dropout
            )
        return self.proj(y.transpose(1, 2).reshape(B, L, nh * hs))

    def _block_mask(self, L: int, K: int, start: int, mask: torch.Tensor | None, causal: bool,
                    device: torch.device):  # fmt: skip
        """``flex_block_mask`` for these shapes; without padding it depends on the shapes alone, so it is built
        once per shape and kept (a few, for the lengths a run meets)."""
        if mask is not None:
            return flex_block_mask(self.pattern, self.window, causal, start, L, K, mask, device)
        key = (L, K, start, causal, device)
        if key not in self._block_masks:
            if len(self._block_masks) >= 8:
                self._block_masks.pop(next(iter(self._block_masks)))
            self._block_masks[key] = flex_block_mask(
                self.pattern, self.window, causal, start, L, K, None, device
            )
        return self._block_masks[key]

    def _allowed(self, L: int, K: int, start: int, mask: torch.Tensor | None, causal: bool,
                 device: torch.device) -> torch.Tensor | None:  # fmt: skip
        """The keys each of the ``L`` queries (at ``start ..``) may read among ``K``, as a bool mask for SDPA,
        or None where SDPA needs none (full attention over every key, or causal over a square that
        ``is_causal`` covers)."""
        square = L == K
        if self.pattern == "full" and mask is None and (not causal or square or L == 1):
            return None  # (one new query against a cache sees every earlier key)
        allowed = pattern_mask(
            self.pattern, torch.arange(start, start + L, device=device), torch.arange(K, device=device),
            self.window, causal,
        )  # fmt: skip
        if mask is None:
            return allowed
        keys = mask[:, None, None, :]  # padded keys get no weight
        if allowed is None or self.pattern == "full":
            return keys if allowed is None else keys & allowed
        # A sparse pattern keeps every query's own position, so that a padded query whose window holds only
        # padding still has a key (its output is ignored; an empty row would make SDPA's output NaN).
        return (keys & allowed) | torch.eye(L, K, dtype=torch.bool, device=device)


def make_norm(kind: Norm, d_model: int, eps: float) -> nn.Module:
    if kind == "rmsnorm":
        return nn.RMSNorm(d_model, eps=eps)
    return nn.LayerNorm(d_model, eps=eps)


class Block(nn.Module):
    """Attention then a feed-forward network, each on a residual branch; pre-LN (``norm_first``) or post-LN.

    The feed-forward is ``linear2(act(linear1(x)))``; with ``swiglu``, ``linear1`` holds the gate and the up
    projection stacked (2 x ``dim_feedforward`` outputs) and the hidden is ``silu(gate) * up`` (Shazeer 2020).
    With ``moe``, a Mixture of Experts (``lit_models.moe``) takes the feed-forward's place. ``pattern`` and
    ``window``: the attention's sparsity (``pattern_mask``); ``kernel`` ``flex`` runs a sparse pattern as a
    FlexAttention block mask on CUDA (elsewhere, and for ``full``, SDPA with the same mask).
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
        pattern: Pattern = "full",
        window: int = 16,
        moe: MoEOptions | None = None,
        kernel: Kernel = "sdpa",
    ):
        super().__init__()
        self.norm_first, self.activation = norm_first, activation
        self.attn = MultiheadSelfAttention(
            d_model, nhead, attention_dropout, head_dim, kv_heads, bias, pattern, window, kernel
        )
        if moe is not None:  # experts in place of the MLP (``activation`` then unused)
            self.moe = MoE(d_model, moe.hidden or dim_feedforward, moe, bias)
        else:
            self.moe = None
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

    def _mlp(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.moe is not None:
            return self.dropout(self.moe(x, mask))
        return self.dropout(self.linear2(self.dropout(self._act(self.linear1(x)))))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, causal: bool = False,
                rotary: Rotary | None = None, cache: KVCache | None = None, start: int = 0,
                routed: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """x: (B, L, D) -> (B, L, D); the attention options as in ``MultiheadSelfAttention.forward``; routed:
        (B, L) bool, the tokens a Mixture of Experts routes (default ``mask``: a causal decoder reads right
        padding with no attention mask, yet its experts should not route it)."""
        routed = mask if routed is None else routed
        if self.norm_first:
            x = x + self.dropout(self.attn(self.norm1(x), mask, causal, rotary, cache, start))
            return x + self._mlp(self.norm2(x), routed)
        x = self.norm1(x + self.dropout(self.attn(x, mask, causal, rotary, cache, start)))
        return self.norm2(x + self._mlp(x, routed))


EncoderBlock = Block  # the name the encoder models and their tests use


def sinusoidal_positions(length: int, d_model: int) -> torch.Tensor:
    """PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(...) -> (length, d_model)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    pe = torch.zeros(length, d_model)
    pe[:, 0::2] = torch.sin(position * freq)
    pe[:, 1::2] = torch.cos(position * freq)[:, : d_model // 2]
    return pe


def binary_positions(length: int, d_model: int) -> torch.Tensor:
    """PE[pos, k] = bit k of pos (0 or 1), lowest bit first; dimensions past the position's bits stay 0
    -> (length, d_model). Needs 2^d_model > length - 1."""
    if length > 1 and (length - 1).bit_length() > d_model:
        raise ValueError(
            f"binary positions: {length} positions need {(length - 1).bit_length()} bits, d_model={d_model}"
        )
    bits = torch.arange(d_model)
    return ((torch.arange(length)[:, None] >> bits.clamp(max=62)) & 1).float()


Positions = Literal["sinusoidal", "learned", "rotary", "binary", "none"]


def position_table(kind: Positions, length: int, d_model: int) -> torch.Tensor | None:
    """The fixed table added to the embeddings (sinusoidal, binary), or None (learned ones are parameters;
    rotary ones act inside attention; none)."""
    if kind == "sinusoidal":
        return sinusoidal_positions(length, d_model)
    if kind == "binary":
        return binary_positions(length, d_model)
    return None
