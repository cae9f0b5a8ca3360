"""Deadlines, back-off and Retry-After (at-most-once creation runs through the SDK
clients in test_data_plane.py and test_control_plane.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from llm_finetuning.pipelines.deployment.azure_openai.settings import PollParams
from llm_finetuning.pipelines.deployment.azure_openai.waiting import (
    AzureTimeout,
    poll,
    retry_after_seconds,
)
from tests.pipelines.deployment.azure_openai.conftest import FakeTime


def test_retry_after_in_seconds_milliseconds_or_http_date():
    assert retry_after_seconds({"Retry-After": "7"}) == 7
    assert retry_after_seconds({"retry-after-ms": "1500"}) == 1.5
    later = datetime.now(UTC) + timedelta(seconds=30)
    assert (
        25
        < retry_after_seconds({"Retry-After": format_datetime(later, usegmt=True)})
        <= 30
    )
    assert retry_after_seconds({}) is None


def test_polling_backs_off_and_stops_at_the_deadline():
    clock = FakeTime()
    settings = PollParams(
        interval_s=60, max_interval_s=100, multiplier=1.5, timeout_s=300
    )
    with pytest.raises(AzureTimeout, match="300 s waiting for it"):
        for deadline in poll(settings, "waiting for it", clock.sleep, clock.clock):
            deadline.check()
    assert clock.sleeps == [60, 90, 100, 50]  # the last wait ends at the deadline
