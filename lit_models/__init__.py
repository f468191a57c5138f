"""Architectures (plain ``nn.Module``s) and the task LightningModules that train them.

Every net: ``forward(x, lengths=None) -> (B, outputs)``, or per position ``(B, T, outputs)`` for language models. Every task: ``lit_models.task.Task`` (optimizer,
schedule, checks) plus its own loss and metrics, chosen in a config by ``class_path``.
"""

from lit_models.blocks import MultiheadSelfAttention
from lit_models.cnn import DilatedCNN
from lit_models.gpt import GPT
from lit_models.language_model import LanguageModelTask
from lit_models.masked_lm import MaskedLanguageModelTask
from lit_models.prediction import PredictionTask
from lit_models.pretrained import PretrainedEncoder
from lit_models.recurrent import RecurrentNet
from lit_models.seq2seq_task import Seq2SeqTask
from lit_models.task import Task
from lit_models.transformer import TransformerNet

__all__ = [
    "DilatedCNN",
    "GPT",
    "LanguageModelTask",
    "MaskedLanguageModelTask",
    "MultiheadSelfAttention",
    "PredictionTask",
    "PretrainedEncoder",
    "RecurrentNet",
    "Seq2SeqTask",
    "Task",
    "TransformerNet",
]
