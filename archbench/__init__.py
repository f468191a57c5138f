"""archbench: honest architecture comparisons on the PyTorch Lightning Trainer.

The code lives in ``lit_models`` (nets and tasks), ``datamodules`` and ``experiments`` (the command line);
this package holds what all of them share: the version and the one error type for users' mistakes.
"""

__version__ = "0.2.0"
