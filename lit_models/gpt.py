"""A decoder-only Transformer language model (GPT): token embedding, positions, causal pre-LN blocks
(``lit_models.blocks``, shared with the encoder), a final norm and a head tied to the embedding.

One typed config, presets by name (``gpt2-small``, ``gpt-mini``, ``smollm2-135m``); every option a preset
sets can be changed on its own. ``GPT.forward(x, lengths=None) -> (B, T, vocab)`` logits; with a
``KVCache`` per block (``new_cache``), ``forward(x, start=...)`` reads only the new positions.
"""

from __future__ import annotations

import math
from dataclasses import asdict, fields
from pathlib import Path

import torch
from torch import nn

from archbench.errors import ConfigError
from lit_models.act import AdaptiveDepth, UniversalOptions
from lit_models.blocks import (
    Activation,
    Block,
    Kernel,
    KVCache,
    Norm,
    Pattern,
    Positions,
    Rotary,
    make_norm,
    position_table,
    sparse_window,
)
from lit_models.gpt_config import PRESETS, GPTConfig, preset_config
from lit_models.gpt_weights import convert_hf, load_hf_causal_lm
from lit_models.moe import MoEOptions


def _close(a, b) -> bool:
    """Equal, or floats equal to float32's precision (GGUF files store 1e-5 as 9.99999975e-06)."""
    return isinstance(a, float) and isinstance(b, float) and math.isclose(a, b, rel_tol=1e-6)


class GPT(nn.Module):
    def __init__(
        self,
        vocab_size: int | None = None,
        seq_len: int | None = None,
        preset: str | None = "gpt-mini",
        block_size: int | None = None,
        n_layer: int | None = None,
        n_head: int | None = None,
        n_embd: int | None = None,
        n_kv_head: int | None = None,
        head_dim: int | None = None,
        intermediate_size: int | None = None,
        norm: Norm | None = None,
        norm_eps: float | None = None,
        mlp: Activation | None = None,
        positions: Positions | None = None,
        rope_base: float | None = None,
        bias: bool | None = None,
        tie_embeddings: bool | None = None,
        dropout: float | None = None,
        attention: Pattern | None = None,
        window: int | None = None,
        attention_kernel: Kernel | None = None,
        moe: MoEOptions | None = None,
        universal: UniversalOptions | None = None,
        weights: str | None = None,
    ):
        """
        Args:
            vocab_size: Tokens; linked from the data (the tokenizer's vocabulary).
            seq_len: The data's context length; linked from the data. The model's positions (``block_size``)
                must cover it.
            preset: ``gpt-mini`` (3 layers, 96 wide, 4 heads, rotary), ``gpt2-small`` (124 M) or ``smollm2-135m``; every other
                argument left empty comes from it.
            block_size: Positions the model has. Empty: the preset's (``gpt2-small`` 1024, ``smollm2-135m``
                8192), else the data's context length.
            n_layer: Blocks.
            n_head: Query heads.
            n_embd: Width of the residual stream.
            n_kv_head: Key/value heads (grouped-query attention when below ``n_head``). Empty: ``n_head``.
            head_dim: Width of each head. Empty: ``n_embd // n_head``.
            intermediate_size: Hidden width of each MLP. Empty: 4 x ``n_embd``.
            norm: ``layernorm`` or ``rmsnorm``.
            norm_eps: The norms' epsilon.
            mlp: ``gelu``, ``gelu_tanh`` (GPT-2's), ``relu`` or ``swiglu``.
            positions: ``learned`` (a table), ``sinusoidal``, ``rotary`` (in every attention), ``binary``
                (dimension k: bit k of the position) or ``none`` (causal attention alone tells positions apart).
            rope_base: Rotary base frequency.
            bias: Biases in the linear layers.
            tie_embeddings: The output head is the token embedding (one tensor).
            dropout: Dropout on the embeddings and the residual branches.
            attention: ``full`` causal attention, or a sparse causal pattern: ``local`` (the last ``window``
                tokens), ``strided`` or ``block`` (``lit_models.blocks.pattern_mask``).
            window: The sparse pattern's width, in tokens (empty: the preset's, 64); full attention has none
                (one given to it is ignored, with a warning).
            attention_kernel: ``sdpa``, or ``flex``: a sparse pattern as a FlexAttention block mask on CUDA
                (``lit_models.transformer.TransformerNet``'s option of the same name).
            moe: A Mixture of Experts in place of every MLP, e.g. ``{experts: 8, top_k: 2}``
                (``lit_models.moe.MoEOptions``; ``hidden`` empty: ``intermediate_size``).
            universal: One block applied ``n_layer`` times, adaptive computation time by default, e.g.
                ``{act: true, ponder_cost: 0.01}`` (``lit_models.act.UniversalOptions``).
            weights: Pretrained weights to start from: a GGUF file or a folder holding one
                (``data/pretrained/smollm2-135m``, with the ``smollm2-135m`` preset), or a transformers Llama /
                GPT-2 folder. Their shapes must be the preset's, and the data's tokenizer theirs.
        """
        super().__init__()
        given = {k: v for k, v in locals().items() if k in {f.name for f in fields(GPTConfig)}}
        own_positions = "block_size" in PRESETS.get(preset, {})  # gpt2-small's 1024, smollm2-135m's 8192 stay
        if block_size is None and not own_positions:
            given["block_size"] = seq_len or GPTConfig.block_size
        config = preset_config(preset, **given)
        sparse_window(config.attention, window, config.window)  # a window given to full attention: refused
        if seq_len is not None and seq_len > config.block_size:
            raise ValueError(
                f"the data's context ({seq_len} tokens) is longer than the model's {config.block_size} positions "
                f"(GPT preset {preset!r}): shorten data.context_length"
            )
        self.config = config
        self.build(config)
        if weights is not None:
            self.load_pretrained(weights)

    def load_pretrained(self, weights: str) -> None:
        loaded = pretrained_gpt(weights)
        theirs, ours = loaded.config, self.config
        if theirs.vocab_size != ours.vocab_size:
            raise ValueError(
                f"the data's tokenizer has {ours.vocab_size} tokens, the embedding of {weights} has "
                f"{theirs.vocab_size}: use the weights' own tokenizer (data.tokenizer={weights})"
            )
        same = ("n_layer", "n_head", "n_kv_head", "n_embd", "intermediate_size", "norm", "norm_eps", "mlp",
                "positions", "bias", "rope_base", "tie_embeddings", "moe", "universal")  # fmt: skip
        differ = [f"{k} {getattr(theirs, k)} (ours {getattr(ours, k)})" for k in same
                  if getattr(theirs, k) != getattr(ours, k) and not _close(getattr(theirs, k), getattr(ours, k))]  # fmt: skip
        if differ:
            raise ValueError(
                f"model.net: the weights {weights} have {', '.join(differ)}: choose their preset"
            )
        self.load_state_dict(loaded.state_dict())

    @classmethod
    def from_config(cls, config: GPTConfig) -> GPT:
        values = asdict(config)
        if config.attention == "full":  # a resolved config's window, not one given to full attention
            values["window"] = None
        return cls(preset=None, **values)

    def build(self, c: GPTConfig) -> None:
        head_dim = c.head_dim or c.n_embd // c.n_head
        self.wte = nn.Embedding(c.vocab_size, c.n_embd)
        if c.positions == "learned":
            self.wpe = nn.Embedding(c.block_size, c.n_embd)
        elif c.positions in ("sinusoidal", "binary"):
            self.register_buffer("pe", position_table(c.positions, c.block_size, c.n_embd), persistent=False)
        self.rotary = Rotary(head_dim, c.rope_base) if c.positions == "rotary" else None
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            Block(c.n_embd, c.n_head, c.intermediate_size or 4 * c.n_embd, c.dropout, c.mlp, norm_first=True,
                  head_dim=c.head_dim, norm_eps=c.norm_eps, norm=c.norm, kv_heads=c.n_kv_head, bias=c.bias,
                  pattern=c.attention, window=c.window, moe=c.moe, kernel=c.attention_kernel)
            for _ in range(1 if c.universal else c.n_layer)
        )  # fmt: skip
        self.depth = AdaptiveDepth(c.n_embd, c.n_layer, c.universal) if c.universal else None
        self.norm = make_norm(c.norm, c.n_embd, c.norm_eps)
        self.head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: residual projections scaled by 1/sqrt(2 n_layer)
            if name.endswith(("attn.proj.weight", "linear2.weight", "moe.w2")):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * c.n_layer))
            elif name.endswith("moe.w1"):  # the experts start as the dense MLP would (not nn.Linear's init)
                nn.init.normal_(p, std=0.02)
        if self.depth is not None:
            self.depth.reset_parameters()
        if c.tie_embeddings:
            self.head.weight = self.wte.weight

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def no_weight_decay(self) -> set[str]:
        return {"wpe.weight"}

    def new_cache(self, batch: int, max_len: int | None = None) -> list[KVCache]:
        """An empty KV cache per block for ``batch`` sequences of up to ``max_len`` positions."""
        c, like = self.config, self.wte.weight
        max_len = min(max_len or c.block_size, c.block_size)
        head_dim = c.head_dim or c.n_embd // c.n_head
        # one per layer; a universal model has one per step of its shared block
        return [
            KVCache.empty(batch, c.n_kv_head or c.n_head, max_len, head_dim, like) for _ in range(c.n_layer)
        ]

    def forward(
        self,
        x: torch.Tensor,
        lengths: torch.Tensor | None = None,
        cache: list[KVCache] | None = None,
        start: int = 0,
    ) -> torch.Tensor:
        """x: (B, T) token ids at positions ``start .. start + T - 1``; lengths: (B,) real tokens (right
        padding), None when all are real -> (B, T, vocab_size) next-token logits."""
        B, T = x.shape
        if start + T > self.config.block_size:
            raise ValueError(
                f"positions up to {start + T} asked of a model with {self.config.block_size} (block_size)"
            )
        h = self.wte(x)
        if self.config.positions == "learned":
            h = h + self.wpe(torch.arange(start, start + T, device=x.device))
        elif self.config.positions in ("sinusoidal", "binary"):
            h = h + self.pe[start : start + T]
        h = self.drop(h)
        # Causal attention already keeps real positions from reading right padding: attention needs no mask,
        # but the ponder cost, the step counts and the experts' routing are over real positions only.
        real = torch.arange(T, device=x.device) < lengths[:, None] if lengths is not None else None
        # (windows without padding, every training batch of a token stream, keep the experts' unmasked path)
        routed = real if self.config.moe is not None and real is not None and not bool(real.all()) else None
        if self.depth is not None:

            def step(h: torch.Tensor, t: int) -> torch.Tensor:
                return self.blocks[0](
                    h, None, True, self.rotary, cache[t] if cache is not None else None, start, routed
                )

            h = self.depth(h, step, real, every_step=cache is not None)
        else:
            for i, block in enumerate(self.blocks):
                h = block(h, None, True, self.rotary, cache[i] if cache is not None else None, start, routed)
        return self.head(self.norm(h))

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self.config).items())


def from_hf(model) -> GPT:
    """Our GPT holding the weights of a transformers ``LlamaForCausalLM`` or ``GPT2LMHeadModel``."""
    config, state = convert_hf(model)
    net = GPT.from_config(config)
    own = net.state_dict()
    for key, value in state.items():
        if key not in own:
            raise ConfigError(f"converted tensor {key} has no place in our GPT")
        if tuple(value.shape) != tuple(own[key].shape):
            raise ConfigError(f"converted {key}: shape {tuple(value.shape)}, ours {tuple(own[key].shape)}")
    missing = set(own) - set(state)
    if missing:
        raise ConfigError(f"no converted tensor for {sorted(missing)[:3]}")
    net.load_state_dict({k: v.detach().float().contiguous() for k, v in state.items()})
    return net


def pretrained_gpt(path: str | Path) -> GPT:
    """Our GPT with the weights at ``path`` (a GGUF file, or a folder holding one or a transformers model)."""
    return from_hf(load_hf_causal_lm(path))
