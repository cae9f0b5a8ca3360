"""The ONNX Runtime path (``scoring.runtime``): export, int8 agreement, cache, node.

Tiny GPT-2 (``Conv1D`` layers, last-non-pad-token pooling) and BERT classifiers built
from config, on the 240 bundled demo reviews (varied lengths, so batches are padded).

Thresholds: ONNX fp32 must equal torch to float rounding (1e-4), since it is the same
graph. int8 weights move the probabilities a little, so a label may flip only where
fp32 is close to 0.5: at least 95% of the labels must agree (99.6% seen for both
models), and no probability may move by more than 0.1 (up to 0.053 seen: width-32
layers quantize coarsely). The heads are rescaled over the texts so these random models
spread their probabilities instead of putting every row next to 0.5, where any rounding
flips a label and agreement would measure nothing; the real figure on a fine-tuned
model and IMDB is in docs/scoring.md (measured by benchmarks/scoring_throughput.py).
"""

from __future__ import annotations

import json
from importlib.resources import files

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import BertConfig, BertForSequenceClassification

from llm_finetuning.datasets import (
    AtomicParquetDataset,
    ChunkStoreDataset,
    TextClassifier,
    TextSourceDataset,
)
from llm_finetuning.pipelines.evaluation.inference import predict_probabilities
from llm_finetuning.pipelines.scoring import onnx_runtime
from llm_finetuning.pipelines.scoring.nodes import score_texts
from llm_finetuning.pipelines.scoring.params import ScoringParams
from tests.pipelines.scoring.conftest import (
    LABEL_NAMES,
    MAX_LENGTH,
    model_params,
    tiny_classifier,
    write_parquet,
)

pytestmark = pytest.mark.skipif(
    not onnx_runtime.onnxruntime_available(),
    reason="onnxruntime, onnx and onnxscript are not installed "
    "(pip install -e '.[onnx]'): the ONNX runtime option is optional",
)

AGREEMENT, PROBABILITY_MOVE, FP32_TOLERANCE = 0.95, 0.1, 1e-4


def demo_texts() -> list[str]:
    lines = files("llm_finetuning").joinpath("demo_data/train.jsonl").read_text()
    return [json.loads(line)["review"] for line in lines.splitlines() if line]


def tiny_bert(tokenizer, seed: int = 0) -> TextClassifier:
    torch.manual_seed(seed)
    config = BertConfig(
        num_hidden_layers=1,
        num_attention_heads=2,
        hidden_size=32,
        intermediate_size=64,
        max_position_embeddings=128,
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        num_labels=len(LABEL_NAMES),
        id2label=dict(enumerate(LABEL_NAMES)),
        label2id={name: i for i, name in enumerate(LABEL_NAMES)},
    )
    model = BertForSequenceClassification(config).eval()
    return TextClassifier(model=model, tokenizer=tokenizer)


def spread_head(classifier: TextClassifier, features: dict) -> TextClassifier:
    """Rescale (and centre, where it has a bias) the random head over ``features``.

    A random model gives every text nearly the same logits; afterwards the logit gap
    has a standard deviation of 3 over these texts, like a trained classifier's.
    """
    head = getattr(classifier.model, "score", None) or classifier.model.classifier
    logits = predict_probabilities_logits(classifier, features)
    scale = 3.0 / float(np.std(logits[:, 1] - logits[:, 0]))
    with torch.no_grad():
        head.weight.mul_(scale)
        if head.bias is not None:
            head.bias.copy_(scale * (head.bias - torch.from_numpy(logits.mean(axis=0))))
    return classifier


def predict_probabilities_logits(classifier: TextClassifier, features: dict):
    """Torch logits of every row (one row at a time: no padding involved)."""
    with torch.inference_mode():
        return np.concatenate(
            [
                classifier.model(input_ids=torch.tensor([ids])).logits.numpy()
                for ids in features["input_ids"]
            ]
        )


BUILDERS = {"gpt2": tiny_classifier, "bert": tiny_bert}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx_cache")


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def case(request, tokenizer, cache_dir):
    """A tiny classifier, its torch probabilities on the demo reviews, the features."""
    encoded = tokenizer(demo_texts(), truncation=True, max_length=MAX_LENGTH)
    features = {
        "input_ids": encoded["input_ids"],
        "attention_mask": encoded["attention_mask"],
    }
    classifier = spread_head(BUILDERS[request.param](tokenizer), features)
    torch_probabilities = predict_probabilities(
        classifier.model, tokenizer, Dataset.from_dict(features), batch_size=16
    )
    return request.param, classifier, features, torch_probabilities


def test_onnx_fp32_equals_torch(case, cache_dir):
    _, classifier, features, expected = case
    runtime = onnx_runtime.OnnxClassifier.from_classifier(
        classifier, cache_dir, quantized=False, num_threads=1
    )
    got = runtime.predict_probabilities(features, batch_size=16)

    assert len({len(ids) for ids in features["input_ids"]}) > 10  # padded batches
    np.testing.assert_allclose(got, expected, atol=FP32_TOLERANCE)


def test_int8_gives_the_fp32_labels_on_most_rows(case, cache_dir):
    name, classifier, features, expected = case
    runtime = onnx_runtime.OnnxClassifier.from_classifier(
        classifier, cache_dir, quantized=True, num_threads=1
    )
    got = runtime.predict_probabilities(features, batch_size=16)

    confident = np.abs(expected[:, 1] - 0.5) > 0.1
    assert confident.mean() > 0.5, f"{name}: the scaled head should spread the rows"
    assert 0.2 < expected.argmax(axis=1).mean() < 0.8  # both classes predicted
    agreement = (got.argmax(axis=1) == expected.argmax(axis=1)).mean()
    assert agreement >= AGREEMENT, f"{name}: int8 labels agree on {agreement:.1%}"
    assert np.abs(got - expected).max() < PROBABILITY_MOVE
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)


def test_the_export_is_cached_by_fingerprint(case, cache_dir, tokenizer, monkeypatch):
    name, classifier, features, _ = case
    first = onnx_runtime.OnnxClassifier.from_classifier(classifier, cache_dir)

    def no_export(*args, **kwargs):
        raise AssertionError("the cached export should have been reused")

    monkeypatch.setattr(onnx_runtime, "export_onnx", no_export)
    again = onnx_runtime.OnnxClassifier.from_classifier(classifier, cache_dir)
    assert again.path == first.path
    assert first.path.parent.name == onnx_runtime.model_fingerprint(classifier.model)
    facts = json.loads((first.path.parent / onnx_runtime.FACTS_FILE).read_text())
    assert facts["model_type"] == name
    assert not [p for p in cache_dir.iterdir() if p.name.startswith(".")]  # no scratch

    other = BUILDERS[name](tokenizer, seed=1)  # other weights: another fingerprint
    assert onnx_runtime.model_fingerprint(other.model) != first.path.parent.name


def test_predict_texts_truncates_like_training(case, cache_dir, tokenizer):
    _, classifier, _, _ = case
    runtime = onnx_runtime.OnnxClassifier.from_classifier(
        classifier, cache_dir, quantized=False
    )
    long_text = "word " * 500
    got = runtime.predict_texts([long_text, "a lovely film"], max_length=MAX_LENGTH)
    encoded = tokenizer([long_text], truncation=True, max_length=MAX_LENGTH)
    alone = runtime.predict_probabilities(dict(encoded))

    assert got.shape == (2, 2)
    np.testing.assert_allclose(got[0], alone[0], atol=1e-6)


def test_predict_texts_cuts_by_the_truncation_strategy(case, cache_dir, tokenizer):
    from llm_finetuning.truncation import encode_texts

    _, classifier, _, _ = case
    runtime = onnx_runtime.OnnxClassifier.from_classifier(
        classifier, cache_dir, quantized=False
    )
    text = "a dull start " * 40 + "but a wonderful, moving ending " * 40
    got = runtime.predict_texts(
        [text], max_length=MAX_LENGTH, truncation="head_tail", head_tokens=8
    )
    cut = encode_texts(tokenizer, [text], MAX_LENGTH, "head_tail", 8)
    np.testing.assert_allclose(
        got, runtime.predict_probabilities({"input_ids": cut.input_ids}), atol=1e-6
    )
    head = runtime.predict_texts([text], max_length=MAX_LENGTH)
    assert np.abs(got - head).max() > 1e-6  # the ending changed the answer


def test_scoring_node_runs_the_int8_runtime(tmp_path, classifier, cache_dir):
    texts = demo_texts()[:40] + [None, ""]
    path = write_parquet(tmp_path / "in.parquet", {"text": texts})

    def score(runtime: str):
        params = ScoringParams(
            progress_bar=False,
            batch_size=8,
            chunk_size=16,
            num_threads=1,
            runtime=runtime,
            onnx_cache_dir=str(cache_dir),
        )
        source = TextSourceDataset(path=str(path)).load()
        store = ChunkStoreDataset(path=str(tmp_path / f"partial-{runtime}")).load()
        chunks, report = score_texts(source, classifier, store, params, model_params())
        output = AtomicParquetDataset(path=str(tmp_path / f"{runtime}.parquet"))
        output.save(chunks)
        return output.load(), report

    torch_scored, _ = score("torch")
    int8_scored, report = score("onnx_int8")

    assert report["runtime"] == "onnx_int8" and report["invalid"] == {
        "null": 1,
        "empty": 1,
    }
    assert int8_scored["invalid_reason"].tolist()[-2:] == ["null", "empty"]
    probabilities = ["prob_negative", "prob_positive"]
    np.testing.assert_allclose(
        int8_scored[probabilities].to_numpy(float),
        torch_scored[probabilities].to_numpy(float),
        atol=PROBABILITY_MOVE,
    )


def test_the_onnx_runtime_is_refused_on_spark(tmp_path, classifier):
    params = ScoringParams(engine="spark", runtime="onnx_int8", progress_bar=False)
    with pytest.raises(ValueError, match="option of the local engine"):
        score_texts(object(), classifier, None, params, model_params())


def test_an_unknown_runtime_is_refused():
    with pytest.raises(ValueError, match="runtime"):
        ScoringParams(runtime="tensorrt")
