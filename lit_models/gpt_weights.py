"""Pretrained weights for our ``GPT``: a Hugging Face ``LlamaForCausalLM`` (SmolLM2, loaded from its GGUF file
by transformers) or ``GPT2LMHeadModel``, tensor by tensor, every shape checked.

Parity (tests/test_gpt.py): our logits equal the Hugging Face model's on the same weights.
"""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import torch

from archbench.checkpoint_files import gguf_in
from archbench.errors import ConfigError, first_line
from lit_models.gpt_config import GPTConfig


def llama_config(hf) -> GPTConfig:
    """Our config for a transformers ``LlamaConfig``."""
    rope = getattr(hf, "rope_parameters", None) or {}
    base = rope.get("rope_theta", getattr(hf, "rope_theta", 10000.0))
    if rope.get("rope_type", "default") != "default":
        raise ConfigError(
            f"Llama weights with rope_type {rope['rope_type']!r} are not supported (default only)"
        )
    return GPTConfig(
        vocab_size=hf.vocab_size, block_size=hf.max_position_embeddings, n_layer=hf.num_hidden_layers,
        n_head=hf.num_attention_heads, n_kv_head=hf.num_key_value_heads, n_embd=hf.hidden_size,
        head_dim=getattr(hf, "head_dim", None), intermediate_size=hf.intermediate_size, norm="rmsnorm",
        norm_eps=hf.rms_norm_eps, mlp="swiglu", positions="rotary", rope_base=float(base),
        bias=bool(hf.attention_bias), tie_embeddings=bool(hf.tie_word_embeddings),
    )  # fmt: skip


def gpt2_config(hf) -> GPTConfig:
    """Our config for a transformers ``GPT2Config``."""
    return GPTConfig(
        vocab_size=hf.vocab_size, block_size=hf.n_positions, n_layer=hf.n_layer, n_head=hf.n_head,
        n_embd=hf.n_embd, intermediate_size=hf.n_inner, norm_eps=hf.layer_norm_epsilon, mlp="gelu_tanh",
        positions="learned", tie_embeddings=bool(hf.tie_word_embeddings),
    )  # fmt: skip


def llama_state(theirs: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, torch.Tensor]:
    ours = {"wte.weight": theirs["model.embed_tokens.weight"], "norm.weight": theirs["model.norm.weight"]}
    ours["head.weight"] = theirs.get("lm_head.weight", ours["wte.weight"])
    for i in range(config.n_layer):
        p, q = f"model.layers.{i}.", f"blocks.{i}."
        attn = [theirs[p + f"self_attn.{n}_proj.weight"] for n in "qkv"]
        ours[q + "attn.qkv.weight"] = torch.cat(attn)
        if config.bias:
            ours[q + "attn.qkv.bias"] = torch.cat([theirs[p + f"self_attn.{n}_proj.bias"] for n in "qkv"])
            ours[q + "attn.proj.bias"] = theirs[p + "self_attn.o_proj.bias"]
        ours[q + "attn.proj.weight"] = theirs[p + "self_attn.o_proj.weight"]
        ours[q + "linear1.weight"] = torch.cat(
            [theirs[p + "mlp.gate_proj.weight"], theirs[p + "mlp.up_proj.weight"]]
        )
        ours[q + "linear2.weight"] = theirs[p + "mlp.down_proj.weight"]
        ours[q + "norm1.weight"] = theirs[p + "input_layernorm.weight"]
        ours[q + "norm2.weight"] = theirs[p + "post_attention_layernorm.weight"]
    return ours


def gpt2_state(theirs: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, torch.Tensor]:
    t = {k.removeprefix("transformer."): v for k, v in theirs.items()}
    ours = {"wte.weight": t["wte.weight"], "wpe.weight": t["wpe.weight"], "norm.weight": t["ln_f.weight"],
            "norm.bias": t["ln_f.bias"]}  # fmt: skip
    ours["head.weight"] = theirs.get("lm_head.weight", ours["wte.weight"])
    names = {
        "attn.c_attn": "attn.qkv",
        "attn.c_proj": "attn.proj",
        "mlp.c_fc": "linear1",
        "mlp.c_proj": "linear2",
    }
    for i in range(config.n_layer):
        p, q = f"h.{i}.", f"blocks.{i}."
        for theirs_name, our_name in names.items():  # GPT-2's Conv1D stores (in, out): transposed
            ours[q + our_name + ".weight"] = t[p + theirs_name + ".weight"].t()
            ours[q + our_name + ".bias"] = t[p + theirs_name + ".bias"]
        for n, m in (("ln_1", "norm1"), ("ln_2", "norm2")):
            ours[q + m + ".weight"], ours[q + m + ".bias"] = t[p + n + ".weight"], t[p + n + ".bias"]
    return ours


def convert_hf(model) -> tuple[GPTConfig, dict[str, torch.Tensor]]:
    """Our config and state dict for a transformers ``LlamaForCausalLM`` or ``GPT2LMHeadModel``."""
    kind = model.config.model_type
    refuse_unconverted(kind)
    if kind == "llama":
        config = llama_config(model.config)
        return config, llama_state(model.state_dict(), config)
    config = gpt2_config(model.config)
    return config, gpt2_state(model.state_dict(), config)


def refuse_unconverted(kind: str) -> None:
    """A ConfigError for a transformers model type that ``convert_hf`` does not read."""
    if kind not in ("llama", "gpt2"):
        raise ConfigError(f"weights of a {kind!r} model: only Llama and GPT-2 models convert")


def load_hf_causal_lm(path: str | Path):
    """A transformers causal LM from a folder or a GGUF file (SmolLM2's), float32, in eval mode."""
    from transformers import AutoModelForCausalLM

    path = weights_path(path)
    kwargs = {"gguf_file": path.name} if path.suffix == ".gguf" else {}
    folder = path.parent if path.suffix == ".gguf" else path
    # a model of another kind is said before transformers loads it (and prints its load report)
    if path.suffix != ".gguf":
        try:
            kind = json.loads((folder / "config.json").read_text()).get("model_type")
        except (OSError, ValueError, AttributeError):
            kind = None  # transformers says what is wrong with it below
        if kind is not None:
            refuse_unconverted(kind)
    # A user's file that transformers' readers refuse (struct.error: a GGUF cut short): what it is, in one line,
    # rather than their traceback. Not caught: a missing package, memory, an API change (the code's, not the file's).
    try:
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, **kwargs)
    except (OSError, ValueError, KeyError, EOFError, struct.error, pickle.UnpicklingError) as err:
        said = first_line(err)
        kind = type(err).__name__ if type(err).__module__ == "builtins" else f"{type(err).__module__}.{type(err).__name__}"  # fmt: skip
        raise ConfigError(
            f"pretrained weights {str(path)!r} could not be read as a model ({kind}: {said})"
        ) from None
    return model.eval()


def weights_path(path: str | Path) -> Path:
    """The GGUF file or transformers folder that ``path`` names (a folder holding a GGUF file: that file);
    anything else (missing, another kind of file, a folder without a model) stops in one line."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"pretrained weights {str(path)!r} not found (python -m experiments data smollm2)")
    if path.is_dir() and not (path / "config.json").is_file():
        gguf = gguf_in(path)
        if gguf is None:
            raise ConfigError(
                f"pretrained weights {str(path)!r}: the folder holds neither a .gguf file nor a config.json"
            )
        path = gguf
    if path.is_file() and path.suffix != ".gguf":
        raise ConfigError(
            f"pretrained weights {str(path)!r} are not a language model: give a .gguf file or a folder holding "
            "one or a transformers model (config.json)"
        )
    return path


def load_tokenizer(path: str | Path):
    """The transformers tokenizer beside a model folder or inside a GGUF file."""
    from transformers import AutoTokenizer

    path = weights_path(path)
    if path.suffix == ".gguf":
        return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return AutoTokenizer.from_pretrained(str(path))
