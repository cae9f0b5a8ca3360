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
    if not (IMDB_DIR / "train.parquet").is_file() or not (
        IMDB_DIR / "test.parquet"
    ).is_file():
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
