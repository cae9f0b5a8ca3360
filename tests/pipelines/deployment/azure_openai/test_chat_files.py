"""Chat-format JSONL: export, validation, token counting, the request, answers."""

from __future__ import annotations

import json
import logging

import pytest

from llm_finetuning.pipelines.deployment.azure_openai import chat_files
from llm_finetuning.pipelines.deployment.azure_openai.chat_files import (
    fine_tuning_job_request,
    parse_label_word,
    token_counter_for,
    validate_chat_jsonl,
)
from llm_finetuning.pipelines.deployment.azure_openai.settings import (
    FineTuningParams,
    ValidationParams,
)
from tests.pipelines.deployment.azure_openai.conftest import (
    PROMPT,
    WORDS,
    jsonl,
    settings,
)


def test_chat_jsonl_has_system_user_assistant_lines_in_real_utf8():
    text = jsonl(12)
    lines = text.splitlines()
    assert len(lines) == 12 and "café" in text  # not \u00e9
    first = json.loads(lines[0])
    assert [m["role"] for m in first["messages"]] == ["system", "user", "assistant"]
    assert first["messages"][0]["content"] == PROMPT
    assert first["messages"][2]["content"] == "positive"


def test_validation_reports_counts_tokens_balance_and_cost():
    report = validate_chat_jsonl(
        jsonl(20),
        jsonl(10),
        WORDS,
        settings(),
        count=lambda t: len(t.split()),
        counter_name="words",
    )
    train = report["files"]["train.jsonl"]
    assert train["n_examples"] == 20
    assert train["label_counts"] == {"negative": 10, "positive": 10}
    # 3 priming + per message 3 + role (1 word) + content words
    expected_one = 3 + (3 + 1 + len(PROMPT.split())) + (3 + 1 + 8) + (3 + 1 + 1)
    assert train["tokens"]["max"] == expected_one
    assert report["estimate"]["trained_tokens"] == 20 * expected_one * 2  # n_epochs 2
    assert report["estimate"]["training_cost_usd"] == pytest.approx(
        20 * expected_one * 2 / 1e6 * 3.30, abs=1e-4
    )
    assert report["token_counter"] == "words" and report["warnings"] == []
    assert report["max_tokens_per_example"] == 65_536


@pytest.mark.parametrize(
    ("train", "validation", "message"),
    [
        (jsonl(9), jsonl(10), "train.jsonl has 9 example"),
        (jsonl(12), "{not json\n", "validation.jsonl line 1 is not valid JSON"),
        (jsonl(12) + '{"messages": []}\n', jsonl(10), "example 13: roles are"),
        (
            jsonl(12).replace('"positive"}', '"Positive!"}'),
            jsonl(10),
            "not one of the label words",
        ),
        (
            jsonl(12, positive_share=1.0),
            jsonl(10),
            r"no example answering \['negative'\]",
        ),
        (
            jsonl(12).replace("café", "caf\udce9", 1),
            jsonl(10),
            "line 1 cannot be encoded as UTF-8",
        ),
    ],
)
def test_validation_rejects_bad_files_naming_the_problem(train, validation, message):
    with pytest.raises(ValueError, match=message):
        validate_chat_jsonl(
            train, validation, WORDS, settings(), count=len, counter_name="chars"
        )


def test_validation_rejects_examples_over_the_token_limit_and_warns_on_imbalance(
    caplog,
):
    tight = settings(
        validation={"token_counter": "estimate", "max_tokens_per_example": 50}
    )
    with pytest.raises(ValueError, match=r"12 example\(s\) exceed the 50-token limit"):
        validate_chat_jsonl(
            jsonl(12), jsonl(10), WORDS, tight, count=len, counter_name="chars"
        )
    with caplog.at_level(logging.WARNING):
        report = validate_chat_jsonl(
            jsonl(20, positive_share=0.9),
            jsonl(10),
            WORDS,
            settings(),
            count=len,
            counter_name="c",
        )
    assert "imbalanced" in report["warnings"][0] and "imbalanced" in caplog.text


def test_tiktoken_names_the_encoding_and_an_estimate_only_replaces_it_when_allowed(
    monkeypatch,
):
    def offline(model, timeout_s):
        raise RuntimeError("no network")

    monkeypatch.setattr(chat_files, "_load_tiktoken", offline)
    count, name = token_counter_for("gpt-4o-mini-2024-07-18", ValidationParams())
    assert name.startswith("estimate") and count("abcdef") == 2
    with pytest.raises(RuntimeError, match="encoding for gpt-35-turbo-0125 could not"):
        token_counter_for(
            "gpt-35-turbo-0125", ValidationParams(token_counter="tiktoken")
        )
    monkeypatch.setattr(chat_files, "_load_tiktoken", lambda model, timeout_s: len)
    _, name = token_counter_for("gpt-35-turbo-0125", ValidationParams())
    assert name == "tiktoken cl100k_base"  # tiktoken's own model map (Azure names too)
    _, name = token_counter_for("gpt-4o-mini-2024-07-18", ValidationParams())
    assert name == "tiktoken o200k_base"
    # A model tiktoken does not know: estimated (auto) or an error (tiktoken).
    _, name = token_counter_for("my-model", ValidationParams())
    assert name.startswith("estimate")


def test_the_job_request_leaves_out_what_the_service_chooses():
    assert fine_tuning_job_request(FineTuningParams(n_epochs=None, suffix=None)) == {
        "model": "gpt-4o-mini-2024-07-18",
        "seed": 42,
    }
    assert fine_tuning_job_request(FineTuningParams(batch_size=8))[
        "hyperparameters"
    ] == {"n_epochs": 2, "batch_size": 8}


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("positive", 1),
        ("Negative.", 0),
        ("  **POSITIVE**\n", 1),
        ("The sentiment is negative", 0),
        ("positive or negative", -1),
        ("I cannot tell.", -1),
        ("", -1),
        (None, -1),
        ("nonpositive", -1),
        ("positive " * 50, -1),
    ],
)
def test_parse_label_word(answer, expected):
    assert parse_label_word(answer, WORDS) == expected
