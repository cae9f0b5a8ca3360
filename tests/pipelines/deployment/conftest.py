"""Fixtures of the deployment tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import mlflow
import pytest


def _forget_mlflow_state() -> None:
    """End leftover runs and drop MLflow's cached stores and database engines.

    kedro-mlflow 2.0.3 leaves its run active after a session (it reopens it in
    ``before_node_run``), and MLflow caches one store and one pooled engine per
    tracking URI: ``sqlite:///mlflow.db`` is relative to the working directory, which is
    a new tmp_path in every test, but the cached engine keeps the first test's file (and
    the active experiment id the first test's experiment).
    """
    from mlflow.store.model_registry.sqlalchemy_store import (
        SqlAlchemyStore as RegistryStore,
    )
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    while mlflow.active_run() is not None:
        mlflow.end_run()
    for store in (TrackingStore, RegistryStore):
        for engine in store._engine_map.values():
            engine.dispose()
        store._engine_map.clear()
    tracking_utils._tracking_store_registry._get_store_with_resolved_uri.cache_clear()
    registry_utils._get_store_registry()._get_store_with_resolved_uri.cache_clear()
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
    # mlflow.set_experiment (kedro-mlflow calls it) sets both.
    mlflow.tracking.fluent._active_experiment_id = None
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)


@pytest.fixture(autouse=True)
def _fresh_mlflow() -> Iterator[None]:
    _forget_mlflow_state()
    yield
    _forget_mlflow_state()
