"""The fake serving API for every test here; a test that leaves an endpoint fails."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest

from tests.pipelines.deployment_databricks_serving.fake_serving import FakeServing


def keyword_predictions(texts: list[str]) -> pd.DataFrame:
    """What a served classifier answers: 'good' reads positive."""
    positive = [0.9 if "good" in text else 0.2 for text in texts]
    return pd.DataFrame(
        {
            "predicted_label": [int(p > 0.5) for p in positive],
            "label_name": ["positive" if p > 0.5 else "negative" for p in positive],
            "prob_negative": [1 - p for p in positive],
            "prob_positive": positive,
        }
    )


@pytest.fixture
def fake_serving(monkeypatch: pytest.MonkeyPatch, tmp_path) -> Iterator[FakeServing]:
    with FakeServing(predict=keyword_predictions) as fake:
        for name in (
            "DATABRICKS_CONFIG_PROFILE",
            "DATABRICKS_CLIENT_ID",
            "DATABRICKS_CLIENT_SECRET",
        ):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(tmp_path / "no.databrickscfg"))
        for name, value in fake.environment().items():
            monkeypatch.setenv(name, value)
        yield fake
        assert not fake.endpoints, (
            f"a test left endpoints behind: {list(fake.endpoints)}"
        )
