"""The ``deployment.azure_openai`` parameter models."""

from __future__ import annotations

import pytest

from llm_finetuning.params import ParamsError
from llm_finetuning.pipelines.deployment.azure_openai.settings import AzureOpenAIParams


def test_unknown_keys_are_named_with_their_path_and_the_allowed_keys():
    with pytest.raises(
        ParamsError,
        match=r"deployment\.azure_openai\.fine_tuning\.n_epoch: unknown key; allowed "
        r"keys: base_model, batch_size",
    ):
        AzureOpenAIParams.model_validate({"fine_tuning": {"n_epoch": 3}})
    with pytest.raises(ParamsError, match="dry_run: unknown key"):
        AzureOpenAIParams.model_validate({"dry_run": True})  # a pipeline now


def test_a_partial_block_keeps_the_other_defaults_of_that_block():
    parsed = AzureOpenAIParams.model_validate(
        {"file_poll": {"interval_s": 1}, "deployment": {"poll": {"interval_s": 1}}}
    )
    assert parsed.file_poll.interval_s == 1 and parsed.file_poll.timeout_s == 600
    assert parsed.job_poll.timeout_s == 14_400  # jobs take hours, files minutes
    assert parsed.deployment.poll.timeout_s == 1800
    assert parsed.examples.train == 500 and parsed.validation.min_examples == 10


def test_values_are_checked_and_frozen():
    with pytest.raises(ParamsError, match="validation.token_counter"):
        AzureOpenAIParams.model_validate({"validation": {"token_counter": "words"}})
    with pytest.raises(ParamsError, match="validation.min_examples"):
        AzureOpenAIParams.model_validate({"validation": {"min_examples": 5}})
    parsed = AzureOpenAIParams.model_validate({"label_words": {"neg": "negative"}})
    assert parsed.label_word("neg") == "negative" and parsed.label_word("x") == "x"
    with pytest.raises(ValueError, match="frozen"):
        parsed.resume_job = False
