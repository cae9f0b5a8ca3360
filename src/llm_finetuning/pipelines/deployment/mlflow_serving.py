"""Target A: the fine-tuned open-weights model as a registered, served MLflow model.

* :func:`log_and_register` logs the model as an MLflow pyfunc ("models from code":
  :mod:`~llm_finetuning.pipelines.deployment.serving_model`) with explicit pip requirements, a signature and an
  input example, and registers it (the sqlite registry locally, Unity Catalog on
  Databricks through ``mlflow.yml``'s registry URI).
* :class:`ModelServer` runs ``mlflow models serve`` on 127.0.0.1 under a supervisor
  (:mod:`llm_finetuning.processes`), so the server and its workers end with this
  process even when it is killed.
* :func:`smoke_test_server` waits for health, checks malformed requests get a 4xx
  answer (400 for null or non-string reviews, 413 above ``max_request_bytes``), sends
  the test reviews to ``/invocations`` and measures latency and throughput.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import httpx
import numpy as np
import pandas as pd
from pydantic import Field, PositiveFloat, PositiveInt

from llm_finetuning import truncation as truncation_module
from llm_finetuning.datasets.model_folder import TextClassifier, TextClassifierDataset
from llm_finetuning.models import LoraParams, model_for_saving
from llm_finetuning.params import Params
from llm_finetuning.processes import start_supervised, stop_supervised
from llm_finetuning.truncation import Truncation, TruncationStrategy

# MLflow loads in the functions that log and sign the model, so the deployment
# pipelines are built without it.
if TYPE_CHECKING:
    from mlflow.models import ModelSignature

logger = logging.getLogger(__name__)

SERVING_MODEL_CODE = Path(__file__).with_name("serving_model.py")
# serving_model.DEFAULT_MAX_REQUEST_BYTES (that file imports mlflow and torch, and runs
# without this package): the limit a model logged without one is served with.
DEFAULT_MAX_REQUEST_BYTES = 262_144
# serving_model.TRUNCATION_MODULE: the name llm_finetuning/truncation.py is logged
# under beside the served model (its code_paths).
TRUNCATION_MODULE = "llm_finetuning_truncation"
TEXT_COLUMN = "text"
# Requirements of the served model, pinned to the versions that logged it. A local
# version suffix (torch's "+cpu") is dropped: no index serves it under that name.
SERVING_PACKAGES = (
    "mlflow",
    "torch",
    "transformers",
    "tokenizers",
    "safetensors",
    "pandas",
)


class ServeParams(Params):
    """How the registered model is served and checked (``deployment.mlflow.serve``).

    Attributes:
        host: Interface to bind; the smoke test only ever talks to it.
        port: ``None`` picks a free port.
        workers: uvicorn workers (one is enough for a smoke test on a small machine).
        startup_timeout_s: How long to wait for ``/ping`` to answer 200 (about 20 s on
            a 2-core machine).
        request_timeout_s: Timeout of one request.
        stop_timeout_s: How long SIGTERM may take before SIGKILL.
        request_batch_size: Reviews per ``/invocations`` request: latency is per request.
    """

    host: str = "127.0.0.1"
    port: PositiveInt | None = None
    workers: PositiveInt = 1
    startup_timeout_s: PositiveFloat = 180.0
    request_timeout_s: PositiveFloat = 60.0
    stop_timeout_s: PositiveFloat = 20.0
    request_batch_size: PositiveInt = 1


class MlflowTargetParams(Params):
    """The ``deployment.mlflow`` block (docs/deployment.md, "Parameters").

    Attributes:
        registered_model_name: Registry name (``catalog.schema.model`` on Unity Catalog).
        artifact_name: Name of the logged model in the run.
        sample_size: Test reviews sent to the served model (``None``: all).
        batch_size: Reviews per forward pass inside the served model.
        pip_requirements: Requirements of the served model; ``None`` pins the
            installed versions of :data:`SERVING_PACKAGES`.
        probability_tolerance: Largest allowed difference between a served and an
            offline probability; labels must agree wherever the offline margin is wider.
        delete_model_version: Clean-up also deletes the registered version (off: the
            registered model is the deliverable).
        max_request_bytes: Most UTF-8 bytes of review text the served model accepts in
            one request (HTTP 413 above); logged in the model's config, so it holds
            wherever the model is served. ``None``: no limit.
        runtime: ``torch``, or ``onnx_int8``: the model is logged with its ONNX
            Runtime int8 export (the scoring pipeline's, docs/scoring.md) and served
            through ONNX Runtime (needs ``llm_finetuning[onnx]`` where it is logged).
    """

    key: ClassVar[str] = "deployment.mlflow"

    registered_model_name: str = "llm_finetuning_text_classifier"
    artifact_name: str = "text_classifier"
    sample_size: PositiveInt | None = 200
    batch_size: PositiveInt = 16
    pip_requirements: list[str] | None = None
    probability_tolerance: float = Field(1e-4, ge=0)
    delete_model_version: bool = False
    max_request_bytes: PositiveInt | None = DEFAULT_MAX_REQUEST_BYTES
    runtime: Literal["torch", "onnx_int8"] = "torch"
    serve: ServeParams = ServeParams()


# --- packaging ----------------------------------------------------------------------


def default_pip_requirements(runtime: str = "torch") -> list[str]:
    """The installed versions of what the served model imports."""
    packages = [*SERVING_PACKAGES, *(("onnxruntime",) if runtime != "torch" else ())]
    return [
        f"{name}=={importlib_metadata.version(name).split('+', 1)[0]}"
        for name in packages
    ]


def _onnx_int8_export(classifier: TextClassifier, staging: Path) -> Path:
    """The classifier's ONNX Runtime int8 file, exported as the scoring pipeline does."""
    from llm_finetuning.pipelines.scoring.onnx_runtime import onnx_model_file

    tokenizer = classifier.tokenizer
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    pad_id = classifier.model.config.pad_token_id
    return onnx_model_file(
        classifier.model,
        staging / "onnx",
        quantized=True,
        pad_token_id=tokenizer.pad_token_id if pad_id is None else pad_id,
    )


def model_signature(label_names: Sequence[str]) -> ModelSignature:
    """One column ``text`` in; label id, label name and class probabilities out.

    The input column is typed "any", not "string": for a string column the scoring
    server casts ``{"inputs": [null]}`` and ``[123]`` to the texts ``"None"`` and
    ``"123"`` before the model sees them. The model checks the texts itself (HTTP 400).
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema
    from mlflow.types.schema import AnyType

    outputs = [ColSpec("long", "predicted_label"), ColSpec("string", "label_name")]
    outputs += [ColSpec("double", f"prob_{name}") for name in label_names]
    return ModelSignature(
        inputs=Schema([ColSpec(AnyType(), TEXT_COLUMN)]), outputs=Schema(outputs)
    )


def log_and_register(
    classifier: TextClassifier,
    settings: MlflowTargetParams,
    input_example: Sequence[str],
    *,
    max_length: int,
    truncation: TruncationStrategy = "head",
    head_tokens: int = 128,
) -> dict[str, Any]:
    """Log ``classifier`` as a pyfunc model in the active MLflow run and register it.

    ``max_length``, ``truncation`` and ``head_tokens`` (the ``model`` parameters) are
    how the served model cuts long reviews, as training, evaluation and scoring do:
    they go into the model config, and :mod:`llm_finetuning.truncation` is logged
    with the model (``code_paths``) so the served model runs the same code.

    Returns:
        The record of what was registered: name, version, ``models:/`` URI, run id,
        model id, pip requirements.
    """
    import mlflow

    # A LoRA adapter is merged into its base weights: the served folder is a plain
    # model, which needs neither peft nor the base model's Hub id.
    classifier = TextClassifier(
        model=model_for_saving(classifier.model, LoraParams(merge_on_save=True)),
        tokenizer=classifier.tokenizer,
        metadata=classifier.metadata,
    )
    label_names = classifier.label_names
    requirements = settings.pip_requirements or default_pip_requirements(
        settings.runtime
    )
    # MLflow uploads the model from a local folder: stage the TextClassifier there
    # (the same layout training saved) for the duration of the call.
    cut = Truncation(max_length, truncation, head_tokens)
    with tempfile.TemporaryDirectory(prefix="llm_finetuning_model_") as staging:
        TextClassifierDataset(path=str(Path(staging) / "model")).save(classifier)
        truncation_code = Path(staging) / f"{TRUNCATION_MODULE}.py"
        shutil.copyfile(truncation_module.__file__, truncation_code)
        artifacts = {"model": str(Path(staging) / "model")}
        if settings.runtime == "onnx_int8":
            artifacts["onnx"] = str(_onnx_int8_export(classifier, Path(staging)))
        run = mlflow.active_run()
        started = run is None
        if started:
            run = mlflow.start_run(run_name="deployment")
        try:
            info = mlflow.pyfunc.log_model(
                name=settings.artifact_name,
                python_model=str(SERVING_MODEL_CODE),
                artifacts=artifacts,
                model_config={
                    # Not "runtime": MLflow logs the config as run parameters, and
                    # the run already has kedro's `runtime` block under that name.
                    "serving_runtime": settings.runtime,
                    "batch_size": settings.batch_size,
                    **cut.as_config(),
                    "max_request_bytes": settings.max_request_bytes,
                },
                code_paths=[str(truncation_code)],
                pip_requirements=requirements,
                signature=model_signature(label_names),
                input_example=pd.DataFrame({TEXT_COLUMN: list(input_example)}),
                registered_model_name=settings.registered_model_name,
            )
        finally:
            if started:
                mlflow.end_run()
    version = str(info.registered_model_version)
    record = {
        "registered_model_name": settings.registered_model_name,
        "version": version,
        "model_uri": f"models:/{settings.registered_model_name}/{version}",
        "logged_model_uri": info.model_uri,
        "run_id": run.info.run_id,
        "label_names": label_names,
        **cut.as_config(),
        "pip_requirements": requirements,
        "max_request_bytes": settings.max_request_bytes,
        "tracking_uri": mlflow.get_tracking_uri(),
        "registry_uri": mlflow.get_registry_uri(),
    }
    logger.info("Registered %s version %s", settings.registered_model_name, version)
    return record


# --- serving ------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def port_is_open(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1.0)
        return probe.connect_ex((host, port)) == 0


class ModelServer:
    """``mlflow models serve`` under a supervisor.

    The scoring server runs uvicorn in a child process, which a plain child process
    would leave running if this process were killed. The supervisor
    (:func:`llm_finetuning.processes.start_supervised`) ends the whole server tree when
    this process dies (SIGKILL included) or when :meth:`stop` sends it SIGTERM:
    SIGTERM first, SIGKILL after ``stop_timeout_s``. Output goes to ``log_path``.
    """

    def __init__(
        self,
        model_uri: str,
        settings: ServeParams,
        *,
        tracking_uri: str,
        registry_uri: str | None,
        log_path: Path,
    ) -> None:
        self.model_uri = model_uri
        self.settings = settings
        self.host = settings.host
        self.port = settings.port or free_port(settings.host)
        self.log_path = log_path
        self._tracking_uri = tracking_uri
        self._registry_uri = registry_uri
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        if port_is_open(self.host, self.port):
            raise RuntimeError(f"Port {self.port} on {self.host} is already in use")
        environment = dict(os.environ)
        environment["MLFLOW_TRACKING_URI"] = self._tracking_uri
        if self._registry_uri:
            environment["MLFLOW_REGISTRY_URI"] = self._registry_uri
        # The server starts uvicorn by name: put this interpreter's scripts first.
        scripts = str(Path(sys.executable).parent)
        environment["PATH"] = scripts + os.pathsep + environment.get("PATH", "")
        command = [
            sys.executable, "-m", "mlflow", "models", "serve",
            "-m", self.model_uri,
            "--env-manager", "local",
            "-h", self.host,
            "-p", str(self.port),
            "-w", str(self.settings.workers),
        ]  # fmt: skip
        logger.info("Starting %s", " ".join(command[1:]))
        with self.log_path.open("w") as log:
            self.process = start_supervised(
                command,
                stop_timeout_s=self.settings.stop_timeout_s,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
            )

    def wait_until_healthy(self, client: httpx.Client) -> float:
        """Seconds until ``/ping`` answered 200; raises if the server died or timed out."""
        assert self.process is not None
        started = time.perf_counter()
        deadline = started + self.settings.startup_timeout_s
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"mlflow models serve exited with code {self.process.returncode} "
                    f"before answering /ping:\n{self.log_tail()}"
                )
            try:
                if client.get(f"{self.url}/ping", timeout=2.0).status_code == 200:
                    return time.perf_counter() - started
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise TimeoutError(
            f"mlflow models serve did not answer /ping within "
            f"{self.settings.startup_timeout_s:g} s (serve.startup_timeout_s):\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(
                self.log_path.read_text(errors="replace").splitlines()[-lines:]
            )
        except OSError:
            return "(no server log)"

    def stop(self) -> int | None:
        """Stop the server and its workers; return the server's exit code."""
        if self.process is None:
            return None
        stop_supervised(self.process, self.settings.stop_timeout_s)
        logger.info(
            "Model server on port %d stopped (exit code %s)",
            self.port,
            self.process.returncode,
        )
        return self.process.returncode


# Requests a robust server must refuse: (description, body, content type, expected
# status; None: any 4xx).
MALFORMED_REQUESTS: tuple[tuple[str, bytes, str, int | None], ...] = (
    ("invalid JSON", b'{"inputs": ["unterminated', "application/json", None),
    ("JSON that is not an object", b'["a review"]', "application/json", None),
    ("no known input field", b'{"reviews": ["a review"]}', "application/json", None),
    ("a number instead of texts", b'{"inputs": 5}', "application/json", None),
    ("the wrong column", b'{"dataframe_split": {"columns": ["review"], "data": [["x"]]}}', "application/json", None),
    ("an unsupported content type", b"a review", "text/plain", None),
    ("bytes that are not UTF-8", b'{"inputs": ["\xff\xfe"]}', "application/json", None),
    ("a null review", b'{"inputs": [null]}', "application/json", 400),
    ("a number as a review", b'{"inputs": [123]}', "application/json", 400),
    ("a null among reviews", b'{"inputs": ["a review", null]}', "application/json", 400),
)  # fmt: skip


def oversize_request(max_request_bytes: int) -> tuple[str, bytes, str, int]:
    """One review one byte longer than the limit: the server must answer 413."""
    body = json.dumps({"inputs": ["x" * (max_request_bytes + 1)]}).encode()
    return (
        f"a review over max_request_bytes ({max_request_bytes})",
        body,
        "application/json",
        413,
    )


def malformed_requests(
    max_request_bytes: int | None,
) -> list[tuple[str, bytes, str, int | None]]:
    """:data:`MALFORMED_REQUESTS`, plus an oversize one where there is a limit."""
    requests = list(MALFORMED_REQUESTS)
    if max_request_bytes:
        requests.append(oversize_request(max_request_bytes))
    return requests


def check_malformed_requests(
    client: httpx.Client,
    url: str,
    timeout: float,
    max_request_bytes: int | None = None,
) -> list[dict[str, Any]]:
    """Send each of :func:`malformed_requests`; record the status and whether it was
    the expected one (``as_expected``: the given status, or any 4xx)."""
    results = []
    for description, body, content_type, expected in malformed_requests(
        max_request_bytes
    ):
        response = client.post(
            f"{url}/invocations",
            content=body,
            headers={"Content-Type": content_type},
            timeout=timeout,
        )
        status = response.status_code
        rejected = 400 <= status < 500
        results.append(
            {
                "request": description,
                "status_code": status,
                "expected_status": expected,
                "rejected_with_4xx": rejected,
                "as_expected": rejected if expected is None else status == expected,
            }
        )
    return results


def score_texts(
    client: httpx.Client,
    url: str,
    texts: Sequence[str],
    batch_size: int,
    timeout: float,
) -> tuple[pd.DataFrame, list[float], float]:
    """Send ``texts`` to ``/invocations`` in requests of ``batch_size``.

    Returns:
        The served predictions (one row per text, in order), the latency of each
        request in seconds, and the wall time of all requests.
    """
    frames, latencies = [], []
    started = time.perf_counter()
    for start in range(0, len(texts), batch_size):
        batch = list(texts[start : start + batch_size])
        sent = time.perf_counter()
        response = client.post(
            f"{url}/invocations", json={"inputs": batch}, timeout=timeout
        )
        latencies.append(time.perf_counter() - sent)
        if response.status_code != 200:
            raise RuntimeError(
                f"/invocations answered HTTP {response.status_code} to reviews "
                f"{start}..{start + len(batch) - 1}: {response.text[:500]}"
            )
        predictions = response.json()["predictions"]
        if len(predictions) != len(batch):
            raise RuntimeError(
                f"/invocations returned {len(predictions)} predictions for {len(batch)} reviews"
            )
        frames.append(pd.DataFrame(predictions))
    return (
        pd.concat(frames, ignore_index=True),
        latencies,
        time.perf_counter() - started,
    )


def latency_summary(
    latencies: Sequence[float], n_texts: int, wall_s: float
) -> dict[str, float]:
    """p50/p95/max latency in milliseconds and throughput in reviews per second."""
    values = np.asarray(latencies) * 1000
    return {
        "n_requests": len(latencies),
        "n_reviews": n_texts,
        "latency_ms_p50": round(float(np.percentile(values, 50)), 2),
        "latency_ms_p95": round(float(np.percentile(values, 95)), 2),
        "latency_ms_max": round(float(values.max()), 2),
        "throughput_reviews_per_s": round(n_texts / wall_s, 2) if wall_s > 0 else None,
        "wall_s": round(wall_s, 3),
    }


def smoke_test_server(
    model_uri: str,
    texts: Sequence[str],
    settings: MlflowTargetParams,
    *,
    tracking_uri: str,
    registry_uri: str | None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Serve ``model_uri``, check it, score ``texts``; the server is always stopped.

    Returns:
        The served predictions and a report: startup seconds, malformed-request
        answers, latency and throughput, the server's exit code and port.
    """
    serve = settings.serve
    with tempfile.TemporaryDirectory(prefix="llm_finetuning_serve_") as scratch:
        server = ModelServer(
            model_uri,
            serve,
            tracking_uri=tracking_uri,
            registry_uri=registry_uri,
            log_path=Path(scratch) / "server.log",
        )
        try:
            with httpx.Client() as client:
                server.start()
                startup_s = server.wait_until_healthy(client)
                logger.info(
                    "Model server healthy on %s after %.1f s", server.url, startup_s
                )
                malformed = check_malformed_requests(
                    client,
                    server.url,
                    serve.request_timeout_s,
                    settings.max_request_bytes,
                )
                served, latencies, wall_s = score_texts(
                    client,
                    server.url,
                    texts,
                    serve.request_batch_size,
                    serve.request_timeout_s,
                )
        finally:
            exit_code = server.stop()
    unexpected = [
        f"{m['request']}: HTTP {m['status_code']}, expected "
        f"{m['expected_status'] or '4xx'}"
        for m in malformed
        if not m["as_expected"]
    ]
    if unexpected:
        raise RuntimeError(
            f"The model server answered malformed requests wrongly: {unexpected}"
        )
    report = {
        "model_uri": model_uri,
        "host": server.host,
        "port": server.port,
        "pid": server.process.pid if server.process else None,
        "startup_s": round(startup_s, 2),
        "malformed_requests": malformed,
        "max_request_bytes": settings.max_request_bytes,
        "request_batch_size": serve.request_batch_size,
        **latency_summary(latencies, len(texts), wall_s),
        "server_exit_code": exit_code,
    }
    return served, report
