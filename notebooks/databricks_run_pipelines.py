# Databricks notebook source
# MAGIC %md
# MAGIC # Fine-tune and deploy on Databricks: the packaged project, env `databricks`
# MAGIC
# MAGIC Runs the project's pipelines from its wheel and conf archive, the same ones the
# MAGIC bundle's job runs as `python_wheel_task`s (see `docs/databricks.md`). Use it for
# MAGIC a first run by hand, to re-run one pipeline, or to look at the outputs.
# MAGIC
# MAGIC Before: `kedro package` on your machine, then copy both files from `dist/` into
# MAGIC the volume (`databricks fs cp dist/<file> dbfs:/Volumes/<catalog>/<schema>/<volume>/...`):
# MAGIC the wheel to `.../wheels/`, the conf archive to `.../conf/`.
# MAGIC
# MAGIC Cluster: a GPU ML runtime (e.g. 16.4 LTS ML GPU), dedicated (single user) access
# MAGIC mode, so that `/Volumes` and TorchDistributor work.

# COMMAND ----------

dbutils.widgets.text("catalog", "main", "Unity Catalog catalog")
dbutils.widgets.text("schema", "llm_finetuning", "Schema")
dbutils.widgets.text("volume", "llm_finetuning", "Volume")
dbutils.widgets.text("wheel", "llm_finetuning-0.1.0-py3-none-any.whl", "Wheel file in <volume>/wheels")
dbutils.widgets.text(
    "pipelines", "data_processing,training,evaluation,deployment", "Pipelines, in order"
)
dbutils.widgets.text("mlflow_experiment", "/Shared/llm_finetuning", "MLflow experiment")
dbutils.widgets.text("registered_model", "llm_finetuning_text_classifier", "Model name in UC")

volume_root = "/Volumes/{}/{}/{}".format(
    dbutils.widgets.get("catalog"), dbutils.widgets.get("schema"), dbutils.widgets.get("volume")
)
wheel = f"{volume_root}/wheels/{dbutils.widgets.get('wheel')}"
print("volume:", volume_root)
print("wheel:", wheel)

# COMMAND ----------

# MAGIC %md
# MAGIC ## Install the wheel
# MAGIC Its dependencies come from PyPI (kedro, kedro-datasets, kedro-mlflow, and newer
# MAGIC transformers/MLflow than the runtime ships); then Python restarts to load them.
# MAGIC `$wheel` is the Python variable above; if your runtime does not expand it, paste
# MAGIC the path printed above instead.

# COMMAND ----------

# MAGIC %pip install --quiet "$wheel"

# COMMAND ----------

dbutils.library.restartPython()

# COMMAND ----------

# MAGIC %md
# MAGIC ## Run the pipelines
# MAGIC Each pipeline runs in its own Kedro session, as each job task does, and hands its
# MAGIC outputs to the next through the catalog: every file lives in the volume
# MAGIC (`conf/databricks/catalog_*.yml`), runs go to the MLflow experiment and the
# MAGIC model to the Unity Catalog registry (`conf/databricks/mlflow.yml`).

# COMMAND ----------

import os

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from kedro.framework.project import configure_project
from kedro.framework.session import KedroSession

catalog_name = dbutils.widgets.get("catalog")
schema = dbutils.widgets.get("schema")
volume_root = f"/Volumes/{catalog_name}/{schema}/{dbutils.widgets.get('volume')}"
conf_source = f"{volume_root}/conf/conf-llm_finetuning.tar.gz"
pipelines = [p.strip() for p in dbutils.widgets.get("pipelines").split(",") if p.strip()]
runtime_params = {
    "volume_root": volume_root,
    "mlflow_experiment": dbutils.widgets.get("mlflow_experiment"),
    "deployment": {
        "mlflow": {
            "registered_model_name": "{}.{}.{}".format(
                catalog_name, schema, dbutils.widgets.get("registered_model")
            )
        }
    },
}

configure_project("llm_finetuning")
for pipeline in pipelines:
    print(f"=== {pipeline}")
    with KedroSession.create(
        project_path=os.getcwd(),
        env="databricks",
        conf_source=conf_source,
        runtime_params=runtime_params,
    ) as session:
        session.run(pipeline_names=[pipeline])

# COMMAND ----------

# MAGIC %md
# MAGIC ## Look at the results

# COMMAND ----------

import json

reports = f"{volume_root}/data/08_reporting"
for name in ("training_metrics", "evaluation_metrics", "baseline_comparison"):
    path = f"{reports}/{name}.json"
    if os.path.exists(path):
        with open(path) as file:
            print(name, json.dumps(json.load(file), indent=1)[:2000])
print("all reports:", sorted(os.listdir(reports)))
