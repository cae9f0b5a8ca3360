"""Target A without a server: the pyfunc package (full and LoRA models), its inputs, the
nodes that check served predictions, and the scoring server's answers in-process."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import GPT2Config, GPT2ForSequenceClassification

from llm_finetuning.datasets import TextClassifier
from llm_finetuning.pipelines.deployment import mlflow_serving, serving_model
from llm_finetuning.pipelines.deployment.mlflow_serving import (
    MlflowTargetParams,
    check_malformed_requests,
    latency_summary,
    log_and_register,
)
from llm_finetuning.pipelines.deployment.nodes import (
    compare_served_with_offline,
    sample_reviews,
)
from llm_finetuning.pipelines.deployment.serving_model import (
    InvalidReviews,
    RequestTooLarge,
    check_request_size,
    texts_from_model_input,
)
from tests.conftest import demo_tokenizer

LABEL_NAMES = ["negative", "positive"]
TEXTS = [
    "A wonderful, moving film with a brilliant cast.",
    "Dull.",
    "The plot was boring and the acting awful, " * 30,  # longer than max_length
    "Café scenes, naïve charm: I loved it.",
]


@pytest.fixture(scope="module")
def classifier() -> TextClassifier:
    tokenizer = demo_tokenizer(max_length=32)
    torch.manual_seed(0)
    config = GPT2Config(
        n_layer=1,
        n_head=2,
        n_embd=32,
        n_positions=64,
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        id2label=dict(enumerate(LABEL_NAMES)),
        label2id={name: i for i, name in enumerate(LABEL_NAMES)},
    )
    model = GPT2ForSequenceClassification(config).eval()
    return TextClassifier(
        model=model, tokenizer=tokenizer, metadata={"label_names": LABEL_NAMES}
    )


def direct_probabilities(classifier: TextClassifier, texts: list[str]) -> np.ndarray:
    """One text at a time, no padding: the reference the batched pyfunc must match."""
    rows = []
    with torch.inference_mode():
        for text in texts:
            batch = classifier.tokenizer(text, truncation=True, return_tensors="pt")
            rows.append(torch.softmax(classifier.model(**batch).logits, -1)[0].numpy())
    return np.stack(rows)


@pytest.fixture
def tracking(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    yield mlflow
    while mlflow.active_run() is not None:
        mlflow.end_run()


def register(classifier, tracking, name="clf"):
    settings = MlflowTargetParams(registered_model_name=name, batch_size=3)
    return log_and_register(
        classifier, settings, ["A fine film.", "A bad film."], max_length=32
    )


def test_registered_pyfunc_predicts_what_the_model_predicts(classifier, tracking):
    record = register(classifier, tracking)
    assert record["model_uri"] == "models:/clf/1" and record["max_length"] == 32
    requirements = record["pip_requirements"]
    assert {r.split("==")[0] for r in requirements} >= {
        "mlflow",
        "torch",
        "transformers",
    }
    assert not any("torchvision" in r or "+" in r for r in requirements)
    model = tracking.pyfunc.load_model(record["model_uri"])
    served = model.predict(pd.DataFrame({"text": TEXTS}))
    expected = direct_probabilities(classifier, TEXTS)
    np.testing.assert_allclose(
        served[["prob_negative", "prob_positive"]].to_numpy(), expected, atol=1e-5
    )
    assert served["predicted_label"].tolist() == expected.argmax(1).tolist()
    assert served["label_name"].tolist() == [LABEL_NAMES[i] for i in expected.argmax(1)]
    assert (
        tracking.MlflowClient().get_model_version("clf", "1").run_id == record["run_id"]
    )


def test_the_int8_runtime_is_logged_and_served_through_onnx_runtime(
    classifier, tracking
):
    """``runtime: onnx_int8``: the served model scores with the int8 ONNX export.

    The int8 weights move probabilities a little (docs/scoring.md); the served rows
    must agree with the fp32 model within that, and the model must not run torch.
    """
    pytest.importorskip(
        "onnxruntime", reason="needs onnxruntime: pip install -e '.[onnx]'"
    )
    settings = MlflowTargetParams(
        registered_model_name="clf_int8", batch_size=3, runtime="onnx_int8"
    )
    record = log_and_register(classifier, settings, ["A fine film."], max_length=32)
    assert "onnxruntime" in {r.split("==")[0] for r in record["pip_requirements"]}
    model = tracking.pyfunc.load_model(record["model_uri"])
    python_model = model.unwrap_python_model()
    assert python_model.session is not None
    served = model.predict(pd.DataFrame({"text": TEXTS}))
    expected = direct_probabilities(classifier, TEXTS)
    np.testing.assert_allclose(
        served[["prob_negative", "prob_positive"]].to_numpy(), expected, atol=0.05
    )


def test_a_lora_model_is_merged_before_packaging(classifier, tracking):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    peft_model = get_peft_model(
        GPT2ForSequenceClassification(classifier.model.config),
        LoraConfig(
            task_type="SEQ_CLS",
            r=4,
            lora_alpha=8,
            target_modules=["c_attn"],
            fan_in_fan_out=True,  # GPT-2's Conv1D (else peft warns and sets it)
            init_lora_weights=False,
        ),
    ).eval()
    lora = TextClassifier(model=peft_model, tokenizer=classifier.tokenizer)
    record = register(lora, tracking, name="lora_clf")
    local = tracking.artifacts.download_artifacts(record["logged_model_uri"])
    files = {p.name for p in __import__("pathlib").Path(local).rglob("*")}
    assert "adapter_config.json" not in files and "model.safetensors" in files
    served = tracking.pyfunc.load_model(record["model_uri"]).predict(
        pd.DataFrame({"text": TEXTS})
    )
    np.testing.assert_allclose(
        served[["prob_negative", "prob_positive"]].to_numpy(),
        direct_probabilities(lora, TEXTS),
        atol=1e-5,
    )


def test_model_inputs_must_be_texts():
    assert texts_from_model_input(pd.DataFrame({"text": ["a", "b"]})) == ["a", "b"]
    assert texts_from_model_input("one") == ["one"]
    with pytest.raises(ValueError, match=r"rows \[1\] are not"):
        texts_from_model_input(pd.DataFrame({"text": ["a", None]}))
    with pytest.raises(ValueError, match="one text column"):
        texts_from_model_input(pd.DataFrame({"a": ["x"], "b": ["y"]}))


def test_latency_summary():
    summary = latency_summary([0.010, 0.020, 0.030, 0.040], n_texts=8, wall_s=0.2)
    assert summary["latency_ms_p50"] == 25.0 and summary["latency_ms_max"] == 40.0
    assert summary["throughput_reviews_per_s"] == 40.0 and summary["n_requests"] == 4


def predictions(probabilities, row_ids=(10, 11, 12), labels=(0, 1, 1)) -> pd.DataFrame:
    probabilities = np.asarray(probabilities, dtype=float)
    return pd.DataFrame(
        {
            "row_id": row_ids,
            "label": labels,
            "predicted_label": probabilities.argmax(1),
            "prob_negative": probabilities[:, 0],
            "prob_positive": probabilities[:, 1],
        }
    )


def test_served_must_equal_offline_within_tolerance():
    offline = predictions([[0.9, 0.1], [0.3, 0.7], [0.49999, 0.50001]])
    close = predictions([[0.90001, 0.09999], [0.3, 0.7], [0.50001, 0.49999]])
    report = compare_served_with_offline(
        close, offline, LABEL_NAMES, MlflowTargetParams()
    )
    assert report["served_equals_offline"] and report["n_compared"] == 3
    assert report["n_label_disagreements"] == 1  # a tie flipped by float noise is fine
    far = predictions([[0.9, 0.1], [0.6, 0.4], [0.49999, 0.50001]])
    with pytest.raises(ValueError, match=r"beyond 0.0001 for row_id \[11\]"):
        compare_served_with_offline(far, offline, LABEL_NAMES, MlflowTargetParams())
    with pytest.raises(
        ValueError, match=r"no offline prediction for served row_id \[99\]"
    ):
        compare_served_with_offline(
            predictions([[0.9, 0.1]], row_ids=(99,), labels=(0,)),
            offline,
            LABEL_NAMES,
            MlflowTargetParams(),
        )


def test_samples_are_stratified_seeded_and_sorted():
    reviews = pd.DataFrame(
        {"row_id": range(100, 0, -1), "text": ["t"] * 100, "label": [0] * 80 + [1] * 20}
    )
    sample = sample_reviews(reviews, 10, seed=0)
    assert len(sample) == 10 and sample["label"].sum() == 2  # stratified
    assert sample["row_id"].is_monotonic_increasing
    assert sample_reviews(reviews, 10, seed=0).equals(sample)  # seeded
    assert len(sample_reviews(reviews, None, seed=0)) == 100


def test_null_and_non_string_reviews_are_a_clear_400_error():
    for model_input in (
        [None],
        {"text": ["a", None]},
        pd.DataFrame({"text": [123]}),
        np.array([1.5], dtype=object),
    ):
        with pytest.raises(InvalidReviews, match=r"review texts \(strings\)") as error:
            texts_from_model_input(model_input)
        assert error.value.get_http_status_code() == 400
    with pytest.raises(InvalidReviews, match=r"rows \[0\] are not \(null\)"):
        texts_from_model_input([None])


def test_more_review_text_than_max_request_bytes_is_a_413_error():
    check_request_size(["é" * 5], max_bytes=10)  # 10 UTF-8 bytes: at the limit
    check_request_size(["x" * 10**6], max_bytes=None)  # no limit
    with pytest.raises(RequestTooLarge, match="11 bytes of review text") as error:
        check_request_size(["é" * 5, "x"], max_bytes=10)
    assert error.value.get_http_status_code() == 413
    with pytest.raises(ValueError, match="max_request_bytes: Input should be greater"):
        MlflowTargetParams.model_validate({"max_request_bytes": 0})


def test_the_scoring_server_answers_400_and_413_and_scores_valid_reviews(
    classifier, tracking
):
    """mlflow's own scoring app (what ``mlflow models serve`` runs), in-process."""
    from fastapi.testclient import TestClient
    from mlflow.pyfunc import scoring_server

    settings = MlflowTargetParams(
        registered_model_name="limited", max_request_bytes=1000
    )
    record = log_and_register(classifier, settings, ["A fine film."], max_length=32)
    assert record["max_request_bytes"] == 1000
    app = scoring_server.init(tracking.pyfunc.load_model(record["model_uri"]))
    with TestClient(app) as client:
        answers = check_malformed_requests(client, "", 30, max_request_bytes=1000)
        by_request = {a["request"]: a["status_code"] for a in answers}
        assert by_request["a null review"] == 400
        assert by_request["a number as a review"] == 400
        assert by_request["a review over max_request_bytes (1000)"] == 413
        assert all(a["as_expected"] for a in answers), answers
        response = client.post("/invocations", json={"inputs": [None]})
        assert "None" not in response.json()["message"].split("Error:")[-1]
        assert "rows [0] are not (null)" in response.json()["message"]
        ok = client.post("/invocations", json={"inputs": ["x" * 1000, "A fine film."]})
        assert ok.status_code == 413  # the limit is per request, not per review
        ok = client.post("/invocations", json={"inputs": ["x" * 990, "A film."]})
        assert ok.status_code == 200 and len(ok.json()["predictions"]) == 2
        for body, expected in (
            ({"inputs": ["Good.", "Bad.", "Fine."]}, 3),
            ({"instances": ["Good."]}, 1),
            ({"dataframe_split": {"columns": ["text"], "data": [["A"], ["B"]]}}, 2),
            ({"dataframe_records": [{"text": "Good."}]}, 1),
            ({"inputs": []}, 0),
        ):
            response = client.post("/invocations", json=body)
            assert response.status_code == 200, (body, response.text)
            assert len(response.json()["predictions"]) == expected, body
        for body in (
            {"inputs": ["a", 1]},
            {"inputs": [["a"], ["b"]]},
            {"dataframe_records": [{"text": "Good."}, {"text": None}]},
            {"dataframe_split": {"columns": ["text"], "data": [[None]]}},
            {"inputs": [True]},
        ):
            response = client.post("/invocations", json=body)
            assert response.status_code == 400, (body, response.text)


def test_the_request_limit_default_is_the_served_models():
    """mlflow_serving keeps its own copy (serving_model imports mlflow and torch)."""
    assert (
        mlflow_serving.DEFAULT_MAX_REQUEST_BYTES
        == serving_model.DEFAULT_MAX_REQUEST_BYTES
    )


def test_the_truncation_module_name_is_the_served_models():
    """mlflow_serving keeps its own copy (serving_model imports mlflow and torch)."""
    assert mlflow_serving.TRUNCATION_MODULE == serving_model.TRUNCATION_MODULE


def test_the_served_model_cuts_texts_as_logged_with_its_own_copy_of_the_code(
    classifier, tracking
):
    """The config says how to cut, the logged truncation.py does it: a serving host
    needs no llm_finetuning (serving_model.py falls back to it only in the project)."""
    from llm_finetuning.truncation import Truncation

    settings = MlflowTargetParams(registered_model_name="clf", batch_size=3)
    record = log_and_register(
        classifier,
        settings,
        ["A fine film."],
        max_length=32,
        truncation="tail",
        head_tokens=8,
    )
    assert (record["max_length"], record["truncation"]) == (32, "tail")
    model = tracking.pyfunc.load_model(record["model_uri"])
    python_model = model.unwrap_python_model()
    assert type(python_model.truncation).__module__ == "llm_finetuning_truncation"
    assert python_model.truncation.as_config() == Truncation(32, "tail", 8).as_config()
    served = model.predict(pd.DataFrame({"text": TEXTS}))["prob_positive"]
    expected = []
    with torch.inference_mode():
        for text in TEXTS:
            ids = torch.tensor(
                Truncation(32, "tail").encode(classifier.tokenizer, [text]).input_ids
            )
            expected.append(
                float(torch.softmax(classifier.model(ids).logits, -1)[0, 1])
            )
    np.testing.assert_allclose(served.to_numpy(), expected, atol=1e-5)
    # The long review's tail differs from its head: a head cut would fail the check.
    head = direct_probabilities(classifier, TEXTS)[:, 1]
    assert abs(served[2] - head[2]) > 1e-6


def test_mlflow_accepts_the_served_models_type_hints():
    """Defining the pyfunc raises none of MLflow's type-hint warnings."""
    result = subprocess.run(
        [
            sys.executable,
            "-W",
            "always",
            "-c",
            f"import runpy; runpy.run_path({str(serving_model.__file__)!r})",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "type hint" not in result.stderr.lower(), result.stderr
