"""Batched inference: same probabilities as one review at a time, for every head we build."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import GPT2Config, GPT2LMHeadModel

from llm_finetuning.datasets import TextClassifier
from llm_finetuning.pipelines.evaluation.inference import (
    best_device,
    check_classifier,
    predict_probabilities,
)
from llm_finetuning.pipelines.evaluation.nodes import predict_test_set

from .conftest import tiny_gpt2_classifier


def one_at_a_time(model, features) -> np.ndarray:
    """Reference: each review alone, no padding at all."""
    rows = []
    with torch.inference_mode():
        for ids in features["input_ids"]:
            logits = model(input_ids=torch.tensor([ids])).logits
            rows.append(torch.softmax(logits, dim=-1)[0].numpy())
    return np.stack(rows)


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_batched_probabilities_equal_unpadded_ones(
    classifier, tokenized_reviews, padding_side
):
    """Also with a left-padding tokenizer: GPT-2's absolute positions would shift
    under left padding (seen: up to 0.07 off), so inference always pads right."""
    test = tokenized_reviews["test"]
    tokenizer = classifier.tokenizer
    tokenizer.padding_side = padding_side
    try:
        batched = predict_probabilities(classifier.model, tokenizer, test, batch_size=5)
        assert tokenizer.padding_side == padding_side  # restored
    finally:
        tokenizer.padding_side = "right"
    assert batched.shape == (len(test), 2)
    assert batched.sum(axis=1) == pytest.approx(np.ones(len(test)), abs=1e-5)
    # Reviews differ in length, so batches really were padded.
    assert len(set(test["length"])) > 5
    np.testing.assert_allclose(
        batched, one_at_a_time(classifier.model, test), atol=1e-5
    )


def test_peft_lora_classifier_is_scored_through_its_head(classifier, tokenized_reviews):
    lora = get_peft_model(
        classifier.model,
        LoraConfig(
            task_type="SEQ_CLS",
            r=2,
            lora_alpha=4,
            target_modules=["c_attn"],
            fan_in_fan_out=True,  # GPT-2's Conv1D (else peft warns and sets it)
        ),
    )
    test = tokenized_reviews["test"]
    base = predict_probabilities(
        classifier.model, classifier.tokenizer, test, batch_size=8
    )
    torch.manual_seed(0)
    with torch.no_grad():  # LoRA's B starts at zero: give the adapter an effect
        for name, parameter in lora.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)
    lora.eval()  # get_peft_model leaves dropout on; the reference must run without it
    check_classifier(lora, classifier.tokenizer, ["negative", "positive"])
    probabilities = predict_probabilities(
        lora, classifier.tokenizer, test, batch_size=8
    )
    np.testing.assert_allclose(probabilities, one_at_a_time(lora, test), atol=1e-5)
    assert np.abs(probabilities - base).max() > 1e-3


def test_language_model_head_is_rejected(tokenizer, tokenized_reviews):
    config = GPT2Config(
        n_layer=1, n_head=2, n_embd=32, n_positions=64, vocab_size=len(tokenizer)
    )
    lm = GPT2LMHeadModel(config)
    # A causal LM's config still says num_labels=2: only the logits' shape tells.
    with pytest.raises(ValueError, match="language-model head scores the vocabulary"):
        predict_probabilities(lm, tokenizer, tokenized_reviews["test"], batch_size=4)


def test_mismatched_heads_and_label_maps_are_rejected(tokenizer):
    three = tiny_gpt2_classifier(tokenizer, ["a", "b", "c"])
    with pytest.raises(ValueError, match="3 output.*2 classes"):
        check_classifier(three.model, tokenizer, ["negative", "positive"])
    swapped = tiny_gpt2_classifier(tokenizer, ["positive", "negative"])
    with pytest.raises(ValueError, match="id2label.*differs"):
        check_classifier(swapped.model, tokenizer, ["negative", "positive"])
    regression = tiny_gpt2_classifier(tokenizer, ["negative", "positive"])
    regression.model.config.problem_type = "regression"
    with pytest.raises(ValueError, match="problem_type"):
        check_classifier(regression.model, tokenizer, ["negative", "positive"])
    other_pad = tiny_gpt2_classifier(tokenizer, ["negative", "positive"])
    other_pad.model.config.pad_token_id = tokenizer.pad_token_id + 1
    with pytest.raises(ValueError, match="pad_token_id"):
        check_classifier(other_pad.model, tokenizer, ["negative", "positive"])


def test_generic_label_names_are_accepted(tokenizer):
    generic = tiny_gpt2_classifier(tokenizer, ["LABEL_0", "LABEL_1"])
    check_classifier(generic.model, tokenizer, ["negative", "positive"])


def test_best_device():
    assert best_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else None
    if expected:
        assert best_device().type == expected
    elif not torch.backends.mps.is_available():
        assert best_device().type == "cpu"


def test_predict_test_set_returns_the_contract_frame(
    classifier, tokenized_reviews, label_names, test_reviews
):
    predictions = predict_test_set(
        classifier, tokenized_reviews, label_names, {"batch_size": 4, "device": "cpu"}
    )
    assert list(predictions.columns) == [
        "row_id",
        "label",
        "predicted_label",
        "prob_negative",
        "prob_positive",
    ]
    expected = test_reviews.sort_values("row_id")
    assert predictions["row_id"].tolist() == expected["row_id"].tolist()
    assert predictions["label"].tolist() == expected["label"].tolist()
    probabilities = predictions[["prob_negative", "prob_positive"]].to_numpy()
    assert (
        predictions["predicted_label"].tolist() == probabilities.argmax(axis=1).tolist()
    )
    # The model is left where and as it was.
    assert not classifier.model.training


def test_predict_test_set_rejects_missing_split_and_columns(
    classifier, tokenized_reviews, label_names
):
    without_test = tokenized_reviews.copy()
    del without_test["test"]
    with pytest.raises(ValueError, match="no 'test' split"):
        predict_test_set(classifier, without_test, label_names, {})
    broken = tokenized_reviews.copy()
    broken["test"] = broken["test"].remove_columns("labels")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['labels'\]"):
        predict_test_set(classifier, broken, label_names, {})
    with pytest.raises(
        ValueError, match=r"evaluation\.inference\.batchsize: unknown key"
    ):
        predict_test_set(classifier, tokenized_reviews, label_names, {"batchsize": 4})


def test_textclassifier_fixture_shape(classifier):
    assert isinstance(classifier, TextClassifier)
    assert classifier.label_names == ["negative", "positive"]
