"""Data-parallel training launchers: one picklable function, run on N processes.

The training function does not change: under ``torch.distributed`` the Hugging Face
``Trainer`` (through accelerate) reads ``RANK``/``WORLD_SIZE``/``MASTER_ADDR``, wraps
the model in DDP, shards the batches and saves from rank 0 only. What changes is who
starts the processes, chosen by the ``training.distributed`` parameters:

- ``none``: call the function in this process (one CPU or GPU).
- ``torchrun``: ``torch.distributed``'s elastic launcher (what the ``torchrun`` command
  runs), ``num_processes`` workers on this machine. For a laptop or a single GPU box.
- ``torch_distributor``: Spark's ``pyspark.ml.torch.distributor.TorchDistributor``, on
  Databricks (Runtime ML 13+): the workers run on the driver's GPUs with
  ``local_mode: true`` (a single-node cluster) or as a barrier stage on the executors
  with ``local_mode: false``.

All three return rank 0's return value.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import model_validator

from llm_finetuning.params import Params, count_or

logger = logging.getLogger(__name__)

Strategy = Literal["none", "torchrun", "torch_distributor"]
T = TypeVar("T")


class DistributedParams(Params):
    """The ``training.distributed`` parameters block.

    Attributes:
        strategy: ``none``, ``torchrun`` or ``torch_distributor`` (see the module doc).
        num_processes: Training processes in all; ``auto`` means one per visible GPU.
            The effective batch is ``batch_size * gradient_accumulation_steps *
            num_processes``.
        use_gpu: One GPU per process (NCCL); ``false`` trains on CPU (gloo).
        local_mode: ``torch_distributor`` only: processes on the driver node (true)
            or on the executors (false, a multi-node cluster).
    """

    key: ClassVar[str] = "training.distributed"

    strategy: Strategy = "none"
    num_processes: Annotated[int | Literal["auto"], count_or("auto", minimum=1)] = 1
    use_gpu: bool = False
    local_mode: bool = True

    @model_validator(mode="after")
    def _auto_needs_gpus(self) -> DistributedParams:
        if self.num_processes == "auto" and not self.use_gpu:
            raise ValueError(
                "num_processes 'auto' counts GPUs: set use_gpu or give a number"
            )
        return self

    def resolved_num_processes(self) -> int:
        """``num_processes`` with ``auto`` replaced by the number of visible GPUs."""
        if self.num_processes != "auto":
            return int(self.num_processes)
        import torch

        count = torch.cuda.device_count()
        if count < 1:
            raise RuntimeError(
                "training.distributed.num_processes is 'auto' but no GPU is visible"
            )
        return count


def launch(fn: Callable[..., T], *args: Any, config: DistributedParams) -> T:
    """Run ``fn(*args)`` on ``config``'s processes and return rank 0's result.

    ``fn`` must be a module-level (picklable) function: the workers are new processes.
    Its arguments and return value travel by pickle, so keep them to data, parameters
    and the trained model.
    """
    if config.strategy == "none":
        return fn(*args)
    num_processes = config.resolved_num_processes()
    logger.info(
        "Launching %s on %d %s process(es) with %s",
        getattr(fn, "__qualname__", fn),
        num_processes,
        "GPU" if config.use_gpu else "CPU",
        config.strategy,
    )
    if config.strategy == "torchrun":
        return _launch_with_torchrun(fn, args, num_processes, config.use_gpu)
    return _launch_with_torch_distributor(fn, args, num_processes, config)


def is_rank_zero() -> bool:
    """Whether this process is rank 0 (or not distributed at all)."""
    return int(os.environ.get("RANK", "0")) == 0


def _launch_with_torchrun(
    fn: Callable[..., T], args: tuple[Any, ...], num_processes: int, use_gpu: bool
) -> T:
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    launch_config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=num_processes,
        run_id=f"llm-finetuning-{uuid.uuid4().hex[:8]}",
        # A single machine needs no rendezvous server: c10d on a free local port.
        rdzv_backend="c10d",
        rdzv_endpoint=f"127.0.0.1:{_free_port()}",
        max_restarts=0,
        start_method="spawn",
    )
    worker_env = _worker_environment(num_processes, use_gpu)
    with _environment(worker_env):
        results = elastic_launch(launch_config, fn)(*args)
    return results[0]


def _launch_with_torch_distributor(
    fn: Callable[..., T],
    args: tuple[Any, ...],
    num_processes: int,
    config: DistributedParams,
) -> T:
    try:
        from pyspark.ml.torch.distributor import TorchDistributor
        from pyspark.sql import SparkSession
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "training.distributed.strategy 'torch_distributor' needs pyspark (a "
            "Databricks ML runtime has it; elsewhere `pip install "
            "'llm_finetuning[spark]'`), or use strategy 'torchrun'"
        ) from error
    if SparkSession.getActiveSession() is None:
        # A Databricks wheel task has no active session until it asks for the
        # cluster's; elsewhere this starts a local Spark (it needs Java).
        SparkSession.builder.getOrCreate()
    distributor = TorchDistributor(
        num_processes=num_processes,
        local_mode=config.local_mode,
        use_gpu=config.use_gpu,
    )
    # In local mode the driver's environment reaches the workers.
    with _environment(_worker_environment(num_processes, config.use_gpu)):
        return distributor.run(_OneWriterPerNode(fn), *args)


class _OneWriterPerNode:
    """Calls ``fn``; only local rank 0 hands a result back to TorchDistributor.

    TorchDistributor's worker script pickles every process's return value into one
    output file per node, all processes at once (pyspark 4.3, ``dl_util``), so two
    ranks returning a model were seen to leave a corrupt pickle ("FRAME length exceeds
    system's maximum"), or whichever finished last. Here the other local ranks leave
    with exit status 0 before writing, and local rank 0 returns ``fn``'s result on
    global rank 0 (the one TorchDistributor returns) and ``None`` elsewhere.
    """

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.__qualname__ = getattr(fn, "__qualname__", type(self).__qualname__)

    def __call__(self, *args: Any) -> Any:
        result = self.fn(*args)
        if int(os.environ.get("LOCAL_RANK", "0")) != 0:
            sys.stdout.flush()
            sys.stderr.flush()
            raise SystemExit(0)
        return result if is_rank_zero() else None


def _worker_environment(num_processes: int, use_gpu: bool) -> dict[str, str | None]:
    """Variables the workers inherit.

    CPU workers get one thread each unless the user chose otherwise: several
    multi-threaded processes on the same cores were seen to run 40x slower. A CPU run
    hides the GPUs and tells accelerate to use the CPU, so the Trainer runs DDP over
    gloo. The MLflow run
    open here is passed on (see :func:`_mlflow_environment`).
    """
    env: dict[str, str | None] = dict(_mlflow_environment())
    if not use_gpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
        # accelerate sets up CPU DDP (gloo) only when told to use the CPU; otherwise
        # every worker silently trains alone on the whole data set.
        env["ACCELERATE_USE_CPU"] = "true"
        if num_processes > 1 and "OMP_NUM_THREADS" not in os.environ:
            env["OMP_NUM_THREADS"] = "1"
    return env


def _mlflow_environment() -> dict[str, str]:
    """Point the workers at the caller's MLflow run (kedro-mlflow's), if one is open.

    The run lives in this process only; a worker that logs (rank 0's metrics callback)
    finds it through ``MLFLOW_RUN_ID`` and the tracking server through
    ``MLFLOW_TRACKING_URI``, which kedro-mlflow set in code rather than in the
    environment.
    """
    mlflow = sys.modules.get("mlflow")  # not imported: no run can be open
    if mlflow is None or mlflow.active_run() is None:
        return {}
    env = {
        "MLFLOW_RUN_ID": mlflow.active_run().info.run_id,
        "MLFLOW_TRACKING_URI": mlflow.get_tracking_uri(),
    }
    registry_uri = mlflow.get_registry_uri()
    if registry_uri:
        env["MLFLOW_REGISTRY_URI"] = registry_uri
    return env


@contextlib.contextmanager
def _environment(variables: Mapping[str, str | None]) -> Iterator[None]:
    """Set environment variables for the duration of the block, then restore them."""
    previous = {name: os.environ.get(name) for name in variables}
    try:
        for name, value in variables.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
