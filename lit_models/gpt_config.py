"""The GPT's typed config and its presets by name (what ``lit_models.gpt.GPT`` and the weight converters in
``lit_models.gpt_weights`` share)."""

from __future__ import annotations

from dataclasses import dataclass

from archbench.errors import NET, ConfigError
from lit_models.act import UniversalOptions, universal_options
from lit_models.blocks import Activation, Kernel, Norm, Pattern, Positions
from lit_models.moe import MoEOptions, moe_options


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 256
    block_size: int = 256  # positions the model has (learned positions are a table this long)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    n_kv_head: int | None = None  # grouped-query attention below n_head
    head_dim: int | None = None  # default n_embd // n_head
    intermediate_size: int | None = None  # default 4 * n_embd
    norm: Norm = "layernorm"
    norm_eps: float = 1e-5
    mlp: Activation = "gelu"
    positions: Positions = "learned"
    rope_base: float = 10000.0
    bias: bool = True
    tie_embeddings: bool = True
    dropout: float = 0.0
    attention: Pattern = "full"  # or a sparse pattern (lit_models.blocks.pattern_mask), causal either way
    window: int = 64
    attention_kernel: Kernel = "sdpa"  # or "flex": a sparse pattern as a FlexAttention block mask on CUDA
    moe: MoEOptions | None = None  # experts in place of every MLP
    universal: UniversalOptions | None = None  # one block applied n_layer times (with ACT by default)

    def __post_init__(self):
        object.__setattr__(self, "moe", moe_options(self.moe))  # a mapping from YAML or asdict
        object.__setattr__(self, "universal", universal_options(self.universal))
        kv = self.n_kv_head or self.n_head
        if self.n_head % kv:
            raise ConfigError(f"{NET}.n_head: {self.n_head} is not a multiple of n_kv_head ({kv})")
        if self.head_dim is None and self.n_embd % self.n_head:
            raise ConfigError(
                f"{NET}.n_head: {self.n_head} heads do not divide n_embd {self.n_embd} (or give head_dim)"
            )
        if self.vocab_size < 1 or self.block_size < 1:
            raise ConfigError(
                f"{NET}: vocab_size {self.vocab_size} and block_size {self.block_size} must be positive"
            )


PRESETS: dict[str, dict] = {
    # GPT-2 small (Radford et al. 2019): 124 M parameters with its 50,257-token BPE.
    "gpt2-small": dict(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768, mlp="gelu_tanh"),
    # A small GPT that trains on two CPU cores (the language-model comparison's row). Rotary positions: at the
    # comparison's budget a learned position table is still near its initialisation (val 3.44 bits per
    # character against 2.78 with rotary; one seed each, README).
    "gpt-mini": dict(n_layer=3, n_head=4, n_embd=96, positions="rotary"),
    # SmolLM2-135M (Hugging Face 2024): Llama-shaped, 9 query heads sharing 3 key/value heads.
    "smollm2-135m": dict(
        vocab_size=49152,
        block_size=8192,
        n_layer=30,
        n_head=9,
        n_kv_head=3,
        n_embd=576,
        intermediate_size=1536,
        norm="rmsnorm",
        norm_eps=1e-5,
        mlp="swiglu",
        positions="rotary",
        rope_base=100000.0,
        bias=False,
    ),  # fmt: skip
}


def preset_config(preset: str | None, **overrides) -> GPTConfig:
    """The named preset's config with ``overrides`` (None values are left to the preset)."""
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"{NET}.preset: {preset!r} is not a preset; presets: {', '.join(PRESETS)}")
    values = {**PRESETS.get(preset, {}), **{k: v for k, v in overrides.items() if v is not None}}
    return GPTConfig(**values)
