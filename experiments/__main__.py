"""``python -m experiments COMMAND``: fit, validate, test, predict (LightningCLI), compare, data."""

from __future__ import annotations

import os
import pickle
import sys

USAGE = """usage: python -m experiments COMMAND [options]

commands:
  fit | validate | test | predict   LightningCLI, e.g. fit --config experiments/dna/lstm.yaml
  compare                           every model x seed of a comparison file, one table:
                                    compare --config experiments/dna/compare.yaml [--seeds N] [--out DIR]
  attention                         PNG of every layer's and head's attention over a text:
                                    attention --config DATA.yaml --config MODEL.yaml --ckpt C --text "..."
  export                            a trained ResNet/ViT as timm-named safetensors: export --config ... --ckpt C --out F
  lr_find                           learning-rate range test (Lightning's Tuner): lr_find --config ...
  data                              fetch datasets and weights: data sortseq | rotten_tomatoes | minilm |
                                    fashion_mnist | efficientnet_lite0,
                                    or write the simulated DNA: data simulate --out DIR

'python -m experiments COMMAND --help' for a command's options.
"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    os.environ.setdefault("WANDB_SILENT", "true")

    # Imported late so that --help stays fast.
    from datamodules.errors import DataError
    from experiments.errors import ConfigError
    from lit_models.checks import UnusedParametersError
    from lit_models.pretrained import PretrainedError
    from lit_models.sequence_task import NonFiniteLossError

    command, rest = argv[0], argv[1:]
    try:
        if command == "compare":
            from experiments.compare import main as compare

            compare(rest)
        elif command == "attention":
            from experiments.attention import main as attention

            attention(rest)
        elif command == "export":
            from experiments.export import main as export

            export(rest)
        elif command == "lr_find":
            from experiments.lr_find import main as lr_find

            lr_find(rest)
        elif command == "data":
            from experiments.data import main as data

            data(rest)
        else:
            from experiments.cli import ExperimentCLI

            # args=None lets LightningCLI read sys.argv itself (it warns when both are given).
            ExperimentCLI(args=None if argv == sys.argv[1:] else argv)
    except (DataError, ConfigError, UnusedParametersError, PretrainedError, NonFiniteLossError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except pickle.UnpicklingError as err:  # a checkpoint holding more than tensors and plain values
        first = str(err).splitlines()[0]
        print(
            f"error: checkpoint refused: it does not load with weights_only=True ({first})", file=sys.stderr
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
