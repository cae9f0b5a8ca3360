"""The wheel installs on every supported Databricks runtime without changing what it ships.

``constraints/databricks-<runtime>.txt`` holds the versions a runtime ships of the
wheel's dependencies (sources at the top of each file). The slow test builds the wheel,
makes a fresh virtual environment (no packages but pip) and asks pip, with the
constraints and the runtime's Python, what it *would* install (``--dry-run --report``:
metadata only, nothing built, nothing installed). It fails if pip cannot resolve, or
resolves a pinned package to another version than the runtime's.

The fast tests check that each constraints file accounts for every dependency of the
wheel (pinned, or named as unconstrained with the reason) and that the bundle's default
runtime is one of those with a constraints file.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import tomllib
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = sorted((PROJECT_ROOT / "constraints").glob("databricks-*.txt"))
# Wheels a Databricks driver (Ubuntu, x86_64) can take; pip does not widen these itself.
PLATFORMS = (
    "manylinux_2_35_x86_64",
    "manylinux_2_34_x86_64",
    "manylinux_2_31_x86_64",
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_24_x86_64",
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
    "linux_x86_64",
)
# The environment pip keeps: the index, proxies and certificates of CI; never local
# find-links or this machine's pip configuration (PIP_CONFIG_FILE is /dev/null).
PASSED_ENV = (
    "PIP_INDEX_URL",
    "PIP_CERT",
    "PIP_DEFAULT_TIMEOUT",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
)


def canonical(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_dependencies() -> list[str]:
    """The project names in pyproject.toml's ``dependencies``."""
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    return [
        canonical(re.match(r"[A-Za-z0-9_.-]+", spec).group(0))
        for spec in project["dependencies"]
    ]


def read_constraints(path: Path) -> tuple[dict[str, str], set[str], str]:
    """``(pins, unconstrained names, python version)`` of a constraints file.

    Pins are ``name==version`` lines; ``# unconstrained ...: a, b,`` comment lines (and
    their ``#   c, d`` continuations) name the dependencies left open; ``# python: X.Y``
    is the runtime's Python.
    """
    pins: dict[str, str] = {}
    unconstrained: set[str] = set()
    python = ""
    in_list = False
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped:
            in_list = False
            continue
        if stripped.startswith("#"):
            comment = stripped.lstrip("#")
            if comment.strip().startswith("python:"):
                python = comment.split(":", 1)[1].strip()
                in_list = False
            elif comment.strip().startswith("unconstrained"):
                in_list = True
                unconstrained.update(_names(comment.split(":", 1)[1]))
            elif in_list and comment.startswith("   "):
                unconstrained.update(_names(comment))
            else:
                in_list = False
            continue
        in_list = False
        name, _, version = stripped.partition("==")
        assert version, f"{path.name}: {stripped!r} is not a name==version pin"
        pins[canonical(name.strip())] = version.strip()
    return pins, unconstrained, python


def _names(text: str) -> set[str]:
    """Project names of a comma-separated list (a trailing ``(reason)`` dropped)."""
    text = text.split("(", 1)[0]
    return {canonical(part.strip()) for part in text.split(",") if part.strip()}


def test_there_are_constraints_files() -> None:
    names = {path.name for path in CONSTRAINTS}
    assert "databricks-18-lts-ml.txt" in names, names


@pytest.mark.parametrize("path", CONSTRAINTS, ids=lambda p: p.stem)
def test_constraints_account_for_every_dependency(path: Path) -> None:
    """Every dependency is pinned or listed as unconstrained; sources are cited."""
    pins, unconstrained, python = read_constraints(path)
    text = path.read_text()
    assert re.search(r"https://docs\.databricks\.com/\S+", text), (
        f"{path.name} cites no Databricks source"
    )
    assert re.fullmatch(r"3\.\d+(\.\d+)?", python), f"{path.name}: no '# python: 3.X'"
    missing = [
        name
        for name in wheel_dependencies()
        if name not in pins and name not in unconstrained
    ]
    assert not missing, (
        f"{path.name} neither pins nor lists as unconstrained: {missing}"
    )
    both = sorted(set(pins) & unconstrained)
    assert not both, f"{path.name} both pins and leaves open: {both}"


def test_bundle_default_runtime_has_constraints() -> None:
    """The bundle's default ``spark_version`` is the newest supported runtime."""
    bundle = yaml.safe_load((PROJECT_ROOT / "databricks.yml").read_text())
    default = bundle["variables"]["spark_version"]["default"]
    assert re.fullmatch(r"18\.\d+\.x-gpu-ml-scala2\.13", default), default
    assert (PROJECT_ROOT / "constraints" / "databricks-18-lts-ml.txt").is_file()


# --- the dry-run install -----------------------------------------------------------


def _index_reachable() -> str | None:
    """``None`` if the package index answers a TCP connection, else why not."""
    url = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple")
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return None
    host, port = parsed.hostname or "pypi.org", parsed.port or 443
    try:
        with socket.create_connection((host, port), timeout=5):
            return None
    except OSError as error:
        return f"the package index {host}:{port} is unreachable ({error})"


@pytest.fixture(scope="module")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built without dependencies and without build isolation."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "--wheel-dir",
            str(out),
            str(PROJECT_ROOT),
        ],
        check=True,
        timeout=300,
        env={**os.environ, "PIP_CONFIG_FILE": os.devnull},
    )
    (wheel,) = out.glob("llm_finetuning-*.whl")
    return wheel


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtual environment holding nothing but pip; its Python."""
    folder = tmp_path_factory.mktemp("venv")
    subprocess.run(
        [sys.executable, "-m", "venv", "--clear", str(folder)], check=True, timeout=300
    )
    return folder / "bin" / "python"


def dry_run(
    python: Path, wheel: Path, constraints: Path, python_version: str, report: Path
) -> subprocess.CompletedProcess[str]:
    """``pip install --dry-run --report`` of the wheel for the runtime's Python."""
    env = {key: os.environ[key] for key in PASSED_ENV if key in os.environ}
    env.update(
        PATH=os.environ.get("PATH", "/usr/bin:/bin"),
        HOME=os.environ.get("HOME", str(report.parent)),
        PIP_CONFIG_FILE=os.devnull,
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_INPUT="1",
    )
    command = [
        str(python),
        "-m",
        "pip",
        "install",
        "--dry-run",
        "--quiet",
        "--report",
        str(report),
        "--only-binary=:all:",
        # Platform and Python options need --target; with --dry-run nothing is written.
        "--target",
        str(report.parent / "target"),
        "--python-version",
        python_version,
        "--implementation",
        "cp",
        *[f"--platform={platform}" for platform in PLATFORMS],
        "--constraint",
        str(constraints),
        str(wheel),
    ]
    return subprocess.run(
        command, check=False, capture_output=True, text=True, timeout=1200, env=env
    )


@pytest.mark.slow
@pytest.mark.runtimes
@pytest.mark.timeout(1500)
@pytest.mark.parametrize("constraints", CONSTRAINTS, ids=lambda p: p.stem)
def test_wheel_resolves_to_the_runtime_versions(
    constraints: Path, built_wheel: Path, fresh_venv: Path, tmp_path: Path
) -> None:
    unreachable = _index_reachable()
    if unreachable:
        pytest.skip(unreachable)
    pins, _, python_version = read_constraints(constraints)
    report_path = tmp_path / "report.json"
    result = dry_run(fresh_venv, built_wheel, constraints, python_version, report_path)
    assert result.returncode == 0, (
        f"pip cannot install the wheel on {constraints.stem} "
        f"(Python {python_version}):\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
    )
    report = json.loads(report_path.read_text())
    resolved = {
        canonical(item["metadata"]["name"]): item["metadata"]["version"]
        for item in report["install"]
    }
    assert "llm-finetuning" in resolved, sorted(resolved)
    changed = {
        name: f"runtime {pin}, pip {resolved[name]}"
        for name, pin in pins.items()
        if name in resolved and resolved[name] != pin
    }
    assert not changed, f"pip would change what {constraints.stem} ships: {changed}"
    for dependency in wheel_dependencies():
        assert dependency in resolved, f"{dependency} not resolved"
