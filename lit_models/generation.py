"""Sampling from a language model, a token at a time: greedy, or multinomial over the softmax with temperature,
top-k and top-p (nucleus) filtering.

A net with ``new_cache`` (our GPT) reads only the new token each step from its KV cache; any other net (a
recurrent language model) is run over the last ``context`` tokens each step. Past the model's positions the
window slides: the newest ``context`` tokens are recomputed (as the course's GPT crops its context).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """(B, V) logits with everything outside the top ``k`` and outside the smallest set whose probability
    reaches ``top_p`` set to -inf."""
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        ordered, order = logits.sort(dim=-1, descending=True)
        before = ordered.softmax(-1).cumsum(-1) - ordered.softmax(-1)  # probability of the better tokens
        drop = (before >= top_p).scatter(-1, order, before >= top_p)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def next_token(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None,
               generator: torch.Generator | None) -> torch.Tensor:  # fmt: skip
    """(B, V) -> (B, 1): the argmax at temperature 0, else a draw from the filtered softmax."""
    if temperature == 0:
        return logits.argmax(-1, keepdim=True)
    probs = filter_logits(logits.float() / temperature, top_k, top_p).softmax(-1)
    return torch.multinomial(probs, 1, generator=generator)


@torch.no_grad()
def generate(
    net: nn.Module,
    prompt: torch.Tensor,
    max_new_tokens: int,
    context: int,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    stop_id: int | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> Iterator[torch.Tensor]:
    """Yield (B, 1) new tokens one step at a time after ``prompt`` (B, T); stops after ``max_new_tokens`` or
    when every row has produced ``stop_id``. ``context``: the most positions the net reads at once."""
    if prompt.shape[1] == 0:
        raise ValueError("the prompt is empty: give at least one token")
    ids, done = prompt, torch.zeros(prompt.shape[0], 1, dtype=torch.bool, device=prompt.device)
    # The cache holds what this call can reach: the prompt and the new tokens, at most the context.
    cache_len = min(context, prompt.shape[1] + max_new_tokens)
    cache = net.new_cache(prompt.shape[0], cache_len) if use_cache and hasattr(net, "new_cache") else None
    window = ids[:, -context:]
    logits = net(window, cache=cache) if cache is not None else net(window)
    for _ in range(max_new_tokens):
        token = next_token(logits[:, -1], temperature, top_k, top_p, generator)
        if stop_id is not None:
            token = token.masked_fill(done, stop_id)
            done |= token == stop_id
        yield token
        if bool(done.all()):
            return
        ids = torch.cat([ids, token], dim=1)
        if cache is not None and window.shape[1] < cache_len:
            logits = net(token, cache=cache, start=window.shape[1])
            window = torch.cat([window, token], dim=1)
        else:  # no cache, or the cache is full: the newest `context` tokens, recomputed
            window = ids[:, -context:]
            cache = net.new_cache(ids.shape[0], cache_len) if cache is not None else None
            logits = net(window, cache=cache) if cache is not None else net(window)
