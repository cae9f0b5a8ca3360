"""The CLI starts fast: building and listing the pipelines imports no heavy library.

torch, transformers, MLflow and the rest load where the nodes run. Each check runs in
a fresh interpreter, since this test process has imported them all already.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HEAVY = (
    "torch",
    "transformers",
    "mlflow",
    "sklearn",
    "datasets",
    "matplotlib",
    "openai",
    "azure",
    "pyspark",
    "kedro_datasets.huggingface",
)

# Run as ``python -c BUILD_EVERY_PIPELINE <project root> <heavy module>...``.
BUILD_EVERY_PIPELINE = """
import json, sys, typing
from pathlib import Path
from kedro.framework.startup import bootstrap_project
root, heavy = sys.argv[1], tuple(sys.argv[2:])
bootstrap_project(Path(root))
from kedro.framework.project import pipelines
built = {name: pipelines[name] for name in pipelines}
# Kedro validates typed params from the node functions' hints: they must resolve.
unresolved = []
for pipeline in built.values():
    for node in pipeline.nodes:
        try:
            typing.get_type_hints(node.func)
        except Exception as error:
            unresolved.append(f"{node.name}: {error!r}")
loaded = sorted(
    name for name in sys.modules
    if any(name == h or name.startswith(h + ".") for h in heavy)
)
print(json.dumps({"pipelines": sorted(built), "loaded": loaded,
                  "unresolved": unresolved}))
"""


def _environment() -> dict[str, str]:
    return {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1"}


def test_building_every_pipeline_imports_no_heavy_library(project_root: Path):
    result = subprocess.run(
        [sys.executable, "-c", BUILD_EVERY_PIPELINE, str(project_root), *HEAVY],
        cwd=project_root,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"__default__", "data_processing", "training", "evaluation"} <= set(
        report["pipelines"]
    )
    offenders = sorted({name.split(".")[0] for name in report["loaded"]})
    assert not report["loaded"], (
        f"Building the pipelines imported {offenders}: import them inside the node "
        f"functions. Modules loaded: {report['loaded'][:20]}"
    )
    assert not report["unresolved"], report["unresolved"]


def test_registry_list_works(project_root: Path):
    kedro = Path(sys.executable).with_name("kedro")
    result = subprocess.run(
        [str(kedro), "registry", "list"],
        check=False,
        cwd=project_root,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for name in ("__default__", "data_processing", "training", "evaluation"):
        assert f"- {name}" in result.stdout
    # Piped, the log is plain from its first line: not wrapped, no colour codes, and
    # without the warning kedro-mlflow's model class makes MLflow print.
    log = result.stdout + result.stderr
    assert "\x1b[" not in log, log[:2000]
    assert "Add type hints" not in log, log[:2000]
    assert "Warning" not in log, log[:2000]
    first = result.stdout.splitlines()[0]
    assert first.endswith("environment variable accordingly."), first
