"""Fixtures shared by the whole suite.

Torch runs single-threaded in tests: on a 2-core machine two busy processes with two
threads each were seen to run 40x slower than with one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import mlflow  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
IMDB_DIR = Path(
    os.environ.get("IMDB_DATA_DIR", PROJECT_ROOT.parent / "shared" / "data" / "imdb")
)


@pytest.fixture(scope="session")
def project_root() -> Path:
    """The repository root (where pyproject.toml and conf/ live)."""
    return PROJECT_ROOT


@pytest.fixture(scope="session")
def imdb_dir() -> Path:
    """Folder with the real IMDB ``train/test.parquet``; skips the test where absent."""
    if (
        not (IMDB_DIR / "train.parquet").is_file()
        or not (IMDB_DIR / "test.parquet").is_file()
    ):
        pytest.skip(
            f"real IMDB Parquet files not found in {IMDB_DIR} "
            "(set IMDB_DATA_DIR to the folder holding train.parquet and test.parquet)"
        )
    return IMDB_DIR


@pytest.fixture
def run_kedro(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., dict[str, Any]]]:
    """Run pipelines of this project with the repository's ``conf/`` inside ``tmp_path``.

    Kedro resolves relative catalog paths (``data/...``) against the project path and
    MLflow's ``sqlite:///mlflow.db`` against the working directory: both are
    ``tmp_path``, so every output of the run lands there.
    """
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(PROJECT_ROOT)
    monkeypatch.chdir(tmp_path)

    def run(
        env: str = "test",
        pipeline_names: list[str] | None = None,
        runtime_params: dict[str, Any] | None = None,
        **run_kwargs: Any,
    ) -> dict[str, Any]:
        with KedroSession.create(
            project_path=tmp_path,
            env=env,
            conf_source=str(PROJECT_ROOT / "conf"),
            runtime_params=runtime_params,
        ) as session:
            return session.run(pipeline_names=pipeline_names, **run_kwargs)

    yield run


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
    """Every test starts and ends with no MLflow run, store or experiment cached."""
    _forget_mlflow_state()
    yield
    _forget_mlflow_state()
