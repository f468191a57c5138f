"""What a language model writes as it trains: continuations of fixed prompts at every validation, logged to W&B
as a Table (one row per prompt and step) and appended to ``samples.jsonl`` in the run's log folder."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger

from datamodules.lm_tokenize import text_pieces
from lit_models.generation import generate


class TextSamples(Callback):
    def __init__(self, prompts: list[str], max_new_tokens: int = 80, temperature: float = 0.8, seed: int = 0):
        """
        Args:
            prompts: Texts to continue (each must encode with the data's tokenizer).
            max_new_tokens: Tokens to add to each.
            temperature: Sampling temperature (0: greedy).
            seed: Seed of the sampling, the same at every validation, so that the rows differ by the model only.
        """
        if not prompts:
            raise ValueError("TextSamples needs at least one prompt")
        self.prompts, self.max_new_tokens, self.temperature, self.seed = (
            list(prompts),
            max_new_tokens,
            temperature,
            seed,
        )
        self.rows: list[list] = []

    def setup(self, trainer, pl_module, stage: str) -> None:
        """Prompts the data's tokenizer cannot encode (a character outside a character vocabulary) are left
        out here (fit, validate, test), with a warning naming them, rather than stopping the run at its first
        validation."""
        from archbench.errors import DataError

        usable = []
        for prompt in self.prompts:
            try:
                trainer.datamodule.tokenizer.encode(prompt, "TextSamples prompt")
                usable.append(prompt)
            except DataError as err:
                warnings.warn(f"{err}: no samples for this prompt (give your own after the config: "
                              "--trainer.callbacks.prompts='[Once upon a time, The]')", stacklevel=1)  # fmt: skip
        self.prompts = usable

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not self.prompts:
            return
        log_dir = trainer.log_dir if trainer.loggers else None  # a broadcast under DDP: every rank asks
        if not trainer.is_global_zero:
            return
        tokenizer, context = trainer.datamodule.tokenizer, trainer.datamodule.seq_len
        net, device = pl_module.net, pl_module.device
        was_training = net.training
        net.eval()
        generator = torch.Generator(device=device).manual_seed(self.seed)
        new_rows = []
        try:
            for prompt in self.prompts:
                ids = torch.as_tensor(tokenizer.encode(prompt, "TextSamples prompt"), device=device)[None]
                tokens = generate(
                    net, ids, self.max_new_tokens, context, self.temperature, generator=generator
                )
                ids = torch.cat(list(tokens), dim=1)[0].tolist()
                text = "".join(text_pieces(ids, tokenizer, stop=None))  # an end of text as <|endoftext|>
                new_rows.append([trainer.global_step, prompt, text])
        finally:
            net.train(was_training)
        self.rows += new_rows
        if log_dir:
            with open(Path(log_dir) / "samples.jsonl", "a") as f:
                for step, prompt, text in new_rows:
                    f.write(json.dumps({"step": step, "prompt": prompt, "text": text}) + "\n")
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):  # the whole table so far: W&B shows the latest version
                logger.log_text("val/samples", columns=["step", "prompt", "continuation"], data=self.rows)
