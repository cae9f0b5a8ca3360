"""Data-parallel training: two CPU processes (gloo) under Spark's TorchDistributor.

The training pipeline's ``fit`` runs unchanged in each worker. Two processes with a
per-process batch of 4 must end where one process with a batch of 8 ends (the same
global batches, dropout off), up to floating-point noise, and only rank 0 may write
checkpoints. Each worker writes a small report (rank, world size, steps, saves) so the
test can see what rank 1 did: TorchDistributor returns rank 0's result only.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from llm_finetuning.distributed import DistributedParams, launch
from llm_finetuning.models import ModelParams, load_tokenizer
from llm_finetuning.resolvers import package_path

GLOBAL_BATCH = 8
STEPS = 4
CHECKPOINT_EVERY = 2


def _model_params() -> dict[str, Any]:
    """The test env's tiny GPT-2, dropout off so both runs compute the same thing."""
    return {
        "source": "config",
        "tokenizer_name_or_path": package_path("demo_data/tokenizer"),
        "architecture": {
            "model_type": "gpt2",
            "n_layer": 1,
            "n_head": 2,
            "n_embd": 32,
            "n_positions": 128,
            "resid_pdrop": 0.0,
            "embd_pdrop": 0.0,
            "attn_pdrop": 0.0,
            "summary_first_dropout": 0.0,
        },
        "max_length": 128,
    }


def _training_params(per_process_batch: int, checkpoint_dir: Path) -> dict[str, Any]:
    return {
        "epochs": 1,
        "max_steps": STEPS,
        "batch_size": per_process_batch,
        "learning_rate": 5.0e-3,
        "warmup": 0,
        "precision": "fp32",
        "group_by_length": True,
        "logging_steps": 1,
        "progress_bar": False,
        "peak_flops": 36.0e9,
        "evaluation": {"strategy": "no"},
        "checkpoints": {
            "dir": str(checkpoint_dir),
            "every_n_steps": CHECKPOINT_EVERY,
            "resume": "never",
        },
    }


@pytest.fixture(scope="module")
def tokenized_reviews() -> Any:
    """32 bundled demo reviews, tokenized like the data_processing pipeline does."""
    from datasets import Dataset, DatasetDict

    rows = [
        json.loads(line)
        for line in Path(package_path("demo_data/train.jsonl")).read_text().splitlines()
    ][: GLOBAL_BATCH * STEPS]
    tokenizer = load_tokenizer(ModelParams.model_validate(_model_params()))
    encoded = tokenizer([row["review"] for row in rows], truncation=True)
    labels = [int(row["sentiment"] == "positive") for row in rows]
    assert len(set(labels)) == 2, "the demo rows should hold both labels"
    train = Dataset.from_dict(
        {
            "row_id": list(range(len(rows))),
            "input_ids": encoded["input_ids"],
            "attention_mask": encoded["attention_mask"],
            "labels": labels,
            "length": [len(ids) for ids in encoded["input_ids"]],
        }
    )
    return DatasetDict({"train": train})


def fit_and_report(report_dir: str, *fit_args: Any) -> Any:
    """``fit`` in a worker, recording what this rank did in ``report_dir``."""
    import transformers

    from llm_finetuning.pipelines.training.nodes import fit

    rank = int(os.environ.get("RANK", "0"))
    saves: list[str] = []
    save_pretrained = transformers.PreTrainedModel.save_pretrained

    def counting_save(self: Any, save_directory: Any, *args: Any, **kwargs: Any) -> Any:
        saves.append(str(save_directory))
        return save_pretrained(self, save_directory, *args, **kwargs)

    transformers.PreTrainedModel.save_pretrained = counting_save
    try:
        classifier, metrics = fit(*fit_args)
    finally:
        transformers.PreTrainedModel.save_pretrained = save_pretrained
    report = {
        "rank": rank,
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        "metrics_world_size": metrics["world_size"],
        "global_step": metrics["global_step"],
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "saves": saves,
    }
    Path(report_dir, f"rank{rank}.json").write_text(json.dumps(report))
    return classifier, metrics


@pytest.fixture(scope="module")
def spark_session() -> Any:
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("Spark needs Java: install a JRE (Debian: openjdk-17-jre-headless)")
    pyspark = pytest.importorskip(
        "pyspark",
        reason="pyspark is not installed (pip install 'llm_finetuning[spark]')",
    )
    del pyspark
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("test_distributed")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    yield session
    session.stop()


def _state_dict(classifier: Any) -> dict[str, torch.Tensor]:
    return {
        k: v.detach().float().cpu() for k, v in classifier.model.state_dict().items()
    }


@pytest.mark.spark
@pytest.mark.slow
def test_two_cpu_processes_train_like_one_on_the_same_global_batch(
    spark_session: Any, tokenized_reviews: Any, tmp_path: Path
) -> None:
    from pyspark import cloudpickle  # the copy TorchDistributor pickles with

    # The workers unpickle this module's function: send it by value, so they need not
    # import the tests package.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    labels = ["negative", "positive"]
    runtime = {"seed": 0, "num_threads": 1}

    single_dir = tmp_path / "single"
    single_dir.mkdir()
    single, single_metrics = fit_and_report(
        str(single_dir),
        tokenized_reviews,
        labels,
        _model_params(),
        _training_params(GLOBAL_BATCH, tmp_path / "single_checkpoints"),
        runtime,
    )

    ddp_dir = tmp_path / "ddp"
    ddp_dir.mkdir()
    config = DistributedParams(strategy="torch_distributor", num_processes=2)
    distributed, distributed_metrics = launch(
        fit_and_report,
        str(ddp_dir),
        tokenized_reviews,
        labels,
        _model_params(),
        _training_params(GLOBAL_BATCH // 2, tmp_path / "ddp_checkpoints"),
        runtime,
        config=config,
    )

    reports = {
        report["rank"]: report
        for report in (json.loads(p.read_text()) for p in ddp_dir.glob("rank*.json"))
    }
    assert sorted(reports) == [0, 1], f"expected reports of ranks 0 and 1: {reports}"
    for report in reports.values():
        assert report["world_size"] == report["metrics_world_size"] == 2, report
        assert report["global_step"] == STEPS, report
        assert report["omp_num_threads"] == "1", report  # one thread per CPU worker
    assert distributed_metrics["effective_batch_size"] == GLOBAL_BATCH
    assert single_metrics["effective_batch_size"] == GLOBAL_BATCH

    # Checkpoints: every CHECKPOINT_EVERY steps, written by rank 0 only, once each.
    single_saves = json.loads((single_dir / "rank0.json").read_text())["saves"]
    assert len(single_saves) == STEPS // CHECKPOINT_EVERY
    assert len(reports[0]["saves"]) == len(single_saves), reports[0]
    assert len(set(reports[0]["saves"])) == len(reports[0]["saves"])
    assert reports[1]["saves"] == [], "rank 1 must not write checkpoints"

    # Same global batches, same result, within floating-point tolerance; and the
    # comparison is meaningful: training moved the weights much further than that.
    initial = _initial_weights(labels)
    trained, reference = _state_dict(distributed), _state_dict(single)
    assert trained.keys() == reference.keys()
    largest_difference = max((trained[k] - reference[k]).abs().max() for k in trained)
    largest_update = max((reference[k] - initial[k]).abs().max() for k in initial)
    assert largest_difference < 1e-4, f"DDP is {largest_difference} off one process"
    assert largest_update > 100 * largest_difference, (
        largest_update,
        largest_difference,
    )
    # The logged loss is the mean over the ranks, the gradient norm that of the
    # averaged gradient: both must be the single process's (no world-size factor).
    for key in ("loss", "grad_norm"):
        single_curve = [e[key] for e in single_metrics["history"]["train"]]
        ddp_curve = [e[key] for e in distributed_metrics["history"]["train"]]
        assert len(single_curve) == STEPS
        assert ddp_curve == pytest.approx(single_curve, rel=1e-4), key


def _initial_weights(labels: list[str]) -> dict[str, torch.Tensor]:
    """The untrained model both runs started from (``fit`` seeds before building)."""
    from transformers import set_seed

    from llm_finetuning.models import build_classifier

    spec = ModelParams.model_validate(_model_params())
    set_seed(0)
    model = build_classifier(spec, load_tokenizer(spec), labels)
    return {k: v.detach().float() for k, v in model.state_dict().items()}


def all_reduce_ranks() -> dict[str, Any]:
    """A torch.distributed worker: sums ``rank + 1`` over all ranks with gloo."""
    import torch.distributed as dist

    dist.init_process_group("gloo")
    try:
        total = torch.tensor([dist.get_rank() + 1])
        dist.all_reduce(total)
        return {
            "rank": dist.get_rank(),
            "world_size": dist.get_world_size(),
            "sum": int(total.item()),
            "env": {
                name: os.environ.get(name)
                for name in (
                    "OMP_NUM_THREADS",
                    "CUDA_VISIBLE_DEVICES",
                    "ACCELERATE_USE_CPU",
                    "MLFLOW_RUN_ID",
                    "MLFLOW_TRACKING_URI",
                )
            },
        }
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_torchrun_launches_cpu_workers_that_share_the_mlflow_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking_uri)
    try:
        with mlflow.start_run() as run:
            result = launch(
                all_reduce_ranks,
                config=DistributedParams(strategy="torchrun", num_processes=2),
            )
    finally:
        mlflow.set_tracking_uri(None)

    assert result["rank"] == 0  # rank 0's result comes back
    assert result["world_size"] == 2
    assert result["sum"] == 1 + 2  # both ranks took part
    assert result["env"] == {
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "ACCELERATE_USE_CPU": "true",
        "MLFLOW_RUN_ID": run.info.run_id,
        "MLFLOW_TRACKING_URI": tracking_uri,
    }
    assert "MLFLOW_RUN_ID" not in os.environ  # the caller's environment is restored


def test_strategy_none_runs_in_this_process() -> None:
    assert launch(os.getpid, config=DistributedParams()) == os.getpid()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"strategy": "horovod"}, r"training\.distributed\.strategy: Input should be"),
        ({"num_processes": 0}, r"num_processes: must be a count >= 1 or 'auto'"),
        ({"num_processes": "auto"}, r"training\.distributed: .* counts GPUs"),
        ({"num_process": 2}, r"training\.distributed\.num_process: unknown key"),
    ],
)
def test_bad_distributed_parameters_are_named(
    params: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        DistributedParams.model_validate(params)


def sleep_forever(pid_dir: str) -> None:
    """A worker that records its pid and never returns."""
    import time

    Path(pid_dir, f"worker-{os.environ['RANK']}").write_text(str(os.getpid()))
    while True:
        time.sleep(1)


def test_torchrun_workers_die_when_their_launcher_is_killed(tmp_path) -> None:
    """A SIGKILLed ``kedro run`` must not leave its workers training on.

    torch's spawn wrapper gives each worker a parent-death signal (SIGINT); this
    checks that it holds for the launcher the project uses.
    """
    import signal
    import subprocess
    import time

    import psutil

    launcher = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from llm_finetuning.distributed import DistributedParams, "
            "launch; from tests.test_distributed import sleep_forever; "
            "launch(sleep_forever, sys.argv[1], config=DistributedParams("
            "strategy='torchrun', num_processes=2))",
            str(tmp_path),
        ],
        cwd=Path(__file__).resolve().parents[1],
        start_new_session=True,
    )
    workers: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob("worker-*"))) < 2:
            assert launcher.poll() is None, "the launcher exited early"
            assert time.monotonic() < deadline, "the workers never started"
            time.sleep(0.2)
        time.sleep(0.5)  # the pid files are written after the workers start
        workers = [
            psutil.Process(int(p.read_text())) for p in tmp_path.glob("worker-*")
        ]
        os.kill(launcher.pid, signal.SIGKILL)  # the launcher alone, not its group
        launcher.wait(timeout=30)
        gone, alive = psutil.wait_procs(workers, timeout=15)
        assert not alive, f"workers outlived their launcher: {alive}"
    finally:
        for worker in workers:
            if worker.is_running():
                worker.kill()
        try:
            os.killpg(launcher.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
