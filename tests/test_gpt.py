"""The GPT decoder: parity with Hugging Face's Llama and GPT-2 on the same weights (tiny random configs built
here; the real SmolLM2 file in a slow test), the KV cache against a full recompute, causality, tied weights,
the presets' sizes, and generation."""

import pytest
import torch
from conftest import ROOT
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from lit_models.generation import filter_logits, generate
from lit_models.gpt import GPT, from_hf

VOCAB = 97


def tiny_llama(tied: bool = True) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
                         num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=tied, rope_theta=5000.0, pad_token_id=0, bos_token_id=1, eos_token_id=2)  # fmt: skip
    return LlamaForCausalLM(config).eval()


def tiny_gpt2() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=VOCAB, n_positions=64, n_embd=48, n_layer=2, n_head=4, bos_token_id=1, eos_token_id=2
    )
    return GPT2LMHeadModel(config).eval()


@pytest.mark.parametrize(
    "make", [tiny_llama, lambda: tiny_llama(tied=False), tiny_gpt2], ids=["llama", "llama-untied", "gpt2"]
)
def test_logits_equal_hugging_face_on_the_same_weights(make):
    hf = make()
    ours = from_hf(hf).eval()
    x = torch.randint(0, VOCAB, (3, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), hf(x).logits, atol=1e-5, rtol=0)
    tied = hf.config.tie_word_embeddings
    assert (ours.head.weight is ours.wte.weight) == tied


def test_greedy_generation_gives_hugging_faces_tokens():
    hf = tiny_llama()
    ours = from_hf(hf).eval()
    prompt = torch.randint(3, VOCAB, (2, 5), generator=torch.Generator().manual_seed(2))
    theirs = hf.generate(prompt, max_new_tokens=12, do_sample=False, min_new_tokens=12)[:, 5:]
    mine = torch.cat(list(generate(ours, prompt, 12, context=64)), dim=1)
    assert torch.equal(mine, theirs)


def test_kv_cache_gives_the_logits_of_a_full_recompute():
    net = (
        GPT(
            vocab_size=50,
            seq_len=32,
            preset=None,
            n_layer=2,
            n_head=4,
            n_kv_head=2,
            n_embd=32,
            positions="rotary",
        )
        .double()
        .eval()
    )
    x = torch.randint(0, 50, (2, 20))
    with torch.no_grad():
        full = net(x)
        cache = net.new_cache(2)
        pieces = [net(x[:, :7], cache=cache)]  # a prompt, then a chunk, then one token at a time
        pieces.append(net(x[:, 7:12], cache=cache, start=7))
        pieces += [net(x[:, t : t + 1], cache=cache, start=t) for t in range(12, 20)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-12, rtol=0)
    cached = torch.cat(list(generate(net, x[:, :4], 10, context=32)), 1)
    recomputed = torch.cat(list(generate(net, x[:, :4], 10, context=32, use_cache=False)), 1)
    assert torch.equal(cached, recomputed)


@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "rotary"])
def test_a_future_token_never_changes_an_earlier_logit(positions):
    net = (
        GPT(vocab_size=30, seq_len=16, preset=None, n_layer=2, n_head=2, n_embd=16, positions=positions)
        .double()
        .eval()
    )
    x = torch.randint(0, 30, (1, 16))
    y = x.clone()
    y[0, 9] = (x[0, 9] + 1) % 30
    with torch.no_grad():
        a, b = net(x), net(y)
    torch.testing.assert_close(a[:, :9], b[:, :9], atol=0, rtol=0)
    assert (a[:, 9:] - b[:, 9:]).abs().max() > 1e-6  # and it does change its own and later ones


def test_tied_embeddings_are_one_tensor_trained_once():
    net = GPT(vocab_size=40, seq_len=8, preset=None, n_layer=1, n_head=2, n_embd=16)
    assert net.head.weight is net.wte.weight
    names = [n for n, _ in net.named_parameters()]
    assert "head.weight" not in names and "wte.weight" in names
    untied = GPT(vocab_size=40, seq_len=8, preset=None, n_layer=1, n_head=2, n_embd=16, tie_embeddings=False)
    assert sum(p.numel() for p in untied.parameters()) - sum(p.numel() for p in net.parameters()) == 40 * 16


@pytest.mark.parametrize(("preset", "params"), [("gpt2-small", 124_439_808), ("smollm2-135m", 134_515_008)])
def test_presets_have_the_published_sizes(preset, params):
    with torch.device("meta"):
        net = GPT(preset=preset)
    assert sum(p.numel() for p in net.parameters()) == params


def test_a_context_longer_than_the_models_positions_is_refused():
    with (
        pytest.raises(ValueError, match=r"context \(2048 tokens\) is longer than the model's 1024 positions"),
        torch.device("meta"),
    ):
        GPT(vocab_size=50257, seq_len=2048, preset="gpt2-small")


def test_top_k_and_top_p_keep_the_right_tokens():
    logits = torch.log(torch.tensor([[0.5, 0.2, 0.15, 0.1, 0.05]]))
    assert torch.isfinite(filter_logits(logits, top_k=2)).tolist() == [[True, True, False, False, False]]
    # top_p 0.8: 0.5 + 0.2 = 0.7 < 0.8, so the third token (0.15) is needed too
    assert torch.isfinite(filter_logits(logits, top_p=0.8)).tolist() == [[True, True, True, False, False]]
    assert torch.isfinite(filter_logits(logits, top_p=0.5)).tolist() == [[True, False, False, False, False]]


SMOLLM2 = ROOT / "data" / "pretrained" / "smollm2-135m"


@pytest.mark.slow
@pytest.mark.skipif(not SMOLLM2.is_dir(), reason="python -m experiments data smollm2")
def test_smollm2_in_our_decoder_equals_transformers():
    from lit_models.gpt_weights import load_hf_causal_lm, load_tokenizer

    hf = load_hf_causal_lm(SMOLLM2)
    tokenizer = load_tokenizer(SMOLLM2)
    ours = from_hf(hf).eval()
    for prompt in ["The capital of France is", "def fibonacci(n):", "Once upon a time"]:
        ids = torch.tensor([tokenizer.encode(prompt)])
        with torch.no_grad():
            theirs, mine = hf(ids).logits, ours(ids)
        assert (theirs - mine).abs().max() <= 1e-4, prompt
    ids = torch.tensor([tokenizer.encode("The capital of France is")])
    probs = ours(ids)[0, -1].softmax(-1)
    assert tokenizer.decode([int(probs.argmax())]) == " Paris" and probs.max() > 0.7
    theirs = hf.generate(ids, max_new_tokens=16, do_sample=False)[:, ids.shape[1] :]
    mine = torch.cat(list(generate(ours, ids, 16, context=256)), dim=1)
    assert torch.equal(mine, theirs[:, : mine.shape[1]])
