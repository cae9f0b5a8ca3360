"""The model server ends with ``kedro run``, however that run ends.

A real ``kedro run`` of target A (``--pipelines deployment_mlflow``, test env) is started in its
own process group and killed from outside while its ``mlflow models serve`` answers
``/ping``: with SIGKILL (nothing in the run can react) and with SIGTERM. Afterwards no
process of the server tree may be left and its port must be closed.

To kill at the right moment, the test freezes the run (SIGSTOP) as soon as the port
answers, checks the server still answers (so it was running when the run died), then
sends the signal and SIGCONT. The model comes from one run of data_processing,
training and evaluation per module (about 20 s); each kill test takes about 25 s.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from llm_finetuning.pipelines.deployment.mlflow_serving import free_port, port_is_open
from tests.kedro_process import kedro_env

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="needs Linux's /proc and prctl"
    ),
]

PROJECT_ROOT = Path(__file__).resolve().parents[3]
CONF = PROJECT_ROOT / "conf"
RUN_TIMEOUT_S = 300
PING_TIMEOUT_S = 240


def kedro_command(*arguments: str) -> list[str]:
    """``kedro run`` of this package (``python -m llm_finetuning``) with the repo's conf."""
    return [
        sys.executable,
        "-m",
        "llm_finetuning",
        "--env",
        "test",
        "--conf-source",
        str(CONF),
        *arguments,
    ]


@pytest.fixture(scope="module")
def trained_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory holding a trained and evaluated model (data/, mlflow.db)."""
    workdir = tmp_path_factory.mktemp("serving_lifetime")
    result = subprocess.run(
        kedro_command("--pipelines", "data_processing,training,evaluation"),
        cwd=workdir,
        env=kedro_env(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    return workdir


def ping(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def running(process: psutil.Process) -> bool:
    """Alive and not a zombie (a zombie has ended; it waits to be collected)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def server_processes(port: int, kedro_pid: int) -> list[psutil.Process]:
    """Every process in the table that belongs to this run's server tree."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        command = " ".join(process.info["cmdline"] or [])
        serves_port = str(port) in command and (
            "uvicorn" in command or "models serve" in command
        )
        supervises_run = "processes.py" in command and (
            f"--parent-pid {kedro_pid}" in command
        )
        if (serves_port or supervises_run) and running(process):
            found.append(process)
    return found


def describe(processes: list[psutil.Process]) -> str:
    lines = []
    for process in processes:
        try:
            lines.append(f"{process.pid}: {' '.join(process.cmdline())}")
        except psutil.NoSuchProcess:
            pass
    return "\n".join(lines)


def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


@pytest.fixture
def serving_run(trained_workdir: Path) -> Iterator[tuple[subprocess.Popen, int, Path]]:
    """``kedro run`` of target A on a fixed free port, frozen once its server answers.

    Yields (the run, the port, its log). The run's group is SIGKILLed afterwards in any
    case, and anything still serving the port too, so no test leaves a server behind.
    """
    port = free_port()
    log_path = trained_workdir / f"deployment-{port}.log"
    with log_path.open("w") as log:
        run = subprocess.Popen(
            kedro_command(
                "--pipelines",
                "deployment_mlflow",
                "--params",
                f"deployment.mlflow.serve.port={port}",
            ),
            cwd=trained_workdir,
            env=kedro_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + PING_TIMEOUT_S
        while not ping(port):
            if run.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"the server never answered /ping on port {port}:\n"
                    f"{log_path.read_text()[-6000:]}"
                )
            time.sleep(0.1)
        # Freeze the run so that it cannot stop its server before the signal.
        os.kill(run.pid, signal.SIGSTOP)
        assert ping(port), "the server stopped before the run could be frozen"
        yield run, port, log_path
    finally:
        try:
            os.killpg(run.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        run.wait(30)
        for process in server_processes(port, run.pid):
            process.kill()


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_killing_kedro_during_serving_leaves_no_server(serving_run, how):
    run, port, log_path = serving_run
    tree = psutil.Process(run.pid).children(recursive=True)
    assert any("uvicorn" in " ".join(p.cmdline()) for p in tree), describe(tree)

    os.kill(run.pid, getattr(signal, how))
    os.kill(
        run.pid, signal.SIGCONT
    )  # a stopped process only acts on SIGTERM once resumed
    try:
        run.wait(90)
    except subprocess.TimeoutExpired:
        pytest.fail(f"kedro did not end after {how}:\n{log_path.read_text()[-4000:]}")

    assert wait_until(lambda: not any(running(p) for p in tree), 60), (
        f"server processes outlived kedro ({how}):\n"
        f"{describe([p for p in tree if running(p)])}"
    )
    leftovers = server_processes(port, run.pid)
    assert not leftovers, describe(leftovers)
    assert not port_is_open("127.0.0.1", port) and not ping(port)
