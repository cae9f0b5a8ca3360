"""Issue 14's "done when": one long review, ``model.truncation: head_tail``, cut and
scored alike by (a) data_processing's tokenization, (b) evaluation's inference on that
tokenized split, (c) the served MLflow pyfunc (loaded in-process) and (d) the scoring
engine: the same kept ids, the same probabilities to 1e-5."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from llm_finetuning.datasets import (
    AtomicParquetDataset,
    ChunkStoreDataset,
    TextClassifier,
    TextSourceDataset,
)
from llm_finetuning.models import ModelParams, build_classifier, load_tokenizer
from llm_finetuning.pipelines.data_processing.nodes import tokenize_splits
from llm_finetuning.pipelines.deployment.mlflow_serving import (
    MlflowTargetParams,
    log_and_register,
)
from llm_finetuning.pipelines.evaluation.nodes import predict_test_set
from llm_finetuning.pipelines.evaluation.params import InferenceParams
from llm_finetuning.pipelines.scoring.nodes import score_texts
from llm_finetuning.pipelines.scoring.params import ScoringParams
from llm_finetuning.resolvers import package_path
from llm_finetuning.truncation import encode_texts
from tests.conftest import IMDB_DIR

LABEL_NAMES = ["neg", "pos"]
MAX_LENGTH, HEAD_TOKENS = 64, 16
PROBABILITIES = [f"prob_{name}" for name in LABEL_NAMES]
SYNTHETIC = (
    "The opening act is slow and the dialogue clumsy. " * 20
    + "Yet the last hour is a triumph: moving, funny and beautifully shot. " * 20
)


def long_review() -> str:
    """The longest of the first 500 real IMDB test reviews, or a synthetic one."""
    path = IMDB_DIR / "test.parquet"
    if not path.is_file():
        return SYNTHETIC
    texts = pq.read_table(path, columns=["text"]).column("text")[:500].to_pylist()
    return max(texts, key=len)


@pytest.fixture(scope="module")
def model_params() -> ModelParams:
    return ModelParams(
        source="config",
        name_or_path=None,
        tokenizer_name_or_path=package_path("demo_data/tokenizer"),
        architecture={"model_type": "gpt2", "n_layer": 1, "n_head": 2, "n_embd": 32},
        max_length=MAX_LENGTH,
        truncation="head_tail",
        head_tokens=HEAD_TOKENS,
    )


@pytest.fixture(scope="module")
def classifier(model_params) -> TextClassifier:
    tokenizer = load_tokenizer(model_params)
    torch.manual_seed(0)
    model = build_classifier(model_params, tokenizer, LABEL_NAMES).eval()
    with torch.no_grad():  # random weights give ~0.5 everywhere: spread the head
        model.score.weight.mul_(200)
    return TextClassifier(
        model=model, tokenizer=tokenizer, metadata={"label_names": LABEL_NAMES}
    )


def _served(
    classifier: TextClassifier, params: ModelParams, texts: list[str], tmp_path: Path
) -> tuple[Any, pd.DataFrame]:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    record = log_and_register(
        classifier,
        MlflowTargetParams(registered_model_name="agreement", batch_size=2),
        ["A fine film."],
        max_length=params.max_length,
        truncation=params.truncation,
        head_tokens=params.head_tokens,
    )
    loaded = mlflow.pyfunc.load_model(record["model_uri"])
    return loaded.unwrap_python_model(), loaded.predict(pd.DataFrame({"text": texts}))


def _scored(
    classifier: TextClassifier, params: ModelParams, texts: list[str], tmp_path: Path
) -> tuple[pd.DataFrame, dict[str, Any]]:
    path = tmp_path / "to_score.parquet"
    pd.DataFrame({"text": texts}).to_parquet(path)
    chunks, report = score_texts(
        TextSourceDataset(path=str(path)).load(),
        classifier,
        ChunkStoreDataset(path=str(tmp_path / "partial")).load(),
        ScoringParams(progress_bar=False, batch_size=2),
        params,
    )
    output = AtomicParquetDataset(path=str(tmp_path / "scored.parquet"))
    output.save(chunks)
    return output.load(), report


def test_tokenization_evaluation_serving_and_scoring_agree(
    classifier, model_params, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    review = long_review()
    texts = [review, "A short and lovely film.", SYNTHETIC]
    reviews = pd.DataFrame({"row_id": [0, 1, 2], "text": texts, "label": [1, 1, 0]})

    # (a) data_processing's tokenization
    tokenized, summary = tokenize_splits(
        reviews, reviews, reviews, model_params.model_dump(), {"batch_size": 2}
    )
    kept = tokenized["test"]["input_ids"]
    content = classifier.tokenizer(review, add_special_tokens=False)["input_ids"]
    assert len(content) > MAX_LENGTH  # the review is long enough to be cut
    tail = MAX_LENGTH - HEAD_TOKENS
    assert kept[0] == content[:HEAD_TOKENS] + content[-tail:]
    assert summary["test"]["truncated"] == 2

    # (b) evaluation's inference on the tokenized test split
    evaluated = predict_test_set(classifier, tokenized, LABEL_NAMES, InferenceParams())
    evaluated = evaluated.sort_values("row_id")[PROBABILITIES].to_numpy()

    # (c) the served MLflow pyfunc, in-process
    python_model, served = _served(classifier, model_params, texts, tmp_path)
    served_ids = python_model.truncation.encode(python_model.tokenizer, texts)
    assert served_ids.input_ids == kept

    # (d) the scoring engine
    scored, report = _scored(classifier, model_params, texts, tmp_path)
    assert report["truncated"] == 2
    assert report["truncation"] == {
        "max_length": MAX_LENGTH,
        "truncation": "head_tail",
        "head_tokens": HEAD_TOKENS,
    }

    np.testing.assert_allclose(served[PROBABILITIES].to_numpy(), evaluated, atol=1e-5)
    np.testing.assert_allclose(scored[PROBABILITIES].to_numpy(), evaluated, atol=1e-5)
    assert (
        served["predicted_label"].tolist()
        == scored["predicted_label"].tolist()
        == evaluated.argmax(1).tolist()
    )

    # The check has teeth: cutting the head instead changes the long reviews' answers.
    head = encode_texts(classifier.tokenizer, texts, MAX_LENGTH, "head")
    with torch.inference_mode():
        head_probabilities = [
            torch.softmax(classifier.model(torch.tensor([ids])).logits, -1)[0].numpy()
            for ids in head.input_ids
        ]
    assert np.abs(np.stack(head_probabilities)[[0, 2]] - evaluated[[0, 2]]).max() > 1e-3
