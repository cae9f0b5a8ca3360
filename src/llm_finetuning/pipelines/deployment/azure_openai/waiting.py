"""Errors, deadlines, polling and the at-most-once sending of requests that create
something (file upload, job creation, deployment PUT).

Idempotent requests are retried by the SDKs themselves (openai's ``max_retries``,
azure-core's retry policy, both honouring ``Retry-After``). A request that creates
something must not be: a 5xx, a 408 or a timeout can come after the service stored
it. :func:`create_at_most_once` sends it with the SDK's retries off and, after such an
answer, looks for what it would have created before sending it again.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

import openai
from azure.core.exceptions import (
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)

from llm_finetuning.pipelines.deployment.azure_openai.settings import (
    PollParams,
    RetryParams,
)

logger = logging.getLogger(__name__)

Sleep = Callable[[float], None]
Clock = Callable[[], float]
_Result = TypeVar("_Result")


class AzureOpenAIError(RuntimeError):
    """A call to Azure failed for good, with the service's message."""


class FineTuningJobFailed(AzureOpenAIError):
    """The fine-tuning job ended ``failed`` or ``cancelled``."""


class DeploymentFailed(AzureOpenAIError):
    """The Resource Manager deployment ended ``Failed`` or ``Canceled``."""


class AzureTimeout(AzureOpenAIError, TimeoutError):
    """A wait ran past its deadline (a ``timeout_s`` in the parameters)."""


class Deadline:
    """A point in time a wait must not pass, on an injectable clock."""

    def __init__(self, timeout_s: float, clock: Clock, what: str) -> None:
        self.timeout_s = timeout_s
        self.what = what
        self._clock = clock
        self._end = clock() + timeout_s

    def remaining(self) -> float:
        return self._end - self._clock()

    def check(self, detail: str = "") -> None:
        if self.remaining() <= 0:
            raise AzureTimeout(
                f"Timed out after {self.timeout_s:g} s {self.what}"
                + (f" ({detail})" if detail else "")
                + ": raise the matching timeout_s in parameters_deployment.yml or check "
                "the resource in the Azure portal"
            )


def poll(
    settings: PollParams, what: str, sleep: Sleep, clock: Clock
) -> Iterator[Deadline]:
    """Yield before each check, sleep with back-off between checks, raise past the
    deadline (the caller calls ``deadline.check`` after a check that found no end)."""
    deadline = Deadline(settings.timeout_s, clock, what)
    interval = settings.interval_s
    while True:
        yield deadline
        deadline.check()
        sleep(max(min(interval, deadline.remaining()), 0.0))
        interval = min(interval * settings.multiplier, settings.max_interval_s)


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The wait a 429/503 answer asks for: ``retry-after-ms``, ``Retry-After`` (seconds
    or an HTTP date)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        if name in lowered:
            try:
                return max(float(lowered[name]) / 1000, 0.0)
            except ValueError:
                pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(parsed.timestamp() - time.time(), 0.0) if parsed else None


def _status(error: BaseException) -> int | None:
    if isinstance(error, openai.APIStatusError | HttpResponseError):
        return error.status_code
    return None


def _asked_wait(error: BaseException) -> float | None:
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None)
    return retry_after_seconds(headers) if headers is not None else None


def outcome_unknown(error: BaseException) -> bool:
    """Whether the service may have acted on a request that failed with ``error``:
    a 5xx, a 408 or a lost connection (a timeout included). A 429 or another 4xx is a
    refusal."""
    status = _status(error)
    if status is not None:
        return status == 408 or status >= 500
    return isinstance(
        error, openai.APIConnectionError | ServiceRequestError | ServiceResponseError
    )


def _retryable(error: BaseException) -> bool:
    return _status(error) == 429 or outcome_unknown(error)


def create_at_most_once(
    create: Callable[[], _Result],
    find_created: Callable[[], _Result | None],
    what: str,
    *,
    settings: RetryParams,
    sleep: Sleep,
    clock: Clock,
) -> _Result:
    """Send a request that creates something so that it takes effect once.

    ``create`` must send it without the SDK's own retries. After an answer that leaves
    the outcome unknown (:func:`outcome_unknown`) and the back-off wait,
    ``find_created`` looks for what the request would have created; only when it finds
    nothing is the request sent again. A 429 is retried after the wait it asks for
    (nothing was created); other 4xx answers fail at once. Back-off doubles from
    ``initial_backoff_s`` to ``max_backoff_s``; nothing waits past ``timeout_s``.
    """
    deadline = Deadline(settings.timeout_s, clock, f"calling {what}")
    backoff = settings.initial_backoff_s
    for attempt in range(1, settings.max_attempts + 1):
        try:
            return create()
        except Exception as error:
            unknown = outcome_unknown(error)
            last = attempt == settings.max_attempts
            if not _retryable(error) or (last and not unknown):
                raise AzureOpenAIError(
                    f"{what} failed after {attempt} attempt(s): {error}"
                ) from error
            asked = _asked_wait(error)
            wait = asked if asked is not None else min(backoff, settings.max_backoff_s)
            backoff *= 2
            if wait > deadline.remaining():
                if not unknown:
                    raise AzureTimeout(
                        f"{what}: the service asked to wait {wait:g} s, past the "
                        f"{settings.timeout_s:g} s deadline (retry.timeout_s): {error}"
                    ) from error
                wait = max(deadline.remaining(), 0.0)  # still look before giving up
            logger.warning(
                "%s: attempt %d/%d failed (%s)%s; waiting %.1f s",
                what,
                attempt,
                settings.max_attempts,
                _status(error) or type(error).__name__,
                ", it may have taken effect" if unknown else "",
                wait,
            )
            sleep(wait)
            if unknown:
                found = find_created()
                if found is not None:
                    logger.warning(
                        "%s: the failed attempt had taken effect (%s): not sending "
                        "it again",
                        what,
                        getattr(found, "id", None) or "found by listing",
                    )
                    return found
                if last or deadline.remaining() <= 0:
                    raise AzureOpenAIError(
                        f"{what} failed after {attempt} attempt(s), and nothing it "
                        f"would have created exists: {error}"
                    ) from error
                logger.info("%s: nothing was created; sending it again", what)
    raise AssertionError("unreachable")  # pragma: no cover
