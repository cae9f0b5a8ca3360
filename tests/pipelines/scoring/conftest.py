"""Fixtures of the scoring tests: a tiny saved classifier and small text files."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from transformers import GPT2Config, GPT2ForSequenceClassification

from llm_finetuning.datasets import TextClassifier, TextClassifierDataset
from llm_finetuning.models import ModelParams
from tests.conftest import demo_tokenizer

LABEL_NAMES = ["negative", "positive"]
MAX_LENGTH = 64


def model_params(max_length: int = MAX_LENGTH, **truncation: object) -> ModelParams:
    """The ``model`` block the scoring node takes: how texts are cut."""
    return ModelParams(max_length=max_length, **truncation)


@pytest.fixture(scope="session")
def tokenizer():
    return demo_tokenizer(max_length=MAX_LENGTH)


def tiny_classifier(tokenizer, seed: int = 0) -> TextClassifier:
    """A 1-layer, width-32 GPT-2 classifier with random weights (positions 128)."""
    torch.manual_seed(seed)
    config = GPT2Config(
        n_layer=1,
        n_head=2,
        n_embd=32,
        n_positions=128,
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        num_labels=len(LABEL_NAMES),
        id2label=dict(enumerate(LABEL_NAMES)),
        label2id={name: i for i, name in enumerate(LABEL_NAMES)},
    )
    model = GPT2ForSequenceClassification(config).eval()
    return TextClassifier(
        model=model, tokenizer=tokenizer, metadata={"label_names": LABEL_NAMES}
    )


@pytest.fixture(scope="session")
def model_folder(tmp_path_factory, tokenizer) -> Path:
    """The tiny classifier saved as a model folder, like training saves it."""
    folder = tmp_path_factory.mktemp("model") / "fine_tuned_model"
    TextClassifierDataset(path=str(folder)).save(tiny_classifier(tokenizer))
    return folder


@pytest.fixture(scope="session")
def classifier(model_folder) -> TextClassifier:
    return TextClassifierDataset(path=str(model_folder)).load()


def write_parquet(path: Path, columns: dict[str, list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path, row_group_size=7)
    return path
