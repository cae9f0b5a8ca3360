"""The data plane through the openai SDK against the fake Azure (HTTPS): the whole
flow, the SDK's own retries (429 with Retry-After, 5xx), failures, and uploads and jobs
created at most once."""

from __future__ import annotations

import time

import openai
import pytest

from llm_finetuning.pipelines.deployment.azure_openai.waiting import (
    AzureOpenAIError,
    AzureTimeout,
    FineTuningJobFailed,
)
from tests.pipelines.deployment.azure_openai.conftest import (
    PROMPT,
    FakeTime,
    credentials_for,
    data_plane_for,
    jsonl,
)

JOB = r"^/openai/fine_tuning/jobs/[^/]+$"
JOBS = r"^/openai/fine_tuning/jobs$"
FILES = r"^/openai/files$"
TRAIN_REQUEST = {"model": "gpt-4o-mini-2024-07-18", "seed": 42, "suffix": "imdb"}


def test_the_whole_flow_files_job_results_answers(fake):
    clock = FakeTime()
    service = data_plane_for(fake, clock)
    training = service.upload_file("train.jsonl", jsonl(12).encode())
    validation = service.upload_file("validation.jsonl", jsonl(10).encode())
    assert fake.files[training]["n_lines"] == 12
    assert fake.files[training]["purpose"] == "fine-tune"
    job = service.create_job(
        {**TRAIN_REQUEST, "training_file": training, "validation_file": validation}
    )
    job, events = service.wait_for_job(job.id)
    assert job.status == "succeeded" and job.fine_tuned_model.startswith("gpt-4o-mini")
    assert events[0]["message"] == "Job enqueued."
    assert "successfully completed" in events[-1]["message"]
    assert service.file_text(job.result_files[0]).startswith("step,train_loss")
    fake.deployments["ft-deploy"] = {
        "properties": {"provisioningState": "Succeeded", "model": {"name": "m"}}
    }
    assert service.complete("ft-deploy", PROMPT, "A great, wonderful film.") == (
        "Positive.",
        None,
    )
    chat = fake.calls("POST", "/openai/deployments/ft-deploy/chat/completions")[0]
    assert chat.query["api-version"] == ["2024-10-21"]
    assert service.delete_file(training) is True and training not in fake.files
    assert service.delete_file(training) is False
    assert all(s <= 0.01 for s in clock.sleeps)  # polls only: nothing was retried


def test_the_sdk_retries_a_429_after_the_wait_retry_after_asks(fake):
    service = data_plane_for(fake, FakeTime())
    training = service.upload_file("train.jsonl", jsonl(12).encode())
    job = service.create_job({**TRAIN_REQUEST, "training_file": training})
    fake.fail_next("GET", JOB, 429, {"Retry-After": "1"})
    started = time.monotonic()
    assert service.retrieve_job(job.id).id == job.id
    assert time.monotonic() - started >= 1.0  # the SDK slept as asked
    assert len(fake.calls("GET", JOB)) == 2


def test_the_sdk_retries_5xx_and_gives_up_after_max_attempts(fake):
    service = data_plane_for(fake, FakeTime())
    fake.fail_next("GET", r"^/openai/files/", 500, times=2)
    file_id = service.upload_file("train.jsonl", jsonl(12).encode())
    # 500, 500 (retried by the SDK), then "pending" and "processed" (polled by us)
    assert len(fake.calls("GET", r"^/openai/files/")) == 4
    fake.fail_next(
        "POST", r"/chat/completions$", 503, {"retry-after-ms": "10"}, times=10
    )
    with pytest.raises(openai.InternalServerError):
        service.complete("ft-deploy", PROMPT, "text")
    assert len(fake.calls("POST", r"/chat/completions$")) == 4  # retry.max_attempts
    assert file_id in fake.files


def test_a_429_on_a_creating_request_waits_what_retry_after_asks(fake):
    clock = FakeTime()
    service = data_plane_for(fake, clock)
    training = service.upload_file("train.jsonl", jsonl(12).encode())
    fake.fail_next("POST", JOBS, 429, {"Retry-After": "7"})
    job = service.create_job({**TRAIN_REQUEST, "training_file": training})
    assert job.status == "pending" and 7.0 in clock.sleeps
    assert len(fake.calls("POST", JOBS)) == 2


def test_client_errors_are_not_retried(fake):
    clock = FakeTime()
    service = data_plane_for(fake, clock, credentials_for(fake, api_key="wrong-key"))
    with pytest.raises(openai.AuthenticationError, match="invalid subscription key"):
        service.matching_jobs({})  # the SDK does not retry a 401
    assert len(fake.calls("GET", JOBS)) == 1 and clock.sleeps == []


def test_a_retry_after_past_the_deadline_fails_at_once(fake):
    clock = FakeTime()
    service = data_plane_for(fake, clock, retry={"timeout_s": 10})
    fake.fail_next("POST", FILES, 429, {"Retry-After": "3600"})
    with pytest.raises(
        AzureTimeout, match="asked to wait 3600 s, past the 10 s deadline"
    ):
        service.upload_file("train.jsonl", jsonl(12).encode())
    assert clock.sleeps == []


@pytest.mark.parametrize("outcome", ["failed", "cancelled"])
def test_a_failed_job_raises_with_the_service_message(fake, outcome):
    fake.job_outcome = outcome
    service = data_plane_for(fake, FakeTime())
    training = service.upload_file("train.jsonl", jsonl(12).encode())
    job = service.create_job({**TRAIN_REQUEST, "training_file": training})
    with pytest.raises(
        FineTuningJobFailed,
        match=rf"{job.id} {outcome}: invalid_training_file: The training file has too few",
    ):
        service.wait_for_job(job.id)


def test_a_job_that_never_ends_times_out(fake):
    fake.job_outcome = "never"
    clock = FakeTime()
    service = data_plane_for(
        fake,
        clock,
        job_poll={"interval_s": 60, "max_interval_s": 600, "timeout_s": 3600},
    )
    training = service.upload_file("train.jsonl", jsonl(12).encode())
    job = service.create_job({**TRAIN_REQUEST, "training_file": training})
    clock.sleeps.clear()
    started = clock.now
    with pytest.raises(
        AzureTimeout,
        match=rf"3600 s waiting for fine-tuning job {job.id}.*status running",
    ):
        service.wait_for_job(job.id)
    assert clock.now - started == pytest.approx(3600)
    assert clock.sleeps[:3] == [60, 90, 135]  # back-off


def test_content_filtered_answers_are_errors_not_crashes(fake):
    service = data_plane_for(fake, FakeTime())
    fake.deployments["ft-deploy"] = {
        "properties": {"provisioningState": "Succeeded", "model": {"name": "m"}}
    }
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


def test_without_a_key_an_entra_id_token_authenticates_the_data_plane(fake):
    from llm_finetuning.pipelines.deployment.azure_openai.data_plane import (
        AzureOpenAIDataPlane,
        openai_client,
    )
    from tests.pipelines.deployment.azure_openai.conftest import configured

    credential = FakeCredential(
        {"https://cognitiveservices.azure.com/.default": fake.entra_token}
    )
    credentials = credentials_for(fake, api_key=None, use_entra_id=True)
    params = configured(fake)
    service = AzureOpenAIDataPlane(
        openai_client(credentials, params, credential), params
    )
    file_id = service.upload_file("train.jsonl", jsonl(12).encode())
    assert fake.calls("POST", FILES)[0].headers["authorization"] == (
        f"Bearer {fake.entra_token}"
    )
    assert file_id in fake.files


# --- at most once: uploads and jobs are never created twice ---------------------------


def test_an_upload_that_took_effect_but_answered_500_is_not_sent_again(fake):
    service = data_plane_for(fake, FakeTime())
    fake.lose_answer("POST", FILES, 500)
    file_id = service.upload_file("train-abc.jsonl", jsonl(12).encode())
    assert fake.uploads == 1 and len(fake.calls("POST", FILES)) == 1
    assert list(fake.files) == [file_id]
    assert fake.files[file_id]["status"] == "processed"


def test_an_upload_whose_answer_never_came_is_not_sent_again(fake):
    service = data_plane_for(fake, FakeTime(), retry={"request_timeout_s": 0.3})
    fake.lose_answer("POST", FILES, 500, delay_s=1.5)
    file_id = service.upload_file("train-abc.jsonl", jsonl(12).encode())
    assert fake.uploads == 1 and list(fake.files) == [file_id]


def test_an_upload_that_did_not_take_effect_is_sent_again_after_looking(fake):
    service = data_plane_for(fake, FakeTime())
    fake.fail_next("POST", FILES, 503)
    service.upload_file("train-abc.jsonl", jsonl(12).encode())
    assert fake.uploads == 1 and len(fake.calls("POST", FILES)) == 2
    assert len(fake.calls("GET", FILES)) == 2  # before, and after the 503


def test_the_same_file_is_uploaded_once_and_a_failed_one_again(fake):
    service = data_plane_for(fake, FakeTime())
    content = jsonl(12).encode()
    first = service.upload_file("train-abc.jsonl", content)
    assert service.upload_file("train-abc.jsonl", content) == first
    assert fake.uploads == 1
    fake.files[first]["status"] = "error"
    assert service.upload_file("train-abc.jsonl", content) != first
    assert fake.uploads == 2


def test_a_job_creation_that_took_effect_but_answered_500_is_not_sent_again(fake):
    service = data_plane_for(fake, FakeTime())
    training = service.upload_file("train.jsonl", jsonl(12).encode())
    fake.lose_answer("POST", JOBS, 500)
    job = service.create_job({**TRAIN_REQUEST, "training_file": training})
    assert fake.jobs_created == 1 and list(fake.jobs) == [job.id]
    assert len(fake.calls("POST", JOBS)) == 1


def test_a_job_creation_answered_500_every_time_gives_up_without_duplicates(fake):
    service = data_plane_for(fake, FakeTime())
    training = service.upload_file("train.jsonl", jsonl(12).encode())
    fake.fail_next("POST", JOBS, 500, times=10)
    with pytest.raises(AzureOpenAIError, match=r"after 4 attempt\(s\), and nothing"):
        service.create_job({**TRAIN_REQUEST, "training_file": training})
    assert fake.jobs_created == 0 and len(fake.calls("POST", JOBS)) == 4


def test_a_job_for_the_same_request_is_found_unless_it_failed(fake):
    service = data_plane_for(fake, FakeTime())
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
