"""Architectures (plain ``nn.Module``s) and the task LightningModules that train them."""

from lit_models.cnn import DilatedCNN
from lit_models.pretrained import PretrainedEncoder
from lit_models.recurrent import RecurrentNet
from lit_models.sequence_task import SequenceTask
from lit_models.transformer import MultiheadSelfAttention, TransformerNet

__all__ = [
    "DilatedCNN",
    "MultiheadSelfAttention",
    "PretrainedEncoder",
    "RecurrentNet",
    "SequenceTask",
    "TransformerNet",
]
