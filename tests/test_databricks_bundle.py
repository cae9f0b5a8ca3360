"""The Databricks Asset Bundle: its job validates against the real schema, offline.

``databricks.bundles.jobs.Job.from_dict`` (PyPI ``databricks-bundles``) holds the typed
job schema the Databricks CLI uses, and rejects unknown fields, so a misspelt key fails
here rather than at ``databricks bundle deploy``. The task parameters are parsed by the
packaged project's own ``kedro run`` command, as the wheel's entry point will parse them.
"""

from __future__ import annotations

import glob
import re
from pathlib import Path
from typing import Any

import pytest
import tomllib
import yaml

PIPELINE_ORDER = [
    "data_processing",
    "training",
    "evaluation",
    "deployment",
    "deployment_databricks_serving",
]
# The training chain, and scoring on its own (run on demand or on a schedule).
JOBS = ["llm_finetuning", "llm_finetuning_scoring"]
# Entries that are Unity Catalog tables on Databricks rather than files in the volume.
TABLE_ENTRIES = {"texts_to_score", "scored_texts"}
VARIABLE = re.compile(r"\$\{var\.([A-Za-z0-9_]+)\}")
# Where `databricks bundle deploy` puts the bundle's files, conf/ among them.
SYNCED_CONF = "${workspace.file_path}/conf"
# The newest supported runtime (constraints/databricks-18-lts-ml.txt).
DEFAULT_RUNTIME = "18.0.x-gpu-ml-scala2.13"


def _load_bundle(root: Path) -> tuple[dict[str, Any], dict[str, Path]]:
    """``databricks.yml`` merged with its includes, plus the file defining each job."""
    bundle = yaml.safe_load((root / "databricks.yml").read_text())
    job_files: dict[str, Path] = {}
    for pattern in bundle.get("include", []):
        for name in sorted(glob.glob(str(root / pattern))):
            included = yaml.safe_load(Path(name).read_text())
            for kind, resources in included.get("resources", {}).items():
                bundle.setdefault("resources", {}).setdefault(kind, {}).update(
                    resources
                )
                if kind == "jobs":
                    job_files.update(dict.fromkeys(resources, Path(name)))
    return bundle, job_files


def _resolve_variables(value: Any, defaults: dict[str, Any]) -> Any:
    """Replace ``${var.x}`` by the variable's default, as ``bundle validate`` does."""
    if isinstance(value, dict):
        return {k: _resolve_variables(v, defaults) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_variables(v, defaults) for v in value]
    if isinstance(value, str):
        whole = VARIABLE.fullmatch(value)
        if whole:  # a complex variable (a map) replaces the whole value
            return defaults[whole.group(1)]
        return VARIABLE.sub(lambda m: str(defaults[m.group(1)]), value)
    return value


@pytest.fixture(scope="module")
def bundle(project_root: Path) -> dict[str, Any]:
    return _load_bundle(project_root)[0]


@pytest.fixture(scope="module")
def job_files(project_root: Path) -> dict[str, Path]:
    return _load_bundle(project_root)[1]


@pytest.fixture(scope="module")
def defaults(bundle: dict[str, Any]) -> dict[str, Any]:
    return {name: spec["default"] for name, spec in bundle["variables"].items()}


@pytest.fixture(scope="module")
def job(bundle: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    jobs = bundle["resources"]["jobs"]
    assert sorted(jobs) == sorted(JOBS), f"expected jobs {JOBS}, found {list(jobs)}"
    return _resolve_variables(jobs["llm_finetuning"], defaults)


@pytest.fixture(scope="module")
def scoring_job(bundle: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    return _resolve_variables(
        bundle["resources"]["jobs"]["llm_finetuning_scoring"], defaults
    )


@pytest.fixture(scope="module")
def pyproject(project_root: Path) -> dict[str, Any]:
    return tomllib.loads((project_root / "pyproject.toml").read_text())


def test_every_variable_used_is_declared_with_a_default(
    bundle: dict[str, Any], project_root: Path
) -> None:
    declared = set(bundle["variables"])
    texts = [(project_root / "databricks.yml").read_text()] + [
        path.read_text() for path in sorted((project_root / "resources").glob("*.yml"))
    ]
    used = {name for text in texts for name in VARIABLE.findall(text)}
    assert used <= declared, f"undeclared bundle variables: {sorted(used - declared)}"
    missing_default = [n for n, s in bundle["variables"].items() if "default" not in s]
    assert not missing_default, f"variables without a default: {missing_default}"


def test_job_validates_against_the_bundle_schema(job: dict[str, Any]) -> None:
    from databricks.bundles.jobs import Job

    parsed = Job.from_dict(job)

    assert [task.task_key for task in parsed.tasks] == PIPELINE_ORDER


def test_the_schema_check_catches_a_misspelt_field(job: dict[str, Any]) -> None:
    """The validation above can fail: an unknown key is rejected."""
    from databricks.bundles.jobs import Job

    task = dict(job["tasks"][0])
    task["python_wheel_taskk"] = task.pop("python_wheel_task")
    with pytest.raises(ValueError, match="python_wheel_taskk"):
        Job.from_dict({**job, "tasks": [task]})


def test_tasks_run_in_dependency_order(job: dict[str, Any]) -> None:
    tasks = job["tasks"]
    assert "depends_on" not in tasks[0]
    for previous, task in zip(tasks, tasks[1:], strict=False):
        assert task["depends_on"] == [{"task_key": previous["task_key"]}], task[
            "task_key"
        ]


def test_tasks_are_the_registered_pipelines(job: dict[str, Any]) -> None:
    from kedro.framework.project import configure_project, pipelines

    configure_project("llm_finetuning")
    for task in job["tasks"]:
        arguments = task["python_wheel_task"]["parameters"]
        option = "--pipelines" if "--pipelines" in arguments else "--pipeline"
        names = arguments[arguments.index(option) + 1].split(",")
        # The deployment task picks its targets: deployment_mlflow, ...
        assert all(name.startswith(task["task_key"]) for name in names), names
        for name in names:
            assert name in pipelines, f"task {name!r} runs no registered pipeline"


def test_tasks_call_the_wheel_entry_point(
    job: dict[str, Any], pyproject: dict[str, Any]
) -> None:
    scripts = pyproject["project"]["scripts"]
    package = pyproject["tool"]["kedro"]["package_name"]
    for task in job["tasks"]:
        wheel_task = task["python_wheel_task"]
        assert wheel_task["package_name"] == pyproject["project"]["name"] == package
        assert scripts[wheel_task["entry_point"]] == f"{package}.__main__:main"


def test_tasks_use_the_wheel_the_bundle_builds(
    bundle: dict[str, Any],
    job: dict[str, Any],
    job_files: dict[str, Path],
    project_root: Path,
) -> None:
    (artifact,) = bundle["artifacts"].values()
    assert artifact["type"] == "whl"
    assert artifact["build"].startswith("kedro package")  # wheel + conf archive
    built = (project_root / artifact["path"] / "dist").resolve()
    for task in job["tasks"]:
        (library,) = task["libraries"]
        # Library paths are relative to the file that defines the job.
        wheel = (job_files["llm_finetuning"].parent / library["whl"]).resolve()
        assert wheel.parent == built and wheel.name.endswith(".whl"), library


def test_every_task_runs_on_the_gpu_job_cluster_set_by_variables(
    bundle: dict[str, Any], job: dict[str, Any]
) -> None:
    raw_clusters = bundle["resources"]["jobs"]["llm_finetuning"]["job_clusters"]
    (raw_cluster,) = raw_clusters
    for field in ("node_type_id", "spark_version", "spark_conf"):
        assert VARIABLE.fullmatch(str(raw_cluster["new_cluster"][field])), field
    (cluster,) = job["job_clusters"]
    assert "gpu" in cluster["new_cluster"]["spark_version"]
    assert cluster["new_cluster"]["data_security_mode"] == "SINGLE_USER"
    assert isinstance(cluster["new_cluster"]["spark_conf"], dict)
    assert {t["job_cluster_key"] for t in job["tasks"]} == {cluster["job_cluster_key"]}


def test_the_default_runtime_is_the_newest_supported_one(
    bundle: dict[str, Any], project_root: Path
) -> None:
    assert bundle["variables"]["spark_version"]["default"] == DEFAULT_RUNTIME
    assert (project_root / "constraints" / "databricks-18-lts-ml.txt").is_file()


def _synced(path: str, exclude: list[str]) -> bool:
    """Whether the bundle syncs ``path`` (relative): git-tracked and not excluded."""
    from fnmatch import fnmatch

    return not any(fnmatch(path, pattern) for pattern in exclude)


def test_the_bundle_syncs_the_conf_and_no_secrets(
    bundle: dict[str, Any], project_root: Path
) -> None:
    """``bundle deploy`` uploads conf/base and conf/databricks, never conf/local."""
    import subprocess

    exclude = bundle["sync"]["exclude"]
    tracked = subprocess.run(
        ["git", "ls-files", "conf"],
        cwd=project_root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for env in ("base", "databricks"):
        files = [p for p in tracked if p.startswith(f"conf/{env}/")]
        assert files, f"conf/{env} holds no tracked file"
        assert all(_synced(p, exclude) for p in files), (env, exclude)
    assert not _synced("conf/local/credentials.yml", exclude)
    assert not _synced("conf/base/credentials.yml", exclude)
    # git ignores them too, so the sync never sees them
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "conf/local/credentials.yml"],
        check=False,
        cwd=project_root,
    )
    assert ignored.returncode == 0


def test_every_task_reads_the_synced_conf(bundle: dict[str, Any]) -> None:
    """No task reads a conf archive copied by hand: all read the deployed conf/."""
    for name, job_spec in bundle["resources"]["jobs"].items():
        for task in job_spec["tasks"]:
            arguments = task["python_wheel_task"]["parameters"]
            assert arguments.count("--conf-source") == 1, (name, task["task_key"])
            source = arguments[arguments.index("--conf-source") + 1]
            assert source == SYNCED_CONF, (name, task["task_key"], source)


def test_task_parameters_are_accepted_by_the_packaged_kedro_run(
    job: dict[str, Any], project_root: Path, tmp_path: Path
) -> None:
    """Parse each task's parameters with the entry point's own click command."""
    from kedro.framework.cli.utils import find_run_command
    from kedro.framework.project import configure_project

    configure_project("llm_finetuning")
    run_command = find_run_command("llm_finetuning")
    assert (project_root / "conf" / "databricks").is_dir()

    for task in job["tasks"]:
        arguments = list(task["python_wheel_task"]["parameters"])
        position = arguments.index("--conf-source") + 1
        assert arguments[position] == SYNCED_CONF
        # The synced folder is this repository's conf/ (kedro checks that it exists).
        arguments[position] = str(project_root / "conf")

        context = run_command.make_context("llm-finetuning", arguments)

        assert context.params["env"] == "databricks"
        names = context.params["pipelines"] or [context.params["pipeline"]]
        assert all(name.startswith(task["task_key"]) for name in names), names
        runtime = context.params["params"]
        assert runtime["volume_root"] == VOLUME_ROOT
        assert runtime["mlflow_experiment"].startswith("/")


# The databricks env's conf: what the job's tasks run with.

VOLUME_ROOT = "/Volumes/main/llm_finetuning/llm_finetuning"


def _config_loader(project_root: Path, env: str, **runtime_params: Any) -> Any:
    from kedro.config import OmegaConfigLoader

    from llm_finetuning.settings import CONFIG_LOADER_ARGS

    return OmegaConfigLoader(
        conf_source=str(project_root / "conf"),
        env=env,
        runtime_params=runtime_params or None,
        **CONFIG_LOADER_ARGS,
    )


def _local_paths(entry: Any) -> list[str]:
    """Every ``filepath``/``path`` of a catalog entry, wrapped datasets included."""
    if not isinstance(entry, dict):
        return []
    found = [
        value
        for key, value in entry.items()
        if key in ("filepath", "path") and isinstance(value, str)
    ]
    for value in entry.values():
        found += _local_paths(value)
    return found


def _types(entry: dict[str, Any]) -> list[str]:
    nested = entry.get("dataset")
    return [entry["type"]] + (_types(nested) if isinstance(nested, dict) else [])


def test_every_file_the_catalog_writes_lives_in_the_volume(project_root: Path) -> None:
    base = _config_loader(project_root, "base")["catalog"]
    databricks = _config_loader(project_root, "databricks")["catalog"]

    for name, entry in base.items():
        paths = [p for p in _local_paths(entry) if p.startswith("data/")]
        if not paths:
            continue
        if name in TABLE_ENTRIES:
            assert databricks[name]["type"] == "databricks.ManagedTableDataset", name
            continue
        assert name in databricks, f"{name}: no databricks entry"
        mirrored = databricks[name]
        assert _types(mirrored) == _types(entry), name
        assert _local_paths(mirrored) == [f"{VOLUME_ROOT}/{p}" for p in paths], name
    for name, entry in databricks.items():
        for path in _local_paths(entry):
            assert path.startswith("/Volumes/"), (
                f"{name} writes outside a volume: {path}"
            )


def test_the_job_moves_every_path_to_its_own_volume(project_root: Path) -> None:
    other = "/Volumes/prod/ml/reviews"
    catalog = _config_loader(project_root, "databricks", volume_root=other)["catalog"]
    paths = [p for entry in catalog.values() for p in _local_paths(entry)]
    assert paths and all(p.startswith(other + "/") for p in paths), paths


def test_the_databricks_catalog_builds(project_root: Path) -> None:
    """Every dataset type resolves and accepts its arguments (nothing is read)."""
    from kedro.io import DataCatalog

    catalog = _config_loader(project_root, "databricks")["catalog"]
    built = DataCatalog.from_config(catalog)
    # Dataset factory patterns ("{target}.roc_curve_plot") resolve when matched.
    assert {name for name in catalog if "{" not in name} <= set(built.keys())
    assert built.get("azure_openai.roc_curve_plot") is not None


def test_the_databricks_parameters_pass_every_typed_check(project_root: Path) -> None:
    """Typos or stale keys in conf/databricks fail here, not on a GPU cluster."""
    from llm_finetuning.models import ModelParams
    from llm_finetuning.pipelines.data_processing.params import DataProcessingParams
    from llm_finetuning.pipelines.deployment.azure_openai.settings import (
        AzureOpenAIParams,
    )
    from llm_finetuning.pipelines.deployment.mlflow_serving import MlflowTargetParams
    from llm_finetuning.pipelines.evaluation.params import EvaluationParams
    from llm_finetuning.pipelines.training.params import TrainingParams

    params = _config_loader(project_root, "databricks")["parameters"]

    ModelParams.model_validate(params["model"])
    training = TrainingParams.model_validate(params["training"])
    assert training.precision == "bf16"
    assert training.distributed.strategy == "torch_distributor"
    assert training.distributed.use_gpu
    assert training.checkpoints.dir.startswith(VOLUME_ROOT + "/")
    DataProcessingParams.model_validate(params["data_processing"])
    EvaluationParams.model_validate(params["evaluation"])
    block = params["deployment"]
    mlflow_target = MlflowTargetParams.model_validate(block["mlflow"])
    assert len(mlflow_target.registered_model_name.split(".")) == 3  # Unity Catalog
    AzureOpenAIParams.model_validate(block["azure_openai"])


def test_the_deployment_task_registers_the_model_in_the_bundle_schema(
    job: dict[str, Any], defaults: dict[str, Any]
) -> None:
    (task,) = [t for t in job["tasks"] if t["task_key"] == "deployment"]
    arguments = task["python_wheel_task"]["parameters"]
    runtime = dict(
        item.split("=", 1)
        for item in arguments[arguments.index("--params") + 1].split(",")
    )
    name = runtime["deployment.mlflow.registered_model_name"]
    assert name == ".".join(
        [defaults["catalog"], defaults["schema"], defaults["registered_model"]]
    )


def test_the_notebooks_are_valid_python_in_the_formats_their_tools_read(
    project_root: Path,
) -> None:
    import ast

    databricks = (
        project_root / "notebooks" / "databricks_run_pipelines.py"
    ).read_text()
    assert databricks.startswith("# Databricks notebook source\n")
    assert "# COMMAND ----------" in databricks
    ast.parse(databricks)
    assert (
        'env="databricks"' in databricks and "conf-llm_finetuning.tar.gz" in databricks
    )
    exploration = (project_root / "notebooks" / "explore_reviews.py").read_text()
    assert exploration.count("# %%") > 5
    ast.parse(exploration)


# The scoring job: one task on a Unity Catalog table.


def test_the_scoring_job_validates_against_the_bundle_schema(
    scoring_job: dict[str, Any],
) -> None:
    from databricks.bundles.jobs import Job

    parsed = Job.from_dict(scoring_job)
    assert [task.task_key for task in parsed.tasks] == ["scoring"]


def test_the_scoring_task_runs_the_scoring_pipeline_on_the_bundle_tables(
    scoring_job: dict[str, Any],
    defaults: dict[str, Any],
    job_files: dict[str, Path],
    project_root: Path,
    tmp_path: Path,
) -> None:
    from kedro.framework.cli.utils import find_run_command
    from kedro.framework.project import configure_project

    from llm_finetuning.pipelines.scoring import create_pipeline

    configure_project("llm_finetuning")
    (task,) = scoring_job["tasks"]
    arguments = list(task["python_wheel_task"]["parameters"])
    position = arguments.index("--conf-source") + 1
    arguments[position] = str(tmp_path / "conf-llm_finetuning.tar.gz")
    Path(arguments[position]).touch()
    context = find_run_command("llm_finetuning").make_context(
        "llm-finetuning", arguments
    )

    assert context.params["env"] == "databricks"
    assert "scoring" in str(context.params["pipelines"])
    assert create_pipeline().inputs() >= {"texts_to_score", "fine_tuned_model"}
    runtime = context.params["params"]
    assert runtime["scoring_catalog"] == defaults["catalog"]
    assert runtime["scoring_schema"] == defaults["schema"]
    assert runtime["scoring_input_table"] == defaults["scoring_input_table"]
    (library,) = task["libraries"]
    wheel = (job_files["llm_finetuning_scoring"].parent / library["whl"]).resolve()
    assert wheel.parent == (project_root / "dist").resolve()

    # The databricks catalog reads and writes those tables, with the Spark engine.
    loader = _config_loader(project_root, "databricks", **runtime)
    catalog = loader["catalog"]
    for name, table in (
        ("texts_to_score", runtime["scoring_input_table"]),
        ("scored_texts", runtime["scoring_output_table"]),
    ):
        entry = catalog[name]
        assert entry["type"] == "databricks.ManagedTableDataset"
        assert (entry["catalog"], entry["database"], entry["table"]) == (
            defaults["catalog"],
            defaults["schema"],
            table,
        )
    assert catalog["scored_texts"]["write_mode"] == "overwrite"
    assert loader["parameters"]["scoring"]["engine"] == "spark"
