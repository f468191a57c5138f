"""``MaskedLanguageModelTask``: BERT's masked-LM pre-training for a Transformer encoder over a token stream.

Of each window's real tokens (special tokens never), 15% are chosen; of those, 80% become the mask token, 10% a
random token and 10% stay as they are; the loss is the cross-entropy of the chosen tokens only (Devlin et al.
2019). The head (dense, GELU, LayerNorm, then a decoder tied to the input embedding) takes the place of the
net's pooled head, so a checkpoint holds the encoder under the net's own names: a classifier of the same shape
starts from it with ``model.init_args.init_from`` (``lit_models.task.Task``).

Training draws fresh masks every batch. Validation and test mask each window by a hash of its tokens and
positions, so every epoch, every model and every number of processes scores the same positions, and the
metrics (loss in nats per masked token, perplexity, accuracy) are sums over the split, exact under DDP.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from archbench.errors import ConfigError
from lit_models.language_model import LanguageModelTask, SummedStates

_PRIME = 2**31 - 1  # hashing modulo a prime below 2**31: products stay inside int64


class MaskedLMHead(nn.Module):
    """BERT's prediction head: dense, GELU, LayerNorm, then logits through the (tied) token embedding."""

    def __init__(self, embedding: nn.Embedding):
        super().__init__()
        vocab, dim = embedding.weight.shape
        # The shared matrix starts at std dim**-0.5, as the original Transformer's shared embedding: unit-scale
        # logits (nn.Embedding's std 1 gives logits of std sqrt(dim), a first loss near 30 nats), and with
        # the net's embedding_scale unit-scale inputs too.
        nn.init.normal_(embedding.weight, std=dim**-0.5)
        self.dense = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.decoder = nn.Linear(dim, vocab)
        self.decoder.weight = embedding.weight  # tied: one matrix for tokens in and tokens out

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.norm(F.gelu(self.dense(h))))


class MaskedLMMetrics(SummedStates):
    """Summed nats, masked tokens and correct predictions -> loss, perplexity, accuracy."""

    states = ("nats", "tokens", "correct")

    def compute(self) -> dict[str, torch.Tensor]:
        self.scored = float(self.tokens)  # every process's sum (compute runs synced), for _log_epoch
        loss = self.nats / self.tokens  # none masked: NaN, never a loss of 0 (trial 21: a perfect score)
        return {"loss": loss.float(), "ppl": loss.exp().float(), "acc": (self.correct / self.tokens).float()}


def window_uniform(x: torch.Tensor, salt: int) -> torch.Tensor:
    """(B, T) token ids -> (B, T) numbers in [0, 1) that depend only on each window's tokens, the position and
    ``salt``: the same masks on any device, in any batch, under any number of processes."""
    T = x.shape[1]
    pos = torch.arange(T, device=x.device)
    weights = (pos * 48271 + 11) % _PRIME
    key = ((x % _PRIME) * weights).sum(1, keepdim=True) % _PRIME  # a polynomial hash of the window
    h = (key * 16807 + pos * 69621 + salt) % _PRIME
    for a, c in ((48271, 12345), (69621, 54321), (16807, 99991)):
        h = (h * a + c) % _PRIME
        h = h ^ (h >> 11)
    return h.double().div(_PRIME).float()


class MaskedLanguageModelTask(LanguageModelTask):
    """A language model's data, evaluation and logging; masked targets in place of next tokens."""

    no_tokens_scored = "none of its tokens is chosen for masking, by the fixed choice evaluation uses"

    reads_the_nets_output = False  # the encoder's token states, whatever the net pools for a classifier
    instead_of_predict = (
        "test (the masked-token loss and accuracy on a split) or probe (which of two sentences it prefers)"
    )

    def __init__(
        self,
        net: nn.Module,
        task: str = "language_modeling",
        num_outputs: int | None = None,
        mask_id: int | None = None,
        special_ids: list[int] | None = None,
        mask_prob: float = 0.15,
        mask_token_share: float = 0.8,
        random_token_share: float = 0.1,
        **kwargs,
    ):
        """
        Args:
            net: A Transformer encoder over token ids with ``token_states`` and a token embedding
                (``lit_models.TransformerNet``). Its pooled head is replaced by the masked-LM head.
            task: What the data is for; linked from the data: a token stream (``language_modeling``).
            num_outputs: The vocabulary size; linked from the data.
            mask_id: The mask token. Empty: the data's (``mask_id`` of its tokenizer, read when the run starts);
                the tokenizer needs one (``data/pretrained/all-MiniLM-L6-v2``'s ``[MASK]``, any BERT or RoBERTa
                tokenizer).
            special_ids: Tokens never chosen as targets. Empty: the data's special tokens.
            mask_prob: Share of real tokens chosen as targets.
            mask_token_share: Of the chosen, the share replaced by the mask token.
            random_token_share: Of the chosen, the share replaced by a random token (the rest stay).
        """
        super().__init__(net, task, num_outputs, **kwargs)  # checks the data's task first
        if not (hasattr(net, "token_states") and getattr(net, "tokens", None) is not None):
            raise ConfigError(
                f"model.net: MaskedLanguageModelTask needs a Transformer encoder over token ids "
                f"(lit_models.TransformerNet), got {type(net).__name__}"
            )
        if (
            not 0 < mask_prob < 1
            or mask_token_share < 0
            or random_token_share < 0
            or (mask_token_share + random_token_share > 1)
        ):
            raise ConfigError(
                f"model: mask_prob {mask_prob} must lie in (0, 1), mask_token_share {mask_token_share} and "
                f"random_token_share {random_token_share} be at least 0 and sum to at most 1"
            )
        net.head = MaskedLMHead(net.tokens.embedding)  # per token, in place of the pooled classifier head
        self.vocab_size = net.tokens.embedding.num_embeddings
        self.mask_id = mask_id
        self.register_buffer("special", torch.zeros(0, dtype=torch.long), persistent=False)
        if mask_id is not None:
            self._set_tokens(mask_id, special_ids or [])
        self.val_metrics = MaskedLMMetrics()
        self.test_metrics = MaskedLMMetrics()

    def _set_tokens(self, mask_id: int | None, special_ids: list[int]) -> None:
        if mask_id is None:
            raise ConfigError(
                "data.tokenizer: has no mask token, which a masked LM needs; use a BERT-style tokenizer, e.g. "
                "data/pretrained/all-MiniLM-L6-v2 ([MASK])"
            )
        if not 0 <= mask_id < self.vocab_size:
            raise ConfigError(
                f"model.mask_id: {mask_id} is outside the vocabulary of {self.vocab_size} tokens"
            )
        self.mask_id = mask_id
        self.special = torch.tensor(
            sorted({*special_ids, mask_id}), dtype=torch.long, device=self.special.device
        )

    def setup(self, stage: str) -> None:
        """The mask and special tokens from the data's tokenizer, unless given."""
        hp = self.hparams
        if hp.mask_id is None or hp.special_ids is None:
            data = getattr(self._trainer, "datamodule", None)
            if data is None or not hasattr(data, "mask_id"):
                raise ConfigError(
                    "model: MaskedLanguageModelTask needs a mask_id, or token-stream data to read it from"
                )
            mask_id = data.mask_id if hp.mask_id is None else hp.mask_id
            self._set_tokens(mask_id, data.special_ids if hp.special_ids is None else hp.special_ids)
        super().setup(stage)

    def check_data(self, data, stage: str) -> None:
        """A tokenizer without a mask token, found before the loggers start (the command line calls this)."""
        if self.hparams.mask_id is None and data is not None and getattr(data, "mask_id", 0) is None:
            self._set_tokens(None, [])  # raises, naming the tokenizer option
        super().check_data(data, stage)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) ids -> (B, T, vocab) logits for every position."""
        return self.net.head(self.net.token_states(x, lengths))

    def corrupt(
        self, x: torch.Tensor, lengths: torch.Tensor | None, fixed: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The input with targets masked (80/10/10) and the targets (-100 where none): drawn afresh, or fixed
        by ``window_uniform`` for evaluation."""
        hp = self.hparams
        if fixed:
            u_choose, u_kind, u_token = (window_uniform(x, salt) for salt in (1, 2, 3))
        else:
            u_choose, u_kind, u_token = torch.rand((3, *x.shape), device=x.device)
        real = torch.ones_like(x, dtype=torch.bool)
        if lengths is not None:
            real = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]
        chosen = real & (u_choose < hp.mask_prob) & ~torch.isin(x, self.special)
        inputs = torch.where(chosen & (u_kind < hp.mask_token_share), self.mask_id, x)
        random = (
            chosen & (u_kind >= hp.mask_token_share) & (u_kind < hp.mask_token_share + hp.random_token_share)
        )
        inputs = torch.where(
            random, (u_token * self.vocab_size).long().clamp(max=self.vocab_size - 1), inputs
        )
        return inputs, torch.where(chosen, x, -100)

    def _nats(
        self, batch: dict, fixed: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Summed cross-entropy over the batch's targets, their count, correct predictions, and the logits."""
        inputs, targets = self.corrupt(batch["x"], batch.get("lengths"), fixed)
        chosen = targets != -100
        states = self._compiled.get("token_states", self.net.token_states)(inputs, batch.get("lengths"))
        logits = self.net.head(states[chosen])
        picked = targets[chosen]
        nats = F.cross_entropy(logits.float(), picked, reduction="sum")
        return nats, chosen.sum(), (logits.argmax(-1) == picked).sum(), logits

    def compile_net(self) -> None:
        """``compile: true`` compiles the encoder's token states (the net's ``forward`` pools, which this task
        never calls); the head and loss run on the chosen positions alone, a shape that changes every batch."""
        self._compiled["token_states"] = torch.compile(self.net.token_states)

    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        nats, tokens, _, logits = self._nats(batch, fixed=False)
        return nats / tokens.clamp(min=1), logits

    def _evaluate(self, batch: dict, metrics: MaskedLMMetrics) -> None:
        nats, tokens, correct, _ = self._nats(batch, fixed=True)
        metrics.update(nats.detach(), tokens, correct)
