"""Real ``kedro`` processes for fault-injection tests, and the moments to kill them.

A test starts ``kedro`` as a child in its own process group (:func:`start_kedro`), lets
it reach the moment that matters and kills it from outside. Polling the disk for that
moment races a tiny test model, which can finish before the poll sees it; instead the
child can be started through this file as a script with a *stop point*: at that moment
the child stops itself with SIGSTOP (``--stop-after-checkpoint STEP``: once the
Trainer's checkpoint of ``STEP`` or later is on disk; ``--stop-while-saving NAME``:
once the weights are written into the scratch folder of the catalog's save of
``NAME``, before the tokenizer and metadata; ``--stop-after-chunk INDEX``: once the
scoring pipeline's chunk ``INDEX`` or a later one is written), and the test kills the
stopped process.
Nothing else about the run changes.

    python tests/kedro_process.py --stop-after-checkpoint 12 -- run --env test ...
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import psutil

PROJECT_ROOT = Path(__file__).resolve().parents[1]
KEDRO_TIMEOUT_S = 420


def make_project(destination: Path) -> Path:
    """A Kedro project folder that runs this package with the repository's conf.

    Its ``src`` is empty: the package is imported from the editable install, so the
    code run is the repository's.
    """
    destination.mkdir(parents=True, exist_ok=True)
    shutil.copy2(PROJECT_ROOT / "pyproject.toml", destination / "pyproject.toml")
    (destination / "src").mkdir(exist_ok=True)
    return destination


def kedro_env() -> dict[str, str]:
    """The child's environment: offline, one thread, the venv's scripts on PATH."""
    env = dict(os.environ)
    env.update(
        KEDRO_DISABLE_TELEMETRY="1",
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


def kedro_command(*args: str, stop: Sequence[str] = ()) -> list[str]:
    """``kedro <args>`` through this interpreter, with an optional stop point."""
    if stop:
        return [sys.executable, __file__, *stop, "--", *args]
    return [sys.executable, "-m", "kedro", *args]


@contextmanager
def start_kedro(
    project: Path, *args: str, stop: Sequence[str] = (), log_name: str = "kedro"
) -> Iterator[subprocess.Popen]:
    """Start ``kedro <args>`` in ``project``; its whole process group dies on exit."""
    log = (project / f"{log_name}.log").open("ab")
    process = subprocess.Popen(
        [*kedro_command(*args, stop=stop), "--conf-source", str(PROJECT_ROOT / "conf")],
        cwd=project,
        env=kedro_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        kill_group(process)
        log.close()


def kill_group(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to the process group of ``process`` and reap the leader."""
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
    if sig == signal.SIGKILL:
        process.wait(timeout=30)


def run_kedro(project: Path, *args: str, log_name: str = "kedro") -> str:
    """Run ``kedro <args>`` to the end; its log, or an AssertionError with the log."""
    with start_kedro(project, *args, log_name=log_name) as process:
        try:
            code = process.wait(timeout=KEDRO_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            code = None
    log = (project / f"{log_name}.log").read_text(errors="replace")
    assert code == 0, f"kedro {' '.join(args)} ended with {code}:\n{log[-6000:]}"
    return log


def wait_until_stopped(process: subprocess.Popen, project: Path, log_name: str) -> None:
    """Wait until the child reached its stop point (SIGSTOP), or fail with its log."""
    deadline = time.monotonic() + KEDRO_TIMEOUT_S
    child = psutil.Process(process.pid)
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if child.status() == psutil.STATUS_STOPPED:
            return
        time.sleep(0.1)
    log = (project / f"{log_name}.log").read_text(errors="replace")
    raise AssertionError(
        f"kedro never reached its stop point (exit code {process.poll()}):\n"
        f"{log[-6000:]}"
    )


def _stop_self() -> None:
    os.kill(os.getpid(), signal.SIGSTOP)


def _stop_after_checkpoint(step: int) -> None:
    from transformers import Trainer

    save_checkpoint = Trainer._save_checkpoint

    def save_then_stop(self, model, trial):
        save_checkpoint(self, model, trial)
        if self.state.global_step >= step:
            _stop_self()

    Trainer._save_checkpoint = save_then_stop


def _stop_while_saving(dataset_name: str) -> None:
    from transformers import PreTrainedModel

    save_pretrained = PreTrainedModel.save_pretrained

    def save_then_stop(self, save_directory, *args, **kwargs):
        result = save_pretrained(self, save_directory, *args, **kwargs)
        if Path(save_directory).name.startswith(f".{dataset_name}.tmp-"):
            _stop_self()
        return result

    PreTrainedModel.save_pretrained = save_then_stop


def _stop_after_chunk(index: int) -> None:
    from llm_finetuning.datasets.scored_table import ScoringJob

    write = ScoringJob.write

    def write_then_stop(self, chunk_index, table, stats):
        write(self, chunk_index, table, stats)
        if chunk_index >= index:
            _stop_self()

    ScoringJob.write = write_then_stop


def main(argv: list[str]) -> None:
    """``--stop-after-checkpoint STEP | --stop-while-saving NAME |
    --stop-after-chunk INDEX -- <kedro args>``."""
    split = argv.index("--")
    point, value = argv[:split]
    if point == "--stop-after-checkpoint":
        _stop_after_checkpoint(int(value))
    elif point == "--stop-while-saving":
        _stop_while_saving(value)
    elif point == "--stop-after-chunk":
        _stop_after_chunk(int(value))
    else:
        raise SystemExit(f"unknown stop point {point}")
    from kedro.framework.cli import main as kedro_main

    sys.argv = ["kedro", *argv[split + 1 :]]
    kedro_main()


if __name__ == "__main__":
    # Run as a script, tests/ is first on sys.path, and tests/datasets would shadow
    # the `datasets` library.
    sys.path[:] = [
        p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent
    ]
    main(sys.argv[1:])
