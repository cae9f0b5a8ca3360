"""The Azure OpenAI data plane through the openai SDK's ``AzureOpenAI`` client: files,
fine-tuning jobs and chat completions.

Reads, deletes and chat completions use the SDK's own retries and timeout
(``retry.max_attempts``, ``retry.request_timeout_s``; it honours ``Retry-After``). The
upload and the job creation go out with ``max_retries=0`` through
:func:`~.waiting.create_at_most_once`, so a 5xx or a timeout after the service stored
them never creates a second file or a second, billed job. The SDK cannot wait for a
job, so :meth:`AzureOpenAIDataPlane.wait_for_job` polls it (``job_poll``).
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import openai
from azure.core.credentials import TokenCredential

from llm_finetuning.pipelines.deployment.azure_openai.chat_files import chat_example
from llm_finetuning.pipelines.deployment.azure_openai.credentials import (
    COGNITIVE_SERVICES_SCOPE,
    AzureCredentials,
    data_plane_credential,
)
from llm_finetuning.pipelines.deployment.azure_openai.job_record import job_matches
from llm_finetuning.pipelines.deployment.azure_openai.settings import AzureOpenAIParams
from llm_finetuning.pipelines.deployment.azure_openai.waiting import (
    AzureOpenAIError,
    Clock,
    FineTuningJobFailed,
    Sleep,
    create_at_most_once,
    poll,
)

logger = logging.getLogger(__name__)

JOB_SUCCEEDED = "succeeded"
JOB_FAILED_STATUSES = ("failed", "cancelled")
# File statuses of an upload that cannot be used for fine-tuning.
FILE_FAILED_STATUSES = ("error", "deleted")
# Listing jobs: items per page, and how many of the newest are looked at in all.
LIST_PAGE_SIZE = 100
MAX_LISTED = 1000


def openai_client(
    credentials: AzureCredentials,
    settings: AzureOpenAIParams,
    credential: TokenCredential | None = None,
) -> openai.AzureOpenAI:
    """``AzureOpenAI`` with the key, or an Entra ID token provider (``credential``, else
    ``DefaultAzureCredential``), and the SDK's retries and timeout from ``retry``."""
    credentials.require_data_plane()
    if credentials.api_key:
        auth: dict[str, Any] = {"api_key": credentials.api_key}
    else:
        from azure.identity import get_bearer_token_provider

        auth = {
            "azure_ad_token_provider": get_bearer_token_provider(
                credential or data_plane_credential(), COGNITIVE_SERVICES_SCOPE
            )
        }
    return openai.AzureOpenAI(
        azure_endpoint=credentials.endpoint,
        api_version=settings.api_version,
        max_retries=settings.retry.max_attempts - 1,
        timeout=settings.retry.request_timeout_s,
        **auth,
    )


class AzureOpenAIDataPlane:
    """Files, fine-tuning jobs and chat completions of one Azure OpenAI resource.

    Args:
        client: The SDK client (:func:`openai_client`).
        settings: The ``deployment.azure_openai`` parameters.
        sleep, clock: Waits of polling and of :func:`create_at_most_once`; injected in
            tests so that they take no time.
    """

    def __init__(
        self,
        client: openai.AzureOpenAI,
        settings: AzureOpenAIParams,
        *,
        sleep: Sleep = time.sleep,
        clock: Clock = time.monotonic,
    ) -> None:
        self.client = client
        # Requests that create something: never re-sent by the SDK (see the module).
        self._once = client.with_options(max_retries=0)
        self.settings = settings
        self._sleep = sleep
        self._clock = clock

    def _create_once(
        self, create: Callable[[], Any], find_created: Callable[[], Any], what: str
    ) -> Any:
        return create_at_most_once(
            create,
            find_created,
            what,
            settings=self.settings.retry,
            sleep=self._sleep,
            clock=self._clock,
        )

    @staticmethod
    def _listed(page: Any) -> list[Any]:
        """Every item of a paged listing (newest first), at most :data:`MAX_LISTED`.

        Stops at a page that brings nothing new: Azure's file list has no
        ``has_more``, and the SDK would ask for the same page again.
        """
        items: list[Any] = []
        seen: set[str] = set()
        while True:
            new = [item for item in page.data if item.id not in seen]
            seen.update(item.id for item in new)
            items.extend(new)
            if not new or len(items) >= MAX_LISTED or not page.has_next_page():
                return items[:MAX_LISTED]
            page = page.get_next_page()

    # -- files

    def _matching_files(self, filename: str, size: int) -> list[Any]:
        """Uploaded fine-tuning files with this name and size (usable or not)."""
        return [
            file
            for file in self._listed(self.client.files.list(purpose="fine-tune"))
            if file.filename == filename
            and file.bytes == size
            and file.purpose == "fine-tune"
        ]

    def upload_file(self, filename: str, content: bytes) -> str:
        """Upload a fine-tuning file at most once; its id once Azure has processed it.

        A file of the same name, size and purpose already uploaded (and not failed) is
        used instead (:func:`~.job_record.upload_filename` puts the content's hash in
        the name); an upload answered with a 5xx or a timeout is looked for the same
        way before it is sent again.
        """
        size = len(content)
        matching = self._matching_files(filename, size)
        usable = [f for f in matching if f.status not in FILE_FAILED_STATUSES]
        if usable:
            logger.info(
                "Using file %s: %s (%d bytes) was uploaded before",
                usable[0].id,
                filename,
                size,
            )
            return self._wait_for_file(usable[0].id, filename)
        known = {f.id for f in matching}

        def find_created() -> Any:
            found = [
                f
                for f in self._matching_files(filename, size)
                if f.id not in known and f.status not in FILE_FAILED_STATUSES
            ]
            return found[0] if found else None

        file_id = self._create_once(
            lambda: self._once.files.create(
                file=(filename, content, "application/jsonl"), purpose="fine-tune"
            ),
            find_created,
            f"uploading {filename}",
        ).id
        logger.info("Uploaded %s as file %s (%d bytes)", filename, file_id, size)
        return self._wait_for_file(file_id, filename)

    def _wait_for_file(self, file_id: str, filename: str) -> str:
        for deadline in poll(
            self.settings.file_poll,
            f"waiting for file {file_id}",
            self._sleep,
            self._clock,
        ):
            status = self.client.files.retrieve(file_id).status
            if status == "processed":
                return file_id
            if status in FILE_FAILED_STATUSES:
                raise AzureOpenAIError(
                    f"Azure OpenAI could not import {filename} (file {file_id}): "
                    f"status {status}"
                )
            deadline.check(f"file {file_id} status {status}")
        raise AssertionError("unreachable")  # pragma: no cover

    def delete_file(self, file_id: str) -> bool:
        """Delete an uploaded file; ``False`` when it was already gone."""
        try:
            self.client.files.delete(file_id)
        except openai.NotFoundError:
            return False
        return True

    def file_text(self, file_id: str) -> str:
        """Content of a result file (``results.csv``), decoded from base64 if so sent."""
        raw = self.client.files.content(file_id).read()
        try:
            return base64.b64decode(raw, validate=True).decode("utf-8")
        except ValueError:
            return raw.decode("utf-8", errors="replace")

    # -- fine-tuning jobs

    def matching_jobs(self, request: Mapping[str, Any]) -> list[Any]:
        """Jobs created for ``request`` (:func:`~.job_record.job_matches`), newest
        first, whatever their status."""
        listed = self._listed(self.client.fine_tuning.jobs.list(limit=LIST_PAGE_SIZE))
        return [job for job in listed if job_matches(job, request)]

    def create_job(self, request: Mapping[str, Any]) -> Any:
        """Create a fine-tuning job at most once (after a 5xx or a timeout the jobs are
        listed before the request is sent again)."""
        known = {job.id for job in self.matching_jobs(request)}

        def find_created() -> Any:
            found = [j for j in self.matching_jobs(request) if j.id not in known]
            return found[0] if found else None

        job = self._create_once(
            lambda: self._once.fine_tuning.jobs.create(**request),
            find_created,
            "creating the fine-tuning job",
        )
        logger.info("Created fine-tuning job %s (status %s)", job.id, job.status)
        return job

    def find_or_create_job(
        self, request: Mapping[str, Any], *, reuse: bool = True
    ) -> tuple[Any, bool]:
        """A job for ``request``, and whether this call created it.

        With ``reuse``, the newest job created earlier for the same files and request
        that has not failed or been cancelled is returned instead of a new one: what an
        earlier run created just before it was killed (or before its record was saved).
        """
        if reuse:
            for job in self.matching_jobs(request):
                if job.status not in JOB_FAILED_STATUSES:
                    logger.info(
                        "Using fine-tuning job %s (status %s): created earlier for the "
                        "same files and request",
                        job.id,
                        job.status,
                    )
                    return job, False
        return self.create_job(request), True

    def retrieve_job(self, job_id: str) -> Any | None:
        """The job, or ``None`` when this resource has no job of that id."""
        try:
            return self.client.fine_tuning.jobs.retrieve(job_id)
        except openai.NotFoundError:
            return None

    def _new_events(self, job_id: str, seen: set[str]) -> list[Any]:
        page = self.client.fine_tuning.jobs.list_events(job_id, limit=100)
        events = [e for e in page.data if e.id not in seen]
        seen.update(e.id for e in events)
        return sorted(events, key=lambda e: e.created_at)

    def wait_for_job(self, job_id: str) -> tuple[Any, list[dict[str, Any]]]:
        """Poll the job with back-off, logging its new events, until it ends.

        Raises:
            FineTuningJobFailed: on ``failed`` or ``cancelled``, with the service's
                error message and the last event.
            AzureTimeout: past ``job_poll.timeout_s``.
        """
        seen: set[str] = set()
        events: list[dict[str, Any]] = []
        for deadline in poll(
            self.settings.job_poll,
            f"waiting for fine-tuning job {job_id}",
            self._sleep,
            self._clock,
        ):
            job = self.client.fine_tuning.jobs.retrieve(job_id)
            for event in self._new_events(job_id, seen):
                logger.info("Job %s: %s", job_id, event.message)
                events.append(
                    {
                        "created_at": event.created_at,
                        "level": event.level,
                        "message": event.message,
                    }
                )
            if job.status == JOB_SUCCEEDED:
                return job, events
            if job.status in JOB_FAILED_STATUSES:
                error = getattr(job, "error", None)
                message = getattr(error, "message", None) or "no error message"
                code = getattr(error, "code", None)
                raise FineTuningJobFailed(
                    f"Fine-tuning job {job_id} {job.status}: "
                    f"{f'{code}: ' if code else ''}{message}"
                    + (f" (last event: {events[-1]['message']})" if events else "")
                )
            deadline.check(f"job {job_id} status {job.status}")
        raise AssertionError("unreachable")  # pragma: no cover

    # -- chat completions

    def complete(
        self, deployment: str, system_prompt: str, user: str
    ) -> tuple[str | None, str | None]:
        """The deployment's answer to one review, and an error for a filtered prompt
        (:meth:`complete_with_usage` without the timing and token counts)."""
        completion = self.complete_with_usage(deployment, system_prompt, user)
        return completion.answer, completion.error

    def complete_with_usage(
        self, deployment: str, system_prompt: str, user: str
    ) -> Completion:
        """The deployment's answer to one review, its latency and token counts.

        A prompt Azure's content filter rejects (HTTP 400, ``content_filter``) is an
        answer-level error, not a crash: the review counts as unparseable. The latency
        includes the SDK's retries: what a caller waits.
        """
        inference = self.settings.inference
        started = time.perf_counter()
        try:
            response = self.client.chat.completions.create(
                model=deployment,
                messages=chat_example(system_prompt, user)["messages"],
                max_tokens=inference.max_tokens,
                temperature=inference.temperature,
            )
        except openai.BadRequestError as error:
            if error.code == "content_filter":
                return Completion(None, "content_filter", _ms_since(started))
            raise
        latency_ms = _ms_since(started)
        usage = getattr(response, "usage", None)
        tokens = {
            "prompt_tokens": getattr(usage, "prompt_tokens", None),
            "completion_tokens": getattr(usage, "completion_tokens", None),
        }
        if not response.choices:
            return Completion(None, "no choices", latency_ms, **tokens)
        choice = response.choices[0]
        error = (
            choice.finish_reason if choice.finish_reason == "content_filter" else None
        )
        return Completion(choice.message.content, error, latency_ms, **tokens)


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


class Completion(NamedTuple):
    """One chat completion: the answer (``None`` if filtered), an answer-level error,
    the request's latency and the tokens billed (``None`` when not reported)."""

    answer: str | None
    error: str | None
    latency_ms: float
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
