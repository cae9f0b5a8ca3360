"""No ``kedro`` command changes a tracked file of a fresh clone.

kedro-telemetry (a dependency of kedro-viz) writes a project id into ``pyproject.toml``
unless the project records a choice: the committed ``.telemetry`` (``consent: false``)
is that choice. The check runs without the opt-out environment variables, as a user's
shell has none.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.checkout import copy_clean_checkout

OPT_OUT_VARIABLES = ("KEDRO_DISABLE_TELEMETRY", "DO_NOT_TRACK")


def _git(clone: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=clone, capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture
def fresh_clone(project_root: Path, tmp_path: Path) -> Path:
    clone = tmp_path / "clone"
    copy_clean_checkout(project_root, clone)
    _git(clone, "init", "-q")
    _git(clone, "add", "-A")
    _git(
        clone,
        "-c",
        "user.name=test",
        "-c",
        "user.email=test@example.com",
        "commit",
        "-qm",
        "clone",
    )
    return clone


def test_the_consent_file_is_committed_and_says_no(project_root: Path):
    tracked = _git(project_root, "ls-files", ".telemetry").split()
    assert tracked == [".telemetry"], "the telemetry choice must ship with the clone"
    assert (project_root / ".telemetry").read_text().strip() == "consent: false"


@pytest.mark.parametrize(
    "command",
    [
        ("registry", "list"),
        ("run", "--env", "test", "--pipelines", "data_processing"),
    ],
    ids=["registry-list", "run-data-processing"],
)
def test_kedro_commands_leave_tracked_files_unchanged(
    fresh_clone: Path, command: tuple[str, ...]
):
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in OPT_OUT_VARIABLES
    }
    environment.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-m", "kedro", *command],
        cwd=fresh_clone,
        env=environment,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    changed = _git(fresh_clone, "status", "--porcelain", "--untracked-files=no")
    assert changed == "", f"kedro {' '.join(command)} changed tracked files:\n{changed}"
