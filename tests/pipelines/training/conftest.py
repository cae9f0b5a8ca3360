"""Fixtures for the training tests: synthetic tokenized reviews and tiny models.

The synthetic splits have exactly the ``tokenized_reviews`` contract (docs/catalog.md):
``row_id, input_ids, attention_mask, labels, length``, unpadded. The label is written
as each review's last token, which the GPT-2 head pools, so a one-layer model learns
it in a few steps: a falling loss means training works, not that it got lucky.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from datasets import Dataset, DatasetDict

DEMO_TOKENIZER = (
    Path(__file__).resolve().parents[3]
    / "src"
    / "llm_finetuning"
    / "demo_data"
    / "tokenizer"
)
LABEL_NAMES = ["negative", "positive"]
# Tokens 10 and 11 of the demo vocabulary mark the two classes.
LABEL_TOKENS = (10, 11)


def synthetic_split(rows: int, seed: int, *, vocab_size: int = 2_000) -> Dataset:
    """Reviews of 4-40 random tokens whose last token gives the label away."""
    rng = np.random.default_rng(seed)
    records = []
    for row_id in range(rows):
        label = int(rng.integers(0, 2))
        length = int(rng.integers(4, 41))
        input_ids = rng.integers(20, vocab_size, size=length).tolist()
        input_ids[-1] = LABEL_TOKENS[label]
        records.append(
            {
                "row_id": row_id,
                "input_ids": input_ids,
                "attention_mask": [1] * length,
                "labels": label,
                "length": length,
            }
        )
    return Dataset.from_list(records)


@pytest.fixture(scope="session")
def tokenized_reviews() -> DatasetDict:
    """train 96 / validation 32 / test 32 synthetic reviews."""
    return DatasetDict(
        train=synthetic_split(96, seed=0),
        validation=synthetic_split(32, seed=1),
        test=synthetic_split(32, seed=2),
    )


@pytest.fixture
def model_params() -> dict[str, Any]:
    """A one-layer GPT-2 architecture with the bundled demo tokenizer."""
    return {
        "source": "config",
        "name_or_path": None,
        "tokenizer_name_or_path": str(DEMO_TOKENIZER),
        "architecture": {
            "model_type": "gpt2",
            "n_layer": 1,
            "n_head": 2,
            "n_embd": 32,
            "n_positions": 64,
        },
        "max_length": 64,
    }


@pytest.fixture
def runtime_params() -> dict[str, Any]:
    return {"seed": 0, "num_threads": 1}


_TRAINING = {
    "epochs": 1,
    "max_steps": 8,
    "batch_size": 8,
    "learning_rate": 2e-3,
    "warmup": 0,
    "precision": "fp32",
    "logging_steps": 1,
    "progress_bar": False,
    "peak_flops": 150e9,
    "evaluation": {
        "strategy": "steps",
        "steps": 4,
        "batch_size": 32,
        "metric": "loss",
        "early_stopping_patience": None,
    },
    "checkpoints": {"every_n_steps": 4, "keep_last": 1},
}


@pytest.fixture
def training_params(tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """The test ``training`` block, with overrides merged into its nested blocks."""

    def make(**overrides: Any) -> dict[str, Any]:
        params = copy.deepcopy(_TRAINING)
        params["checkpoints"]["dir"] = str(tmp_path / "checkpoints")
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(params.get(key), dict):
                params[key].update(value)
            else:
                params[key] = value
        return params

    return make
