"""Fixtures shared by the whole suite.

Torch runs single-threaded in tests: on a 2-core machine two busy processes with two
threads each were seen to run 40x slower than with one.

No test may leave a process running (:func:`_no_leftover_processes`): the pytest
process is made a child subreaper, so that what a killed child leaves behind (a
server whose parent was SIGKILLed) is reparented to it, not to init, and is found.
"""

from __future__ import annotations

import os
import time
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
import psutil  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from llm_finetuning.processes import become_subreaper  # noqa: E402

torch.set_num_threads(1)
become_subreaper()

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def demo_tokenizer(max_length: int) -> Any:
    """The BPE tokenizer bundled with the demo data, prepared as the pipelines do."""
    from llm_finetuning.models import ModelParams, load_tokenizer
    from llm_finetuning.resolvers import package_path

    return load_tokenizer(
        ModelParams(
            source="config",
            name_or_path=None,
            tokenizer_name_or_path=package_path("demo_data/tokenizer"),
            max_length=max_length,
        )
    )


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


# Long-lived helpers that libraries start once per interpreter and reuse on purpose.
ALLOWED_LEFTOVERS = (
    "multiprocessing.resource_tracker",
    "multiprocessing.forkserver",
    "joblib.externals.loky",  # loky's reusable worker pool (scikit-learn n_jobs)
    "loky.backend",
)
LEFTOVER_GRACE_S = 3.0


def _process_key(process: psutil.Process) -> tuple[int, float] | None:
    """``(pid, start time)``: a pid alone may be reused. None once it has gone."""
    try:
        return process.pid, process.create_time()
    except psutil.Error:
        return None


def _running_descendants() -> list[psutil.Process]:
    """The pytest process's descendants that still run (zombies have ended)."""
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except psutil.Error:
            pass
    return found


def _command_line(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline()) or process.name()
    except psutil.Error:
        return "(gone)"


def _is_new_and_unowned(
    process: psutil.Process, before: set[tuple[int, float]], me: int
) -> bool:
    """Started during the test and not below a process that existed before it.

    Children of earlier processes (a Spark JVM's Python workers, a module-scoped
    server's workers) belong to the fixture that started those, not to the test.
    """
    key = _process_key(process)
    if key is None or key in before:
        return False
    if any(marker in _command_line(process) for marker in ALLOWED_LEFTOVERS):
        return False
    try:
        ancestors = process.parents()
    except psutil.Error:
        return False
    for ancestor in ancestors:
        if ancestor.pid == me:
            return True
        if _process_key(ancestor) in before:
            return False
    return True


def _leftovers(before: set[tuple[int, float]]) -> list[psutil.Process]:
    me = os.getpid()
    return [p for p in _running_descendants() if _is_new_and_unowned(p, before, me)]


def _kill(processes: list[psutil.Process]) -> None:
    """SIGKILL ``processes`` and what runs below them, and wait for them."""
    victims = list(processes)
    for process in processes:
        try:
            victims += process.children(recursive=True)
        except psutil.Error:
            pass
    for victim in victims:
        try:
            victim.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(victims, timeout=5)


def _reap_new_zombies(before: set[tuple[int, float]]) -> None:
    """Collect exited orphans that were reparented here during the test.

    As a subreaper, pytest inherits them; nobody else waits for them. Zombies that
    existed before the test may belong to a fixture's ``Popen`` and are left to it.
    """
    for child in psutil.Process().children():
        try:
            zombie = child.status() == psutil.STATUS_ZOMBIE
        except psutil.Error:
            continue
        if zombie and _process_key(child) not in before:
            try:
                os.waitpid(child.pid, os.WNOHANG)
            except ChildProcessError:
                pass


@pytest.fixture(autouse=True)
def _no_leftover_processes() -> Iterator[None]:
    """Fail a test that leaves a process running, list it, and kill it.

    Processes that ran before the test (session- and module-scoped fixtures' servers,
    a Spark JVM) and their children are not the test's; see :data:`ALLOWED_LEFTOVERS`
    for the rest that is let be.
    """
    before = {
        key
        for key in map(_process_key, psutil.Process().children(recursive=True))
        if key is not None
    }
    yield
    _reap_new_zombies(before)
    deadline = time.monotonic() + LEFTOVER_GRACE_S
    leftovers = _leftovers(before)
    while leftovers and time.monotonic() < deadline:
        time.sleep(0.2)  # processes the test just signalled may still be exiting
        leftovers = _leftovers(before)
    if leftovers:
        listing = "\n".join(f"  pid {p.pid}: {_command_line(p)}" for p in leftovers)
        _kill(leftovers)
        pytest.fail(
            f"The test left {len(leftovers)} process(es) running (now killed):\n"
            f"{listing}",
            pytrace=False,
        )
