"""Fixtures of the Azure client tests: the fake Azure over TLS, instant waits, and the
services built as the nodes build them."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest

from llm_finetuning.pipelines.deployment.azure_openai.chat_files import (
    chat_examples,
    to_jsonl,
)
from llm_finetuning.pipelines.deployment.azure_openai.control_plane import (
    AzureDeployments,
    management_client,
)
from llm_finetuning.pipelines.deployment.azure_openai.credentials import (
    AzureCredentials,
)
from llm_finetuning.pipelines.deployment.azure_openai.data_plane import (
    AzureOpenAIDataPlane,
    openai_client,
)
from llm_finetuning.pipelines.deployment.azure_openai.settings import AzureOpenAIParams
from tests.pipelines.deployment.fake_azure import FakeAzure

WORDS = ["negative", "positive"]
PROMPT = "Classify the review. Answer positive or negative."
FAST_POLL = {"interval_s": 0.01, "max_interval_s": 0.01, "timeout_s": 30}


def reviews(n: int, positive_share: float = 0.5) -> pd.DataFrame:
    n_positive = round(n * positive_share)
    return pd.DataFrame(
        {
            "row_id": range(n),
            "text": [f"Review number {i}: a film with café scenes." for i in range(n)],
            "label": [1] * n_positive + [0] * (n - n_positive),
        }
    )


def jsonl(n: int, positive_share: float = 0.5) -> str:
    return to_jsonl(chat_examples(reviews(n, positive_share), WORDS, PROMPT))


def settings(**overrides) -> AzureOpenAIParams:
    """Test settings: instant polls, small back-off, nested overrides merged."""
    params = {
        "validation": {"token_counter": "estimate"},
        "job_poll": FAST_POLL,
        "file_poll": FAST_POLL,
        "retry": {
            "max_attempts": 4,
            "initial_backoff_s": 0.5,
            "max_backoff_s": 8,
            "timeout_s": 60,
            "request_timeout_s": 10,
        },
        "deployment": {"name": "ft-deploy", "poll": {"interval_s": 0.01}},
    }
    for key, value in overrides.items():
        params[key] = (
            {**params.get(key, {}), **value} if isinstance(value, dict) else value
        )
    return AzureOpenAIParams.model_validate(params)


class FakeTime:
    """Sleep and clock for the services: sleeping advances the clock, instantly."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAzure]:
    with FakeAzure(api_key="fake-key", management_token="fake-arm-token") as server:
        for name, value in server.trusting_environment().items():
            monkeypatch.setenv(name, value)
        yield server


def credentials_for(fake: FakeAzure, **overrides) -> AzureCredentials:
    values = {
        "endpoint": fake.url,
        "api_key": "fake-key",
        "subscription_id": "sub-1",
        "resource_group": "rg-1",
        "account_name": "acct-1",
        "management_token": "fake-arm-token",
        **overrides,
    }
    return AzureCredentials(**values)


def configured(fake: FakeAzure, **overrides) -> AzureOpenAIParams:
    deployment = {
        "name": "ft-deploy",
        "management_endpoint": fake.url,
        "poll": {"interval_s": 0.01, "timeout_s": 30},
        **overrides.pop("deployment", {}),
    }
    return settings(deployment=deployment, **overrides)


def data_plane_for(
    fake: FakeAzure,
    clock: FakeTime,
    credentials: AzureCredentials | None = None,
    **overrides,
) -> AzureOpenAIDataPlane:
    credentials = credentials or credentials_for(fake)
    params = configured(fake, **overrides)
    return AzureOpenAIDataPlane(
        openai_client(credentials, params), params, sleep=clock.sleep, clock=clock.clock
    )


def deployments_for(fake: FakeAzure, clock: FakeTime, **overrides) -> AzureDeployments:
    credentials = credentials_for(fake)
    params = configured(fake, **overrides)
    return AzureDeployments(
        management_client(credentials, params),
        credentials,
        params,
        sleep=clock.sleep,
        clock=clock.clock,
    )
