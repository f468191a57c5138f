"""Vision Transformer from scratch: patch embedding, class token, learned positions, pre-LN blocks over SDPA.

Blocks are ``lit_models.blocks.EncoderBlock`` (the layout of ``nn.TransformerEncoderLayer``). The defaults
are timm's ``vit_base_patch16_224``; ``final_norm=False`` with ``pos_embed_class=False`` is the course's
ViT-B/16 (86,565,352 parameters). timm's weights copy across tensor by tensor (see ``load_timm_vit``).
"""

from __future__ import annotations

import torch
from torch import nn

from archbench.errors import NET, ConfigError
from lit_models.blocks import EncoderBlock


class PatchEmbedding(nn.Module):
    """Non-overlapping P x P patches -> ``dim``-wide tokens, ``(B, C, H, W) -> (B, N, dim)``.

    ``conv`` (a P-strided convolution) and ``linear`` (flatten each patch's pixels, then one linear layer) are
    the same map: the conv kernel reshaped is the linear weight (the tests check it).
    """

    def __init__(self, patch_size: int, in_chans: int, dim: int, mode: str = "conv"):
        super().__init__()
        if mode not in ("conv", "linear"):
            raise ValueError(f"patch embedding mode {mode!r}: expected 'conv' or 'linear'")
        self.patch_size, self.mode = patch_size, mode
        if mode == "conv":
            self.proj = nn.Conv2d(in_chans, dim, patch_size, stride=patch_size)
        else:
            self.proj = nn.Linear(in_chans * patch_size * patch_size, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "conv":
            return self.proj(x).flatten(2).transpose(1, 2)
        return self.proj(patchify(x, self.patch_size))


def patchify(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, C * P * P): row-major patches, each flattened channel-first (as a conv kernel)."""
    B, C, H, W = x.shape
    P = patch_size
    if H % P or W % P:
        raise ValueError(f"image {H}x{W} is not a whole number of {P}x{P} patches")
    x = x.reshape(B, C, H // P, P, W // P, P).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(B, (H // P) * (W // P), C * P * P)


class VisionTransformer(nn.Module):
    def __init__(
        self,
        num_outputs: int,
        in_channels: int = 3,
        img_size: int = 224,
        patch_size: int = 16,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        patch_embedding: str = "conv",
        final_norm: bool = True,
        pos_embed_class: bool = True,
    ):
        """
        Args:
            num_outputs: Classes; linked from the data.
            in_channels: Image channels; linked from the data.
            img_size: Image side in pixels; linked from the data (sizes the position embedding).
            patch_size: Patch side in pixels.
            embed_dim: Token width.
            depth: Encoder blocks.
            num_heads: Attention heads.
            mlp_ratio: MLP width / ``embed_dim``.
            dropout: Dropout on the residual branches.
            patch_embedding: ``conv`` (strided convolution) or ``linear`` (reshape pixels, then a linear layer).
            final_norm: LayerNorm after the last block (timm: yes; the course: no).
            pos_embed_class: The class token gets a position vector too (timm's default); False: patches only,
                as the course's ViT.
        """
        super().__init__()
        if img_size % patch_size:
            raise ConfigError(f"{NET}.patch_size: {patch_size} does not divide img_size {img_size}")
        if embed_dim % num_heads:
            raise ConfigError(f"{NET}.num_heads: {num_heads} heads do not divide embed_dim {embed_dim}")
        n = (img_size // patch_size) ** 2
        self.pos_embed_class = pos_embed_class
        self.patch_embed = PatchEmbedding(patch_size, in_channels, embed_dim, patch_embedding)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + pos_embed_class, embed_dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        hidden, self.mlp_ratio = int(embed_dim * mlp_ratio), mlp_ratio
        self.blocks = nn.ModuleList(
            EncoderBlock(embed_dim, num_heads, hidden, dropout, "gelu", norm_first=True, norm_eps=1e-6)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6) if final_norm else nn.Identity()
        self.num_features = embed_dim
        self.head = nn.Linear(embed_dim, num_outputs)
        self.apply(_init_linear)

    def group_matcher(self, coarse: bool = False) -> dict:
        """Which layer each parameter is in, as timm's ViT says it (for layer-wise learning-rate decay): the
        embeddings first, then each block, the final norm, and the head above all."""
        return {
            "stem": r"^cls_token|pos_embed|patch_embed",
            "blocks": [(r"^blocks\.(\d+)", None), (r"^norm", (99999,))],
        }

    def no_weight_decay(self) -> set[str]:
        """As timm: no weight decay on the position embedding and the class token."""
        return {"pos_embed", "cls_token"}

    def timm_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights in timm's names: ``timm.create_model("vit_...", pretrained_cfg_overlay={"file": ...})``. A
        ``linear`` patch embedding's weight goes as the convolution kernel it equals."""
        state = to_timm_vit_state_dict(self.state_dict())
        if self.patch_embed.mode == "linear":
            weight, P = state["patch_embed.proj.weight"], self.patch_embed.patch_size
            state["patch_embed.proj.weight"] = weight.reshape(len(weight), -1, P, P)
        return state

    def timm_args(self) -> tuple[str, dict]:
        """The timm model these weights load into: a ``vit_*`` name and the ``model_kwargs`` that give it this
        net's sizes (``TimmNet(name, model_kwargs=..., weights_file=...)``)."""
        patch = self.patch_embed.patch_size
        side = int(round((self.pos_embed.shape[1] - self.pos_embed_class) ** 0.5)) * patch
        kwargs = {"img_size": side, "patch_size": patch, "embed_dim": self.num_features, "depth": len(self.blocks),
                  "num_heads": self.blocks[0].attn.nhead, "mlp_ratio": self.mlp_ratio}  # fmt: skip
        in_chans = self.patch_embed.proj.weight.shape[1] // (
            patch * patch if self.patch_embed.mode == "linear" else 1
        )
        if in_chans != 3:
            kwargs["in_chans"] = in_chans
        if not self.pos_embed_class:
            kwargs["no_embed_class"] = True
        if isinstance(self.norm, nn.Identity):
            kwargs["final_norm"] = False
        return "vit_tiny_patch16_224", kwargs

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, embed_dim), the class token after the blocks."""
        h = self.patch_embed(x)
        cls = self.cls_token.expand(len(h), -1, -1)
        if self.pos_embed_class:
            h = torch.cat([cls, h], dim=1) + self.pos_embed
        else:
            h = torch.cat([cls, h + self.pos_embed], dim=1)
        for block in self.blocks:
            h = block(h)
        return self.norm(h)[:, 0]

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, H, W) -> (B, num_outputs); ``lengths`` is ignored (whole images)."""
        return self.head(self.forward_features(x))


def _init_linear(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def to_timm_vit_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our ViT's state_dict in timm's names (for a weights file that timm's ``vit_*`` models load)."""
    return {
        k.replace(".linear1.", ".mlp.fc1.").replace(".linear2.", ".mlp.fc2."): v for k, v in state.items()
    }


def timm_vit_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A timm ``VisionTransformer`` state_dict in our names: only the MLP's layers are named differently."""
    return {k.replace("mlp.fc1", "linear1").replace("mlp.fc2", "linear2"): v for k, v in state.items()}
