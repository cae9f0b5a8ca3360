"""The Azure OpenAI client module: export, validation, parsing, retries, and the whole
service flow against the fake Azure server (success and every failure scenario)."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pandas as pd
import pytest

from llm_finetuning import azure_openai as az
from llm_finetuning.azure_openai import (
    AzureCredentials,
    AzureCredentialsDataset,
    AzureOpenAIError,
    AzureOpenAIService,
    AzureOpenAISettings,
    AzureTimeout,
    DeploymentFailed,
    FineTuningJobFailed,
    chat_examples,
    parse_label_word,
    retry_after_seconds,
    to_jsonl,
    validate_chat_jsonl,
)
from tests.pipelines.deployment.fake_azure import FakeAzure

WORDS = ["negative", "positive"]
PROMPT = "Classify the review. Answer positive or negative."


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


def settings(**overrides) -> AzureOpenAISettings:
    fast = {"interval_s": 0.01, "max_interval_s": 0.01, "timeout_s": 30}
    params = {
        "dry_run": False,
        "validation": {"token_counter": "estimate"},
        "job_poll": fast,
        "file_poll": fast,
        "retry": {"max_attempts": 4, "initial_backoff_s": 0.5, "timeout_s": 60},
        "deployment": {"name": "ft-deploy", "poll": fast},
    }
    for key, value in overrides.items():
        params[key] = (
            {**params.get(key, {}), **value} if isinstance(value, dict) else value
        )
    return AzureOpenAISettings.from_params(params)


# --- settings and credentials ---------------------------------------------------------


def test_settings_reject_unknown_keys_and_keep_nested_defaults():
    with pytest.raises(
        ValueError, match=r"Unknown key\(s\) \['n_epoch'\].*fine_tuning"
    ):
        AzureOpenAISettings.from_params({"fine_tuning": {"n_epoch": 3}})
    parsed = AzureOpenAISettings.from_params(
        {"deployment": {"poll": {"interval_s": 1}}}
    )
    assert parsed.deployment.poll.interval_s == 1
    assert parsed.deployment.poll.timeout_s == 1800.0  # the deployment's own default
    with pytest.raises(ValueError, match="dry_run"):
        AzureOpenAISettings.from_params({"dry_run": "sometimes"})


def test_credentials_come_from_the_environment_or_configuration_and_never_print():
    environment = {
        "AZURE_OPENAI_ENDPOINT": "https://env.openai.azure.com",
        "AZURE_OPENAI_API_KEY": "env-secret-key",
        "AZURE_SUBSCRIPTION_ID": "sub-env",
    }
    credentials = AzureCredentials.from_sources(
        {"subscription_id": "sub-conf"}, environment
    )
    assert credentials.endpoint == "https://env.openai.azure.com"
    assert credentials.api_key == "env-secret-key"
    assert credentials.subscription_id == "sub-conf"  # configuration wins
    assert credentials.can_call_openai
    assert "env-secret-key" not in repr(credentials)
    assert AzureOpenAISettings.from_params({}).is_dry_run(AzureCredentials()) is True
    assert AzureOpenAISettings.from_params({}).is_dry_run(credentials) is False

    dataset = AzureCredentialsDataset(credentials={"api_key": "conf-secret-key"})
    assert "conf-secret-key" not in repr(dataset) and "conf-secret-key" not in str(
        dataset._describe()
    )
    assert dataset.load().api_key == "conf-secret-key"
    with pytest.raises(ValueError, match="Unknown key"):
        AzureCredentials.from_sources({"apikey": "x"}, {})
    with pytest.raises(ValueError, match="AZURE_RESOURCE_GROUP, AZURE_OPENAI_ACCOUNT"):
        AzureCredentials(subscription_id="s").require(
            "subscription_id", "resource_group", "account_name", purpose="Deploying"
        )


# --- export and validation ------------------------------------------------------------


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


def test_token_counter_falls_back_to_an_estimate_only_when_allowed(monkeypatch):
    def offline(name, timeout_s):
        raise RuntimeError("no network")

    monkeypatch.setattr(az, "_load_tiktoken", offline)
    count, name = az.token_counter_for(
        "gpt-4o-mini-2024-07-18", az.ValidationSettings()
    )
    assert name.startswith("estimate") and count("abcdef") == 2
    with pytest.raises(RuntimeError, match="o200k_base encoding could not be loaded"):
        az.token_counter_for(
            "gpt-4o-mini", az.ValidationSettings(token_counter="tiktoken")
        )
    assert az.tiktoken_encoding_name("gpt-35-turbo-0125") == "cl100k_base"
    assert (
        az.example_token_limit("gpt-35-turbo-0125", az.ValidationSettings()) == 16_385
    )
    assert (
        az.example_token_limit("gpt-4o-mini-2024-07-18", az.ValidationSettings())
        == 65_536
    )


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


def test_retry_after_in_seconds_milliseconds_or_http_date():
    assert retry_after_seconds({"Retry-After": "7"}) == 7
    assert retry_after_seconds({"retry-after-ms": "1500"}) == 1.5
    later = datetime.now(timezone.utc) + timedelta(seconds=30)
    assert (
        25
        < retry_after_seconds({"Retry-After": format_datetime(later, usegmt=True)})
        <= 30
    )
    assert retry_after_seconds({}) is None


# --- the service against the fake Azure server ------------------------------------------


class FakeTime:
    """Sleep and clock for the service: sleeping advances the clock, instantly."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


@pytest.fixture
def fake():
    with FakeAzure(api_key="fake-key", management_token="fake-arm-token") as server:
        yield server


def service_for(fake: FakeAzure, clock: FakeTime, **overrides) -> AzureOpenAIService:
    credentials = AzureCredentials(
        endpoint=fake.url,
        api_key="fake-key",
        subscription_id="sub-1",
        resource_group="rg-1",
        account_name="acct-1",
        management_token="fake-arm-token",
    )
    configured = settings(
        deployment={
            "name": "ft-deploy",
            "management_endpoint": fake.url,
            "poll": {"interval_s": 0.01, "max_interval_s": 0.01, "timeout_s": 30},
        },
        **overrides,
    )
    return AzureOpenAIService(
        credentials, configured, sleep=clock.sleep, clock=clock.clock
    )


def test_service_runs_the_whole_flow(fake):
    clock = FakeTime()
    service = service_for(fake, clock)
    training = service.upload_file("train.jsonl", jsonl(12).encode())
    validation = service.upload_file("validation.jsonl", jsonl(10).encode())
    assert (
        fake.files[training]["n_lines"] == 12
        and fake.files[training]["purpose"] == "fine-tune"
    )
    job = service.create_job(
        {
            "model": "gpt-4o-mini-2024-07-18",
            "training_file": training,
            "validation_file": validation,
            "seed": 42,
        }
    )
    job, events = service.wait_for_job(job.id)
    assert job.status == "succeeded" and job.fine_tuned_model.startswith("gpt-4o-mini")
    assert [e["message"] for e in events][0] == "Job enqueued."
    assert "successfully completed" in events[-1]["message"]
    assert service.file_text(job.result_files[0]).startswith(
        "step,train_loss"
    )  # base64 decoded
    resource = service.deploy(job.fine_tuned_model)
    assert resource["properties"]["provisioningState"] == "Succeeded"
    put = fake.calls("PUT", "/deployments/ft-deploy$")[0]
    assert put.query["api-version"] == ["2024-10-01"]
    assert json.loads(put.body)["properties"]["model"] == {
        "format": "OpenAI",
        "name": job.fine_tuned_model,
        "version": "1",
    }
    answer, error = service.complete("ft-deploy", PROMPT, "A great, wonderful film.")
    assert (answer, error) == ("Positive.", None)
    chat = fake.calls("POST", "/openai/deployments/ft-deploy/chat/completions")[0]
    assert chat.query["api-version"] == ["2024-10-21"]
    assert service.delete_deployment() is True and fake.deleted_deployments == [
        "ft-deploy"
    ]
    assert service.delete_deployment() is False
    assert service.delete_file(training) is True and training not in fake.files
    assert all(s <= 0.01 for s in clock.sleeps)  # polls only: no retry waited


def test_429_is_retried_after_the_wait_retry_after_asks(fake):
    clock = FakeTime()
    service = service_for(fake, clock)
    training = service.upload_file("train.jsonl", jsonl(12).encode())
    fake.fail_next("POST", r"^/openai/fine_tuning/jobs$", 429, {"Retry-After": "7"})
    job = service.create_job(
        {"model": "gpt-4o-mini-2024-07-18", "training_file": training}
    )
    assert job.status == "pending"
    assert 7.0 in clock.sleeps
    assert len(fake.calls("POST", r"^/openai/fine_tuning/jobs$")) == 2


def test_5xx_is_retried_with_back_off_also_on_resource_manager(fake):
    clock = FakeTime()
    service = service_for(fake, clock)
    fake.fail_next("GET", r"^/openai/files/", 500, times=2)
    fake.fail_next("PUT", r"/deployments/ft-deploy$", 503, {"Retry-After": "3"})
    service.upload_file("train.jsonl", jsonl(12).encode())
    assert clock.sleeps[:2] == [0.5, 1.0]  # initial back-off, doubled
    service.deploy("gpt-4o-mini.ft-1")
    assert 3.0 in clock.sleeps
    assert len(fake.calls("PUT", r"/deployments/ft-deploy$")) == 2


def test_client_errors_are_not_retried_and_give_up_after_max_attempts(fake):
    clock = FakeTime()
    service = service_for(fake, clock)
    service.credentials.__dict__["api_key"] = (
        "wrong-key"  # frozen dataclass: tests only
    )
    with pytest.raises(
        AzureOpenAIError, match=r"after 1 attempt\(s\).*invalid subscription key"
    ):
        service.upload_file("train.jsonl", jsonl(12).encode())
    assert "wrong-key" not in str(clock.sleeps)
    fake.fail_next("PUT", r"/deployments/", 500, times=10)
    with pytest.raises(AzureOpenAIError, match=r"after 4 attempt\(s\)"):
        service.deploy("gpt-4o-mini.ft-1")


def test_a_retry_after_past_the_deadline_fails_at_once(fake):
    clock = FakeTime()
    service = service_for(fake, clock, retry={"timeout_s": 10})
    fake.fail_next("POST", r"^/openai/files$", 429, {"Retry-After": "3600"})
    with pytest.raises(
        AzureTimeout, match="asked to wait 3600 s, past the 10 s deadline"
    ):
        service.upload_file("train.jsonl", jsonl(12).encode())
    assert clock.sleeps == []


@pytest.mark.parametrize("outcome", ["failed", "cancelled"])
def test_a_failed_job_raises_with_the_service_message(fake, outcome):
    fake.job_outcome = outcome
    service = service_for(fake, FakeTime())
    training = service.upload_file("train.jsonl", jsonl(12).encode())
    job = service.create_job(
        {"model": "gpt-4o-mini-2024-07-18", "training_file": training}
    )
    with pytest.raises(
        FineTuningJobFailed,
        match=rf"{job.id} {outcome}: invalid_training_file: The training file has too few",
    ):
        service.wait_for_job(job.id)


def test_a_job_that_never_ends_times_out(fake):
    fake.job_outcome = "never"
    clock = FakeTime()
    service = service_for(
        fake,
        clock,
        job_poll={"interval_s": 60, "max_interval_s": 600, "timeout_s": 3600},
    )
    training = service.upload_file("train.jsonl", jsonl(12).encode())
    job = service.create_job(
        {"model": "gpt-4o-mini-2024-07-18", "training_file": training}
    )
    clock.sleeps.clear()
    started = clock.now
    with pytest.raises(
        AzureTimeout,
        match=rf"3600 s waiting for fine-tuning job {job.id}.*status running",
    ):
        service.wait_for_job(job.id)
    assert clock.now - started == pytest.approx(3600)
    assert clock.sleeps[:3] == [60, 90, 135]  # back-off


def test_a_failed_deployment_raises_with_resource_managers_message(fake):
    fake.deployment_outcome = "Failed"
    service = service_for(fake, FakeTime())
    with pytest.raises(
        DeploymentFailed,
        match="failed: DeploymentFailed: The fine-tuned model is not available",
    ):
        service.deploy("gpt-4o-mini.ft-1")


def test_content_filtered_answers_are_errors_not_crashes(fake):
    service = service_for(fake, FakeTime())
    service.deploy("gpt-4o-mini.ft-1")
    fake.answer = lambda review: None
    assert service.complete("ft-deploy", PROMPT, "text") == (None, "content_filter")


class FakeCredential:
    """Stands in for azure-identity's DefaultAzureCredential."""

    def __init__(self, tokens: dict[str, str]) -> None:
        self.tokens = tokens
        self.scopes: list[str] = []

    def get_token(self, *scopes: str, **kwargs):
        from azure.core.credentials import AccessToken

        self.scopes.extend(scopes)
        return AccessToken(self.tokens[scopes[0]], 4_102_444_800)


def test_without_key_or_token_azure_identity_authenticates_both_planes(fake):
    credential = FakeCredential(
        {
            "https://cognitiveservices.azure.com/.default": fake.entra_token,
            f"{fake.url}/.default": fake.management_token,
        }
    )
    credentials = AzureCredentials(
        endpoint=fake.url,
        use_entra_id=True,
        subscription_id="sub-1",
        resource_group="rg-1",
        account_name="acct-1",
    )
    clock = FakeTime()
    service = AzureOpenAIService(
        credentials,
        settings(deployment={"management_endpoint": fake.url}),
        sleep=clock.sleep,
        clock=clock.clock,
        credential=credential,
    )
    file_id = service.upload_file("train.jsonl", jsonl(12).encode())
    assert fake.calls("POST", "^/openai/files$")[0].headers["authorization"] == (
        f"Bearer {fake.entra_token}"
    )
    service.deploy("gpt-4o-mini.ft-1")
    assert f"{fake.url}/.default" in credential.scopes
    assert file_id in fake.files


# --- at most once: uploads, jobs and deployments are never created twice ----------------

TRAIN_REQUEST = {"model": "gpt-4o-mini-2024-07-18", "seed": 42, "suffix": "imdb"}


def test_an_upload_that_took_effect_but_answered_500_is_not_sent_again(fake):
    service = service_for(fake, FakeTime())
    fake.lose_answer("POST", r"^/openai/files$", 500)
    file_id = service.upload_file("train-abc.jsonl", jsonl(12).encode())
    assert fake.uploads == 1 and len(fake.calls("POST", r"^/openai/files$")) == 1
    assert list(fake.files) == [file_id]
    assert fake.files[file_id]["status"] == "processed"


def test_an_upload_whose_answer_never_came_is_not_sent_again(fake):
    service = service_for(fake, FakeTime(), retry={"request_timeout_s": 0.3})
    fake.lose_answer("POST", r"^/openai/files$", 500, delay_s=1.5)
    file_id = service.upload_file("train-abc.jsonl", jsonl(12).encode())
    assert fake.uploads == 1 and list(fake.files) == [file_id]


def test_an_upload_that_did_not_take_effect_is_sent_again_after_looking(fake):
    service = service_for(fake, FakeTime())
    fake.fail_next("POST", r"^/openai/files$", 503)
    service.upload_file("train-abc.jsonl", jsonl(12).encode())
    assert fake.uploads == 1 and len(fake.calls("POST", r"^/openai/files$")) == 2
    assert len(fake.calls("GET", r"^/openai/files$")) == 2  # before, and after the 503


def test_the_same_file_is_uploaded_once_and_a_failed_one_again(fake):
    service = service_for(fake, FakeTime())
    content = jsonl(12).encode()
    first = service.upload_file("train-abc.jsonl", content)
    assert service.upload_file("train-abc.jsonl", content) == first
    assert fake.uploads == 1
    fake.files[first]["status"] = "error"
    assert service.upload_file("train-abc.jsonl", content) != first
    assert fake.uploads == 2


def test_a_job_creation_that_took_effect_but_answered_500_is_not_sent_again(fake):
    service = service_for(fake, FakeTime())
    training = service.upload_file("train.jsonl", jsonl(12).encode())
    request = {**TRAIN_REQUEST, "training_file": training}
    fake.lose_answer("POST", r"^/openai/fine_tuning/jobs$", 500)
    job = service.create_job(request)
    assert fake.jobs_created == 1 and list(fake.jobs) == [job.id]
    assert len(fake.calls("POST", r"^/openai/fine_tuning/jobs$")) == 1


def test_a_job_creation_answered_500_every_time_gives_up_without_duplicates(fake):
    service = service_for(fake, FakeTime())
    training = service.upload_file("train.jsonl", jsonl(12).encode())
    fake.fail_next("POST", r"^/openai/fine_tuning/jobs$", 500, times=10)
    with pytest.raises(AzureOpenAIError, match=r"after 4 attempt\(s\), and nothing"):
        service.create_job({**TRAIN_REQUEST, "training_file": training})
    assert fake.jobs_created == 0


def test_a_job_for_the_same_request_is_found_unless_it_failed(fake):
    service = service_for(fake, FakeTime())
    training = service.upload_file("train.jsonl", jsonl(12).encode())
    request = {
        **TRAIN_REQUEST,
        "training_file": training,
        "hyperparameters": {"n_epochs": 2},
    }
    job, created = service.find_or_create_job(request)
    assert created
    again, created = service.find_or_create_job(request)
    assert again.id == job.id and not created and fake.jobs_created == 1
    other, created = service.find_or_create_job(
        {**request, "hyperparameters": {"n_epochs": 3}}
    )
    assert created and other.id != job.id
    fake.jobs[job.id]["status"] = "cancelled"
    newer, created = service.find_or_create_job(request)
    assert created and newer.id not in (job.id, other.id)
    _, created = service.find_or_create_job(request, reuse=False)
    assert created and fake.jobs_created == 4


def test_a_deployment_put_that_took_effect_is_not_sent_again_nor_on_rerun(fake):
    service = service_for(fake, FakeTime())
    fake.lose_answer("PUT", r"/deployments/ft-deploy$", 500)
    assert service.deploy("gpt-4o-mini.ft-1")["properties"]["provisioningState"] == (
        "Succeeded"
    )
    assert fake.deployment_puts == 1
    service.deploy("gpt-4o-mini.ft-1")  # a rerun: the deployment is there already
    assert fake.deployment_puts == 1
    service.deploy("gpt-4o-mini.ft-2")  # another model: updated
    assert fake.deployment_puts == 2
    assert fake.deployments["ft-deploy"]["properties"]["model"]["name"] == (
        "gpt-4o-mini.ft-2"
    )


# --- the job record dataset -------------------------------------------------------------


def test_the_job_record_is_empty_before_the_first_job_and_replaced_atomically(
    tmp_path, monkeypatch
):
    path = tmp_path / "records" / "job_record.json"
    record = az.JobRecordDataset(filepath=str(path))
    previous = az.JobRecordDataset(filepath=str(path), read_only=True)
    assert previous.load() == {} and not previous.exists()
    record.save({"job_id": "ftjob-1", "status": "running"})
    assert previous.load() == {"job_id": "ftjob-1", "status": "running"}
    with pytest.raises(Exception, match="read_only"):
        previous.save({"job_id": "ftjob-2"})

    def crash(source, destination):
        raise OSError("disk full")

    monkeypatch.setattr(az.os, "replace", crash)
    with pytest.raises(Exception, match="disk full"):
        record.save({"job_id": "ftjob-3"})
    monkeypatch.undo()
    assert previous.load()["job_id"] == "ftjob-1"  # the old record, whole
    assert [p.name for p in path.parent.iterdir()] == ["job_record.json"]
    path.write_text("{half")
    with pytest.raises(Exception, match=r"job_record.json is not valid JSON"):
        previous.load()
    with pytest.raises(ValueError, match="only local or mounted paths"):
        az.JobRecordDataset(filepath="s3://bucket/job_record.json")


def test_the_job_identity_names_what_changed():
    request = {"model": "gpt-4o-mini", "hyperparameters": {"n_epochs": 2}, "seed": 1}
    before = az.job_identity(request, "a", "b", "https://x.openai.azure.com/")
    assert before["endpoint"] == "https://x.openai.azure.com"
    after = az.job_identity(
        {**request, "hyperparameters": {"n_epochs": 3}, "training_file": "file-9"},
        "a changed",
        "b",
        "https://x.openai.azure.com",
    )
    assert az.identity_changes(before, after) == [
        "request.hyperparameters",
        "training_file_sha256",
    ]
    assert az.upload_filename("train", b"x") == "train-2d711642b726.jsonl"
