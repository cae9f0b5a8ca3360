"""Tiny models and synthetic data in exactly the catalog contract's shape."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from datasets import Dataset, DatasetDict
from transformers import GPT2Config, GPT2ForSequenceClassification

from llm_finetuning.datasets import TextClassifier
from tests.conftest import demo_tokenizer

LABEL_NAMES = ["negative", "positive"]
_POSITIVE = ["great", "wonderful", "moving", "brilliant", "funny", "loved"]
_NEGATIVE = ["awful", "boring", "dull", "terrible", "clumsy", "hated"]
_FILLER = ["the", "film", "plot", "actor", "scene", "story", "was", "and", "a", "it"]


def synthetic_reviews(n: int, seed: int, first_row_id: int = 0) -> pd.DataFrame:
    """Reviews of varied length whose sentiment words give the label away."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = i % 2
        cues = _POSITIVE if label else _NEGATIVE
        words = list(rng.choice(_FILLER, size=int(rng.integers(3, 40))))
        words += list(rng.choice(cues, size=2))
        rng.shuffle(words)
        rows.append(
            {"row_id": first_row_id + 3 * i, "text": " ".join(words), "label": label}
        )
    return pd.DataFrame(rows).astype({"row_id": "int64", "label": "int64"})


@pytest.fixture
def label_names() -> list[str]:
    return list(LABEL_NAMES)


@pytest.fixture
def train_reviews() -> pd.DataFrame:
    return synthetic_reviews(60, seed=1, first_row_id=1000)


@pytest.fixture
def test_reviews() -> pd.DataFrame:
    return synthetic_reviews(24, seed=2)


@pytest.fixture(scope="session")
def tokenizer():
    """The demo tokenizer shipped in the package, prepared like the pipelines do."""
    return demo_tokenizer(max_length=64)


def tiny_gpt2_classifier(tokenizer, label_names, seed: int = 0) -> TextClassifier:
    """A 1-layer, width-32 GPT-2 sequence classifier with random weights."""
    torch.manual_seed(seed)
    config = GPT2Config(
        n_layer=1,
        n_head=2,
        n_embd=32,
        n_positions=64,
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={name: i for i, name in enumerate(label_names)},
    )
    model = GPT2ForSequenceClassification(config).eval()
    return TextClassifier(model=model, tokenizer=tokenizer, metadata={"test": True})


@pytest.fixture
def classifier(tokenizer, label_names) -> TextClassifier:
    return tiny_gpt2_classifier(tokenizer, label_names)


def tokenize(reviews: pd.DataFrame, tokenizer) -> Dataset:
    """One split in the contract's shape: unpadded, with ``length``."""
    encoded = tokenizer(reviews["text"].tolist(), truncation=True)
    return Dataset.from_dict(
        {
            "row_id": reviews["row_id"].tolist(),
            "input_ids": encoded["input_ids"],
            "attention_mask": encoded["attention_mask"],
            "labels": reviews["label"].tolist(),
            "length": [len(ids) for ids in encoded["input_ids"]],
        }
    )


@pytest.fixture
def tokenized_reviews(train_reviews, test_reviews, tokenizer) -> DatasetDict:
    return DatasetDict(
        {
            "train": tokenize(train_reviews, tokenizer),
            "validation": tokenize(train_reviews.head(8), tokenizer),
            "test": tokenize(test_reviews, tokenizer),
        }
    )
