"""Fixtures of the deployment tests."""

from __future__ import annotations

from collections.abc import Iterator

import mlflow
import pytest


@pytest.fixture(autouse=True)
def _end_leftover_mlflow_runs() -> Iterator[None]:
    """End the MLflow run kedro-mlflow 2.0.3 leaves active after a session (it reopens
    the run in ``before_node_run``), so the next session does not log into it."""
    yield
    while mlflow.active_run() is not None:
        mlflow.end_run()
