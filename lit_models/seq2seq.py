"""Sequence-to-sequence architectures: plain ``nn.Module``s with one interface, so that ``Seq2SeqTask`` trains and
decodes any of them.

- ``encode(x, lengths) -> memory``: the source read once (a tensor or a tuple of tensors, each batch first, or
  None), so that decoding can repeat or reorder it per hypothesis;
- ``decode(target_in, memory) -> (B, T, target_vocab_size)`` logits for the next target symbol at every
  position of ``target_in`` (``<bos>`` first), reading only earlier target positions;
- ``forward(x, lengths, target_in)``: both (teacher forcing);
- ``start(memory) -> state`` and ``step(token, memory, state) -> (logits (B, V), state)``: one decoding step
  from the decoder's state (the Transformer's KV cache, the GRUs' hidden state), for greedy and beam search;
- ``alignments()``: after a forward with ``set_record(True)``, the attention over the source positions that each
  target position used, by layer (and head): what the alignment maps draw.

``Seq2SeqTransformer``: the encoder-decoder Transformer (Vaswani et al. 2017) built from the shared blocks; each
decoder block adds cross-attention (queries from the decoder, keys and values from the encoder's output).
``Bahdanau``: a bidirectional GRU encoder and a GRU decoder with additive attention
``e_tj = v . tanh(W s_{t-1} + U h_j)`` (Bahdanau et al. 2015). ``GRUSeq2Seq``: the same encoder and decoder with
no attention, the source squeezed into the decoder's first state: the baseline that shows what attention buys.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from archbench.errors import NET, ConfigError
from lit_models.blocks import Activation, Block, attention, attention_weights, make_norm, position_table

PAD = 0  # the datamodule's padding id (datamodules.seq2seq)


def padding_mask(lengths: torch.Tensor, length: int) -> torch.Tensor:
    """(B, length) True at real positions."""
    return torch.arange(length, device=lengths.device)[None, :] < lengths[:, None]


class CrossAttention(nn.Module):
    """Attention from the decoder's positions (queries) to the encoder's output (keys and values), with
    ``nn.MultiheadAttention``'s parameters split: ``q`` is the first third of its ``in_proj``, ``kv`` the rest."""

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if d_model % nhead:
            raise ConfigError(f"{NET}.nhead: {nhead} heads do not divide d_model {d_model}")
        self.nhead, self.dropout = nhead, dropout
        self.q = nn.Linear(d_model, d_model, bias=bias)
        self.kv = nn.Linear(d_model, 2 * d_model, bias=bias)
        self.proj = nn.Linear(d_model, d_model, bias=bias)
        self.record = False
        self.weights: torch.Tensor | None = None  # (B, nh, T, S) after a recorded forward

    def keys_values(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The memory's keys and values, (B, nh, S, hs) each: the same at every decoding step."""
        B, S, _ = memory.shape
        k, v = self.kv(memory).chunk(2, dim=-1)
        return k.view(B, S, self.nhead, -1).transpose(1, 2), v.view(B, S, self.nhead, -1).transpose(1, 2)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor | None = None,
                keys_values: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:  # fmt: skip
        """x: (B, T, D) decoder states; memory: (B, S, D); memory_mask: (B, S) True at real source positions;
        ``keys_values``: ``keys_values(memory)``, computed once for every decoding step."""
        B, T, D = x.shape
        nh, hs = self.nhead, D // self.nhead
        q = self.q(x).view(B, T, nh, hs).transpose(1, 2)
        k, v = keys_values if keys_values is not None else self.keys_values(memory)
        allowed = memory_mask[:, None, None, :] if memory_mask is not None else None
        if self.record:
            self.weights = attention_weights(q, k, allowed)
            y = self.weights @ v
        else:
            y = attention(q, k, v, allowed, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(B, T, D))


class DecoderBlock(Block):
    """A pre-LN decoder block: causal self-attention, cross-attention to the encoder's output, feed-forward,
    each on a residual branch (``nn.TransformerDecoderLayer(norm_first=True)``'s layout; its ``norm2`` is our
    ``norm_cross``, its ``norm3`` our ``norm2``)."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float, activation: Activation,
                 attention_dropout: float = 0.0):  # fmt: skip
        super().__init__(d_model, nhead, dim_feedforward, dropout, activation, True, attention_dropout)
        self.cross = CrossAttention(d_model, nhead, attention_dropout)
        self.norm_cross = make_norm("layernorm", d_model, 1e-5)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor | None,
                cache=None, start: int = 0, keys_values=None) -> torch.Tensor:  # fmt: skip
        """x: (B, T, D) at target positions ``start ..``; with ``cache`` (a KV cache of the earlier positions'
        self-attention keys and values), only the new positions are computed."""
        x = x + self.dropout(self.attn(self.norm1(x), None, True, None, cache, start))
        x = x + self.dropout(self.cross(self.norm_cross(x), memory, memory_mask, keys_values))
        return x + self._mlp(self.norm2(x))


class GrowingCache:
    """A self-attention KV cache that grows by one position per decoding step (``blocks.KVCache``'s
    ``update``), its tensors batch first so that beam search can reorder them with the hypotheses."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor):
        self.k, self.v = k, v

    def update(self, k: torch.Tensor, v: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        if start != self.k.shape[2]:
            raise ValueError(f"the cache holds {self.k.shape[2]} positions, position {start} asked")
        self.k, self.v = torch.cat([self.k, k], dim=2), torch.cat([self.v, v], dim=2)
        return self.k, self.v


class Seq2SeqTransformer(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        target_vocab_size: int,
        d_model: int = 128,
        nhead: int = 4,
        num_encoder_layers: int = 3,
        num_decoder_layers: int = 3,
        dim_feedforward: int = 512,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        activation: Activation = "gelu",
        positions: Literal["sinusoidal", "learned"] = "sinusoidal",
        max_length: int = 128,
        tie_embeddings: bool = True,
    ):
        """
        Args:
            vocab_size: Source symbols; linked from the data.
            target_vocab_size: Target symbols; linked from the data.
            d_model: Width of the residual streams.
            nhead: Attention heads (self- and cross-attention).
            num_encoder_layers: Encoder blocks.
            num_decoder_layers: Decoder blocks.
            dim_feedforward: Hidden width of each block's feed-forward.
            dropout: Dropout on embeddings and residual branches.
            attention_dropout: Dropout on attention weights.
            activation: ``relu``, ``gelu``, ``gelu_tanh`` or ``swiglu``.
            positions: ``sinusoidal`` or ``learned``, on both sides.
            max_length: Longest source or target sequence (markers included) the positions cover.
            tie_embeddings: The output layer is the target embedding (one tensor).
        """
        super().__init__()
        self.d_model, self.max_length = d_model, max_length
        self.source_embedding = nn.Embedding(vocab_size, d_model, padding_idx=PAD)
        self.target_embedding = nn.Embedding(target_vocab_size, d_model, padding_idx=PAD)
        if positions == "learned":
            self.pos = nn.Parameter(torch.randn(max_length, d_model) * 0.02)
        else:
            self.register_buffer("pos", position_table(positions, max_length, d_model), persistent=False)
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.ModuleList(
            Block(d_model, nhead, dim_feedforward, dropout, activation, True, attention_dropout)
            for _ in range(num_encoder_layers)
        )
        self.encoder_norm = make_norm("layernorm", d_model, 1e-5)
        self.decoder = nn.ModuleList(
            DecoderBlock(d_model, nhead, dim_feedforward, dropout, activation, attention_dropout)
            for _ in range(num_decoder_layers)
        )
        self.decoder_norm = make_norm("layernorm", d_model, 1e-5)
        self.head = nn.Linear(d_model, target_vocab_size, bias=False)
        for table in (self.source_embedding, self.target_embedding):
            # std d^-0.5, so that times sqrt(d) the embeddings are of unit scale beside the positions, and the
            # tied output layer starts near uniform (torch's N(0, 1) gave a first loss of 61 nats and slow
            # learning at d = 64)
            nn.init.normal_(table.weight, std=d_model**-0.5)
            with torch.no_grad():
                table.weight[PAD].zero_()
        if tie_embeddings:
            self.head.weight = self.target_embedding.weight

    def _embed(self, table: nn.Embedding, ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        """ids at positions ``start ..``, embedded, scaled and positioned."""
        end = start + ids.shape[1]
        if end > self.max_length:
            raise ValueError(f"a sequence of {end} symbols is longer than max_length={self.max_length}")
        return self.drop(table(ids) * math.sqrt(self.d_model) + self.pos[start:end])

    def encode(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        mask = padding_mask(lengths, x.shape[1]) if lengths is not None else None
        h = self._embed(self.source_embedding, x)
        for block in self.encoder:
            h = block(h, mask)
        return self.encoder_norm(h), mask

    def decode(
        self, target_in: torch.Tensor, memory: tuple[torch.Tensor, torch.Tensor | None]
    ) -> torch.Tensor:
        states, mask = memory
        h = self._embed(self.target_embedding, target_in)
        for block in self.decoder:
            h = block(h, states, mask)
        return self.head(self.decoder_norm(h))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None, target_in: torch.Tensor) -> torch.Tensor:
        return self.decode(target_in, self.encode(x, lengths))

    def start(self, memory: tuple) -> tuple:
        """The decoding state before the first symbol: per decoder block, the empty self-attention cache and
        the cross-attention's keys and values of the memory (computed once)."""
        states, _ = memory
        state = []
        for block in self.decoder:
            empty = states.new_zeros(states.shape[0], block.attn.nhead, 0, block.attn.head_dim)
            state.append((empty, empty, *block.cross.keys_values(states)))
        return tuple(state)

    def step(self, token: torch.Tensor, memory: tuple, state: tuple) -> tuple[torch.Tensor, tuple]:
        """One decoding step with the KV cache: the next-symbol logits (B, V) after ``token`` (B,)."""
        states, mask = memory
        t = state[0][0].shape[2]  # positions decoded so far
        h = self._embed(self.target_embedding, token[:, None], t)
        new_state = []
        for block, (k, v, ck, cv) in zip(self.decoder, state, strict=True):
            cache = GrowingCache(k, v)
            h = block(h, states, mask, cache, t, (ck, cv))
            new_state.append((cache.k, cache.v, ck, cv))
        return self.head(self.decoder_norm(h))[:, 0], tuple(new_state)

    def set_record(self, record: bool) -> None:
        for block in self.decoder:
            block.cross.record = record

    def alignments(self) -> list[torch.Tensor]:
        """Cross-attention weights of the last recorded forward, one (B, nh, T, S) tensor per decoder block."""
        return [block.cross.weights for block in self.decoder]


class GRUEncoder(nn.Module):
    """A bidirectional GRU over the embedded source, padding packed away: (B, S, 2H) states and (B, 2H) the
    final forward and backward states joined."""

    def __init__(
        self, vocab_size: int, embedding_dim: int, hidden_size: int, num_layers: int, dropout: float
    ):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=PAD)
        self.rnn = nn.GRU(embedding_dim, hidden_size, num_layers, batch_first=True, bidirectional=True,
                          dropout=dropout if num_layers > 1 else 0.0)  # fmt: skip
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if lengths is None:
            lengths = torch.full((x.shape[0],), x.shape[1], device=x.device)
        packed = pack_padded_sequence(self.drop(self.embedding(x)), lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)  # fmt: skip
        out, last = self.rnn(packed)
        states, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return states, torch.cat([last[-2], last[-1]], dim=-1)


class GRUSeq2Seq(nn.Module):
    def __init__(self, vocab_size: int, target_vocab_size: int, embedding_dim: int = 64, hidden_size: int = 256,
                 num_layers: int = 1, dropout: float = 0.1):  # fmt: skip
        """
        Args:
            vocab_size: Source symbols; linked from the data.
            target_vocab_size: Target symbols; linked from the data.
            embedding_dim: Width of the symbol embeddings.
            hidden_size: Hidden units of each encoder direction and of the decoder.
            num_layers: Stacked GRU layers on each side.
            dropout: Dropout on embeddings, between layers and before the output layer.
        """
        super().__init__()
        self.encoder = GRUEncoder(vocab_size, embedding_dim, hidden_size, num_layers, dropout)
        self.bridge = nn.Linear(2 * hidden_size, num_layers * hidden_size)
        self.embedding = nn.Embedding(target_vocab_size, embedding_dim, padding_idx=PAD)
        self.rnn = nn.GRU(embedding_dim, hidden_size, num_layers, batch_first=True,
                          dropout=dropout if num_layers > 1 else 0.0)  # fmt: skip
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, target_vocab_size)
        self.num_layers, self.hidden_size = num_layers, hidden_size

    def encode(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        _, last = self.encoder(x, lengths)
        h0 = torch.tanh(self.bridge(last))  # (B, layers * H): the whole source in one vector
        return h0.view(-1, self.num_layers, self.hidden_size)  # batch first, as every memory here

    def decode(self, target_in: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.drop(self.embedding(target_in)), memory.transpose(0, 1).contiguous())
        return self.head(self.drop(out))

    def start(self, memory: torch.Tensor) -> torch.Tensor:
        return memory

    def step(
        self, token: torch.Tensor, memory: torch.Tensor, state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One decoding step: the next-symbol logits (B, V) after ``token`` (B,), and the new state."""
        out, h = self.rnn(self.drop(self.embedding(token[:, None])), state.transpose(0, 1).contiguous())
        return self.head(self.drop(out[:, 0])), h.transpose(0, 1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None, target_in: torch.Tensor) -> torch.Tensor:
        return self.decode(target_in, self.encode(x, lengths))


class AdditiveAttention(nn.Module):
    """Bahdanau's score ``e_j = v . tanh(W s + U h_j)`` over the source states ``h`` for a decoder state ``s``,
    softmaxed over the real source positions."""

    def __init__(self, query_size: int, key_size: int, attention_size: int):
        super().__init__()
        self.W = nn.Linear(query_size, attention_size, bias=False)
        self.U = nn.Linear(key_size, attention_size, bias=True)
        self.v = nn.Linear(attention_size, 1, bias=False)

    def forward(self, s: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor | None,
                projected: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """s: (B, Q); keys: (B, S, K); mask: (B, S); ``projected``: ``U(keys)`` computed once per source
        -> (context (B, K), weights (B, S))."""
        projected = self.U(keys) if projected is None else projected
        scores = self.v(torch.tanh(self.W(s)[:, None, :] + projected)).squeeze(-1)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = scores.softmax(-1)
        return (weights[:, :, None] * keys).sum(1), weights


class Bahdanau(nn.Module):
    def __init__(self, vocab_size: int, target_vocab_size: int, embedding_dim: int = 64, hidden_size: int = 256,
                 attention_size: int = 256, dropout: float = 0.1):  # fmt: skip
        """
        Args:
            vocab_size: Source symbols; linked from the data.
            target_vocab_size: Target symbols; linked from the data.
            embedding_dim: Width of the symbol embeddings.
            hidden_size: Hidden units of each encoder direction and of the decoder.
            attention_size: Width of the additive attention's hidden layer (W s + U h).
            dropout: Dropout on embeddings and before the output layer.
        """
        super().__init__()
        self.encoder = GRUEncoder(vocab_size, embedding_dim, hidden_size, 1, dropout)
        self.bridge = nn.Linear(2 * hidden_size, hidden_size)
        self.attention = AdditiveAttention(hidden_size, 2 * hidden_size, attention_size)
        self.embedding = nn.Embedding(target_vocab_size, embedding_dim, padding_idx=PAD)
        self.cell = nn.GRUCell(embedding_dim + 2 * hidden_size, hidden_size)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size + 2 * hidden_size + embedding_dim, target_vocab_size)
        self.record = False
        self.weights: torch.Tensor | None = None  # (B, T, S) after a recorded forward

    def encode(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple:
        states, last = self.encoder(x, lengths)
        mask = padding_mask(lengths, x.shape[1]) if lengths is not None else None
        return states, self.attention.U(states), mask, torch.tanh(self.bridge(last))

    def start(self, memory: tuple) -> torch.Tensor:
        return memory[3]

    def _step(self, token: torch.Tensor, memory: tuple, s: torch.Tensor):
        """The attention reads the state the previous step left, then the cell takes the symbol and the
        context -> (logits (B, V), new state, attention weights (B, S))."""
        states, projected, mask, _ = memory
        embedded = self.drop(self.embedding(token))
        context, weights = self.attention(s, states, mask, projected)
        s = self.cell(torch.cat([embedded, context], dim=-1), s)
        return self.out(self.drop(torch.cat([s, context, embedded], dim=-1))), s, weights

    def step(
        self, token: torch.Tensor, memory: tuple, state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One decoding step: the next-symbol logits (B, V) after ``token`` (B,), and the new state."""
        logits, state, _ = self._step(token, memory, state)
        return logits, state

    def decode(self, target_in: torch.Tensor, memory: tuple) -> torch.Tensor:
        s, logits, weights = self.start(memory), [], []
        for t in range(target_in.shape[1]):
            out, s, w = self._step(target_in[:, t], memory, s)
            logits.append(out)
            weights.append(w)
        if self.record:
            self.weights = torch.stack(weights, dim=1)
        return torch.stack(logits, dim=1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None, target_in: torch.Tensor) -> torch.Tensor:
        return self.decode(target_in, self.encode(x, lengths))

    def set_record(self, record: bool) -> None:
        self.record = record

    def alignments(self) -> list[torch.Tensor]:
        """The attention weights of the last recorded forward: one (B, 1, T, S) tensor (one layer, one head)."""
        return [self.weights[:, None]] if self.weights is not None else []


def next_logits(net: nn.Module, prefix: torch.Tensor, memory, state):
    """The next-symbol logits (B, V) after ``prefix`` (B, t): one step from ``state`` for a net with ``step``
    (all three here), else the whole prefix decoded again -> (logits, the new state)."""
    if state is not None:
        return net.step(prefix[:, -1], memory, state)
    return net.decode(prefix, memory)[:, -1], None


def greedy_decode(net: nn.Module, x: torch.Tensor, lengths: torch.Tensor | None, bos: int, eos: int,
                  max_length: int) -> list[list[int]]:  # fmt: skip
    """The most likely symbol at each step until ``<eos>`` (or ``max_length`` symbols): one list of ids per
    source, without the markers. The source is encoded once; each step starts from the decoder's state (the
    recurrent state, or the Transformer's KV cache) where the net has ``step``."""
    memory = net.encode(x, lengths)
    B = x.shape[0]
    prefix = torch.full((B, 1), bos, dtype=torch.long, device=x.device)
    done = torch.zeros(B, dtype=torch.bool, device=x.device)
    state = net.start(memory) if hasattr(net, "step") else None
    for _ in range(max_length):
        logits, state = next_logits(net, prefix, memory, state)
        logits[:, PAD] = float("-inf")
        logits[:, bos] = float("-inf")
        token = logits.argmax(-1).masked_fill(done, eos)
        prefix = torch.cat([prefix, token[:, None]], dim=1)
        done |= token == eos
        if done.all():
            break
    results = []
    for row in prefix[:, 1:].tolist():
        results.append(row[: row.index(eos)] if eos in row else row)
    return results


def select_memory(memory, index: torch.Tensor):
    """``memory`` (a tensor, None, or a tuple of them, each batch first) at the batch rows ``index``."""
    if memory is None:
        return None
    if isinstance(memory, tuple):
        return tuple(select_memory(m, index) for m in memory)
    return memory.index_select(0, index)


def beam_decode(net: nn.Module, x: torch.Tensor, lengths: torch.Tensor | None, bos: int, eos: int,
                max_length: int, width: int = 5, length_penalty: float = 1.0) -> list[list[int]]:  # fmt: skip
    """Beam search: the ``width`` best prefixes by summed log-probability are kept at each step; a prefix that
    wrote ``<eos>`` is finished and keeps its score. The answer per source is the finished hypothesis with the
    best score / length ** ``length_penalty`` (0: raw sums, which favour short outputs). Width 1 is greedy
    decoding. The source is encoded once and its memory repeated per hypothesis."""
    B, device = x.shape[0], x.device
    memory = select_memory(net.encode(x, lengths), torch.arange(B, device=device).repeat_interleave(width))
    prefix = torch.full((B * width, 1), bos, dtype=torch.long, device=device)
    scores = torch.zeros(B, width, device=device)
    scores[:, 1:] = float("-inf")  # all beams start as the one empty prefix
    finished = torch.zeros(B * width, dtype=torch.bool, device=device)
    state = net.start(memory) if hasattr(net, "step") else None
    for _ in range(max_length):
        logits, state = next_logits(net, prefix, memory, state)
        logp = logits.float().log_softmax(-1)  # (B * W, V)
        logp[:, PAD] = float("-inf")
        logp[:, bos] = float("-inf")
        V = logp.shape[-1]
        # a finished hypothesis only continues as itself: <eos> again, at no cost
        if finished.any():
            logp[finished] = float("-inf")
            logp[finished, eos] = 0.0
        total = (scores.view(-1, 1) + logp).view(B, width * V)
        scores, flat = total.topk(width, dim=-1)  # (B, W)
        origin = (flat // V + torch.arange(B, device=device)[:, None] * width).view(-1)
        token = (flat % V).view(-1)
        prefix = torch.cat([prefix.index_select(0, origin), token[:, None]], dim=1)
        memory, state = select_memory(memory, origin), select_memory(state, origin)
        finished = finished.index_select(0, origin) | (token == eos)
        if finished.all():
            break
    rows = prefix[:, 1:].tolist()
    outputs = [row[: row.index(eos)] if eos in row else row for row in rows]
    lengths_out = torch.tensor([len(o) + 1 for o in outputs], device=device, dtype=torch.float32)
    normalised = scores.view(-1) / lengths_out**length_penalty
    best = normalised.view(B, width).argmax(-1)
    return [outputs[b * width + int(best[b])] for b in range(B)]
