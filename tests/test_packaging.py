"""The packaged project runs as a Databricks job would run it.

``kedro package`` builds the wheel and the conf archive; the wheel goes into a fresh
virtual environment; the demo pipelines run from a working directory that holds
nothing but what they write, configured only by the archive.

The fresh environment holds the project's wheel alone (``pip install --no-deps``): its
third-party dependencies come from the development environment through a ``.pth``
file, because installing torch, transformers, MLflow and the rest from PyPI takes
minutes. A ``.pth`` path entry puts the directory on ``sys.path`` without running the
``.pth`` files inside it, so the development environment's editable install of this
project stays out: the test checks that ``llm_finetuning`` is imported from the wheel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.checkout import copy_clean_checkout

PACKAGE = "llm_finetuning"
# Cut short: the test is about packaging, not about learning or tight intervals.
QUICK_TRAINING = "training.max_steps=4"
QUICK_EVALUATION = "evaluation.scoring.n_bootstrap=100"
QUICK_DEPLOYMENT = "deployment.mlflow.sample_size=20"
# The Databricks python_wheel_task calls the entry point like this: sys.argv holds the
# package name and the task's parameters.
WHEEL_TASK = """
import sys
from importlib.metadata import entry_points

import llm_finetuning

print("imported from", llm_finetuning.__file__, flush=True)
(entry_point,) = entry_points(group="console_scripts", name="llm-finetuning")
sys.argv = ["llm_finetuning", *sys.argv[1:]]
entry_point.load()()
"""


def _run(command: list[str], cwd: Path, timeout: int = 300) -> str:
    """Run ``command`` as a job would: no virtualenv activation, plain environment."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("VIRTUAL_ENV", "PYTHONPATH", "KEDRO_LOGGING_CONFIG")
    }
    # The fresh venv borrows its third-party packages from the development environment
    # (the .pth below), so their console scripts (uvicorn, which `mlflow models serve`
    # execs) are found where a real install would put them: on PATH.
    dev_scripts = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([env.get("PATH", ""), dev_scripts])
    env.update(
        KEDRO_DISABLE_TELEMETRY="1",
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
    )
    result = subprocess.run(
        command,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{command} failed:\n{output[-6000:]}"
    return output


@pytest.fixture(scope="module")
def dist(project_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``kedro package`` run on a clean copy of the project: its ``dist/`` folder.

    A copy, so that stale files in the checkout's ``build/`` (which ``kedro viz build``
    also writes) cannot end up in the wheel.
    """
    copy = tmp_path_factory.mktemp("project")
    copy_clean_checkout(project_root, copy)
    _run([sys.executable, "-m", "kedro", "package"], cwd=copy)
    return copy / "dist"


@pytest.fixture(scope="module")
def wheel(dist: Path) -> Path:
    (built,) = dist.glob(f"{PACKAGE}-*.whl")
    return built


@pytest.fixture(scope="module")
def conf_archive(dist: Path) -> Path:
    return dist / f"conf-{PACKAGE}.tar.gz"


@pytest.fixture(scope="module")
def fresh_python(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtual environment with the wheel installed; see the module docstring."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", "--clear", str(venv)],
        check=True,
    )
    python = venv / "bin" / "python"
    _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install"]
        + ["--no-deps", "--no-index", "--quiet", str(wheel)],
        cwd=venv,
    )
    site_packages = Path(
        subprocess.run(
            [
                str(python),
                "-c",
                "import sysconfig; print(sysconfig.get_path('purelib'))",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    development = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (site_packages / "development_dependencies.pth").write_text(
        "\n".join(sorted(development)) + "\n"
    )
    return python


def test_the_wheel_ships_the_code_the_demo_data_and_the_entry_point(
    wheel: Path,
) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (entry_points,) = [n for n in names if n.endswith("entry_points.txt")]
        declared = archive.read(entry_points).decode()
    for required in (
        f"{PACKAGE}/__main__.py",
        f"{PACKAGE}/settings.py",
        f"{PACKAGE}/pipeline_registry.py",
        f"{PACKAGE}/distributed.py",
        f"{PACKAGE}/demo_data/train.jsonl",
        f"{PACKAGE}/demo_data/tokenizer/tokenizer.json",
    ):
        assert required in names, f"{required} is not in {wheel.name}"
    assert "llm-finetuning = llm_finetuning.__main__:main" in declared
    assert not any(name.startswith(("conf/", "tests/", "data/")) for name in names)


def test_the_conf_archive_holds_every_env_but_no_local_secrets(
    conf_archive: Path,
) -> None:
    with tarfile.open(conf_archive) as archive:
        names = set(archive.getnames())
    for env in ("base", "demo", "test", "databricks"):
        assert f"conf/{env}/parameters_training.yml" in names, env
    assert "conf/databricks/mlflow.yml" in names
    assert not [n for n in names if n.startswith("conf/local/") and n.endswith(".yml")]


@pytest.mark.slow
def test_the_packaged_demo_pipelines_run_from_the_conf_archive(
    fresh_python: Path, conf_archive: Path, tmp_path: Path
) -> None:
    workdir = tmp_path / "job"
    workdir.mkdir()
    conf = ["--env", "demo", "--conf-source", str(conf_archive)]

    # As the issue spells it: the package's __main__.
    log = _run(
        [str(fresh_python), "-m", PACKAGE, *conf, "--pipelines", "data_processing"],
        cwd=workdir,
    )
    # Outside a project folder the logging is plain (rich breaks Databricks jobs).
    assert "default_logging.yml' as logging configuration" in log
    assert "╭" not in log and "│" not in log

    # As a python_wheel_task calls it: the entry point, one task per pipeline.
    wheel_task = [str(fresh_python), "-c", WHEEL_TASK]
    logs = [log]
    log = _run(
        [*wheel_task, "--pipelines", "training", *conf, "--params", QUICK_TRAINING],
        cwd=workdir,
    )
    logs.append(log)
    imported_from = log.split("imported from ", 1)[1].splitlines()[0]
    assert imported_from.startswith(str(fresh_python.parent.parent)), imported_from
    logs.append(
        _run(
            [*wheel_task, "--pipelines", "evaluation", *conf]
            + ["--params", QUICK_EVALUATION],
            cwd=workdir,
        )
    )
    logs.append(
        _run(
            [
                *wheel_task,
                *("--pipelines", "deployment_mlflow,deployment_azure_openai_dry_run"),
                *conf,
                *("--params", QUICK_DEPLOYMENT),
            ],
            cwd=workdir,
        )
    )
    # A job's driver log is a pipe: no progress bar redraws, no colour or cursor codes.
    for log in logs:
        assert "\r" not in log and "\x1b" not in log, log[-3000:]

    data = workdir / "data"
    quality = json.loads((data / "08_reporting/data_quality_report.json").read_text())
    assert quality, "empty data quality report"
    assert (data / "05_model_input/tokenized_reviews").is_dir()
    model = data / "06_models/fine_tuned_model"
    assert (model / "model.safetensors").is_file()
    training = json.loads((data / "08_reporting/training_metrics.json").read_text())
    assert training["global_step"] == 4
    metrics: dict[str, Any] = json.loads(
        (data / "08_reporting/evaluation_metrics.json").read_text()
    )
    assert metrics
    registered = json.loads(
        (data / "06_models/deployment/mlflow_registered_model.json").read_text()
    )
    assert registered["model_uri"].startswith("models:/")
    served = json.loads(
        (data / "08_reporting/deployment/mlflow_served_vs_offline.json").read_text()
    )
    assert served["served_equals_offline"], served
    assert (workdir / "mlflow.db").is_file()  # tracked in the job's working directory
