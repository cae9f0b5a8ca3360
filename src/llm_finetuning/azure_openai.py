"""Hosted fine-tuning through Azure OpenAI: the project's one Azure client module.

What is here, in the order the ``deployment`` pipeline uses it:

* :class:`AzureOpenAISettings`: the typed ``deployment.azure_openai`` parameters block.
* :class:`AzureCredentials` and :class:`AzureCredentialsDataset`: secrets from
  environment variables or ``conf/local/credentials.yml``, never printed.
* Chat-format JSONL export (:func:`chat_examples`, :func:`to_jsonl`) and its validation
  before anything is uploaded (:func:`validate_chat_jsonl`): at least 10 examples, UTF-8,
  token counts under the model's limit, label balance, trained tokens and cost.
* The job record (:class:`JobRecordDataset`, :func:`job_identity`): the Azure job id
  saved atomically before the job is polled, so a rerun resumes the billed job.
* :class:`AzureOpenAIService`: the openai SDK's ``AzureOpenAI`` client for files,
  fine-tuning jobs and chat completions, and Azure Resource Manager's deployments REST
  API for deploying the fine-tuned model. Reads, deletes and chat completions retry 429
  and 5xx answers, honouring ``Retry-After``; requests that create something (file
  upload, job creation, deployment PUT) are sent at most once
  (:func:`create_at_most_once`: after a 5xx or a timeout, list and match before sending
  again). Every wait has a deadline; ``sleep`` and ``clock`` are injectable so tests
  run in milliseconds.
* :func:`parse_label_word`: a chat answer back to a class id (``-1`` when unparseable).
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import hashlib
import json
import logging
import math
import os
import re
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx
import openai
import pandas as pd
from kedro.io import AbstractDataset, DatasetError

logger = logging.getLogger(__name__)

Sleep = Callable[[float], None]
Clock = Callable[[], float]
TokenCounter = Callable[[str], int]

INVALID_LABEL = -1
ARM_SCOPE_SUFFIX = "/.default"
COGNITIVE_SERVICES_SCOPE = "https://cognitiveservices.azure.com/.default"
# Job statuses after which polling stops.
JOB_SUCCEEDED = "succeeded"
JOB_FAILED_STATUSES = ("failed", "cancelled")
# Resource Manager provisioning states after which a deployment is no use.
DEPLOYMENT_FAILED_STATES = ("Failed", "Canceled")
# File statuses of an upload that cannot be used for fine-tuning.
FILE_FAILED_STATUSES = ("error", "deleted")
# Listing files and jobs (to find what an unanswered request created): items per page,
# and how many of the newest are looked at in all.
LIST_PAGE_SIZE = 100
MAX_LISTED = 1000
# Azure OpenAI rejects fine-tuning files with fewer examples than this.
MIN_EXAMPLES = 10
# Training-example context limits of fine-tunable models (tokens per example).
# Longer matches win, so "gpt-4o-mini" is checked before "gpt-4o".
MODEL_EXAMPLE_TOKEN_LIMITS = {
    "gpt-35-turbo": 16_385,
    "gpt-4o-mini": 65_536,
    "gpt-4o": 65_536,
    "gpt-4.1-nano": 65_536,
    "gpt-4.1-mini": 65_536,
    "gpt-4.1": 65_536,
}
# Answers longer than this many characters are not read as a label word: a model that
# rambles has not answered the question.
MAX_ANSWER_CHARS = 200


# --- settings -----------------------------------------------------------------------

_Settings = TypeVar("_Settings")


def dataclass_from_params(
    cls: type[_Settings],
    params: Mapping[str, Any] | None,
    block: str,
    base: _Settings | None = None,
) -> _Settings:
    """Dataclass ``cls`` from parameters block ``block``, rejecting unknown keys by name.

    Keys left out keep their defaults, nested blocks too: ``{deployment: {poll:
    {interval_s: 1}}}`` changes one number and keeps the deployment's other polling
    defaults.
    """
    base = cls() if base is None else base
    params = dict(params or {})
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = set(params) - known
    if unknown:
        raise ValueError(
            f"Unknown key(s) {sorted(unknown)} in the '{block}' parameters; "
            f"expected some of {sorted(known)}"
        )
    values = {}
    for name, value in params.items():
        current = getattr(base, name)
        resolved = value
        if is_dataclass(current) and not isinstance(current, type):
            if value is None:
                resolved = current
            elif isinstance(value, Mapping):
                resolved = dataclass_from_params(
                    type(current), value, f"{block}.{name}", current
                )
        values[name] = resolved
    return replace(base, **values)


@dataclass(frozen=True)
class RetrySettings:
    """Retries of one HTTP call on 429, 5xx and connection errors.

    Attributes:
        max_attempts: Attempts in all, the first included.
        initial_backoff_s: Wait before the first retry when the service sends no
            ``Retry-After``; doubled (``multiplier``) each retry up to ``max_backoff_s``.
        timeout_s: Deadline for one call with all its retries and waits.
        request_timeout_s: Timeout of a single HTTP request.
    """

    max_attempts: int = 6
    initial_backoff_s: float = 2.0
    max_backoff_s: float = 60.0
    multiplier: float = 2.0
    timeout_s: float = 600.0
    request_timeout_s: float = 60.0


@dataclass(frozen=True)
class PollSettings:
    """Polling with back-off: ``interval_s`` growing by ``multiplier`` to ``max_interval_s``,
    giving up after ``timeout_s``."""

    interval_s: float = 10.0
    max_interval_s: float = 120.0
    multiplier: float = 1.5
    timeout_s: float = 3600.0


@dataclass(frozen=True)
class ExampleCounts:
    """How many reviews of each split go to Azure (stratified by label, seeded)."""

    train: int = 200
    validation: int = 50
    test: int = 100


@dataclass(frozen=True)
class FineTuningSettings:
    """The fine-tuning job request (``null`` hyperparameters let the service choose)."""

    base_model: str = "gpt-4o-mini-2024-07-18"
    n_epochs: int | None = 2
    batch_size: int | None = None
    learning_rate_multiplier: float | None = None
    seed: int | None = 42
    suffix: str | None = "imdb-sentiment"


@dataclass(frozen=True)
class ValidationSettings:
    """Checks before upload.

    Attributes:
        min_examples: Fewest examples per file (Azure OpenAI requires 10).
        max_tokens_per_example: Token limit of one example; ``None`` takes the base
            model's from :data:`MODEL_EXAMPLE_TOKEN_LIMITS`.
        max_label_imbalance: Largest allowed ratio between the most and the least
            frequent label word in the training file.
        token_counter: ``auto`` (tiktoken's encoding for the model where it can be
            loaded, else an estimate), ``tiktoken`` (fail without it) or ``estimate``.
        tiktoken_load_timeout_s: tiktoken downloads its encoding once; offline that
            can hang, so give up after this long.
    """

    min_examples: int = MIN_EXAMPLES
    max_tokens_per_example: int | None = None
    max_label_imbalance: float = 3.0
    token_counter: Literal["auto", "tiktoken", "estimate"] = "auto"
    tiktoken_load_timeout_s: float = 10.0


@dataclass(frozen=True)
class CostSettings:
    """List prices used for the estimate (check the Azure OpenAI pricing page: they
    vary by model, region and date)."""

    training_usd_per_million_tokens: float = 3.30
    hosting_usd_per_hour: float = 1.70
    assumed_epochs_when_auto: int = 3


@dataclass(frozen=True)
class DeploymentSettings:
    """The Azure Resource Manager deployment of the fine-tuned model.

    Attributes:
        name: Deployment name; chat completions are addressed to it.
        sku_name: ``standard`` (regional), ``globalstandard`` or ``developer``
            (fine-tuned models, where offered).
        capacity: Capacity units (thousands of tokens per minute for ``standard``).
        arm_api_version: ``api-version`` of the Microsoft.CognitiveServices API.
        management_endpoint: Resource Manager endpoint (another one for sovereign
            clouds; a local server in tests).
        poll: How to wait for the deployment to succeed (and to disappear on clean-up).
    """

    name: str = "imdb-sentiment-ft"
    sku_name: str = "standard"
    capacity: int = 1
    model_version: str = "1"
    arm_api_version: str = "2024-10-01"
    management_endpoint: str = "https://management.azure.com"
    poll: PollSettings = field(
        default_factory=lambda: PollSettings(
            interval_s=15.0, max_interval_s=60.0, multiplier=1.5, timeout_s=1800.0
        )
    )


@dataclass(frozen=True)
class InferenceSettings:
    """Chat completions of the deployed model."""

    max_tokens: int = 5
    temperature: float = 0.0


@dataclass(frozen=True)
class CleanupSettings:
    """What the clean-up step removes.

    Attributes:
        delete_deployment: Delete the deployment (it is billed per hour while it exists).
        delete_files: Delete the uploaded training and validation files too.
        on_failure: Delete the deployment when scoring fails half-way, before re-raising.
    """

    delete_deployment: bool = True
    delete_files: bool = False
    on_failure: bool = True


@dataclass(frozen=True)
class AzureOpenAISettings:
    """The ``deployment.azure_openai`` parameters block.

    Attributes:
        dry_run: ``true`` writes and validates the JSONL files and the job request
            without calling Azure; ``auto`` does so unless Azure credentials are set.
        api_version: ``api-version`` of the Azure OpenAI data-plane API.
        system_prompt: The system turn of every example and of every scoring request.
        label_words: Answer word per label name (``{neg: negative}``); label names not
            listed answer as themselves.
        resume_job: ``true`` picks up the fine-tuning job of the job record (or one the
            service holds for the same files and request) unless it failed or was
            cancelled; ``false`` creates a new, billed job every run.
    """

    dry_run: bool | Literal["auto"] = "auto"
    resume_job: bool = True
    api_version: str = "2024-10-21"
    system_prompt: str = (
        "Classify the sentiment of the movie review. "
        "Answer with exactly one word: positive or negative."
    )
    label_words: dict[str, str] = field(default_factory=dict)
    examples: ExampleCounts = field(default_factory=ExampleCounts)
    fine_tuning: FineTuningSettings = field(default_factory=FineTuningSettings)
    validation: ValidationSettings = field(default_factory=ValidationSettings)
    cost: CostSettings = field(default_factory=CostSettings)
    job_poll: PollSettings = field(default_factory=PollSettings)
    file_poll: PollSettings = field(
        default_factory=lambda: PollSettings(
            interval_s=2.0, max_interval_s=30.0, multiplier=1.5, timeout_s=600.0
        )
    )
    retry: RetrySettings = field(default_factory=RetrySettings)
    deployment: DeploymentSettings = field(default_factory=DeploymentSettings)
    inference: InferenceSettings = field(default_factory=InferenceSettings)
    cleanup: CleanupSettings = field(default_factory=CleanupSettings)

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> AzureOpenAISettings:
        settings = dataclass_from_params(cls, params, "deployment.azure_openai")
        if settings.dry_run not in (True, False, "auto"):
            raise ValueError(
                "deployment.azure_openai.dry_run must be true, false or auto, "
                f"not {settings.dry_run!r}"
            )
        if not isinstance(settings.resume_job, bool):
            raise ValueError(
                "deployment.azure_openai.resume_job must be true or false, "
                f"not {settings.resume_job!r}"
            )
        if settings.validation.token_counter not in ("auto", "tiktoken", "estimate"):
            raise ValueError(
                "deployment.azure_openai.validation.token_counter must be auto, "
                f"tiktoken or estimate, not {settings.validation.token_counter!r}"
            )
        return settings

    def is_dry_run(self, credentials: AzureCredentials) -> bool:
        """Whether Azure must not be called: forced, or ``auto`` without credentials."""
        if self.dry_run == "auto":
            return not credentials.can_call_openai
        return bool(self.dry_run)

    def label_word(self, label_name: str) -> str:
        return str(self.label_words.get(label_name, label_name))


# --- credentials --------------------------------------------------------------------

# Environment variables read by AzureCredentials.from_sources (credentials.yml keys in
# brackets). DefaultAzureCredential reads its own (AZURE_CLIENT_ID, AZURE_TENANT_ID, ...).
ENVIRONMENT_VARIABLES = {
    "endpoint": "AZURE_OPENAI_ENDPOINT",
    "api_key": "AZURE_OPENAI_API_KEY",
    "subscription_id": "AZURE_SUBSCRIPTION_ID",
    "resource_group": "AZURE_RESOURCE_GROUP",
    "account_name": "AZURE_OPENAI_ACCOUNT",
    "management_token": "AZURE_MANAGEMENT_TOKEN",
    "use_entra_id": "AZURE_OPENAI_USE_ENTRA_ID",
}
_SECRET_FIELDS = ("api_key", "management_token")


@dataclass(frozen=True)
class AzureCredentials:
    """Where and as whom to call Azure. Secrets are left out of ``repr``.

    Attributes:
        endpoint: ``https://<resource>.openai.azure.com`` (data plane).
        api_key: Key of the Azure OpenAI resource; without it (and with
            ``use_entra_id``) a Microsoft Entra ID token from ``DefaultAzureCredential``
            is used.
        subscription_id, resource_group, account_name: Address of the Azure OpenAI
            resource in Resource Manager, for deployments.
        management_token: A Resource Manager bearer token (for instance from
            ``az account get-access-token``); without it ``DefaultAzureCredential``
            gets one.
        use_entra_id: Authenticate data-plane calls with Entra ID instead of a key.
    """

    endpoint: str | None = None
    api_key: str | None = field(default=None, repr=False)
    subscription_id: str | None = None
    resource_group: str | None = None
    account_name: str | None = None
    management_token: str | None = field(default=None, repr=False)
    use_entra_id: bool = False

    @classmethod
    def from_sources(
        cls,
        configured: Mapping[str, Any] | None = None,
        environment: Mapping[str, str] | None = None,
    ) -> AzureCredentials:
        """Credentials from ``configured`` (credentials.yml) over environment variables."""
        environment = os.environ if environment is None else environment
        configured = dict(configured or {})
        unknown = set(configured) - set(ENVIRONMENT_VARIABLES)
        if unknown:
            raise ValueError(
                f"Unknown key(s) {sorted(unknown)} in the Azure OpenAI credentials; "
                f"expected some of {sorted(ENVIRONMENT_VARIABLES)}"
            )
        values: dict[str, Any] = {}
        for name, variable in ENVIRONMENT_VARIABLES.items():
            value = configured.get(name)
            if value in (None, ""):
                value = environment.get(variable) or None
            values[name] = value
        values["use_entra_id"] = str(values["use_entra_id"] or "").lower() in (
            "1",
            "true",
            "yes",
        )
        return cls(**values)

    @property
    def can_call_openai(self) -> bool:
        return bool(self.endpoint and (self.api_key or self.use_entra_id))

    def secrets(self) -> list[str]:
        """The secret values set, so callers can check nothing leaks them."""
        return [v for v in (getattr(self, n) for n in _SECRET_FIELDS) if v]

    def require(self, *names: str, purpose: str) -> None:
        """Raise naming the environment variables to set when ``names`` are missing."""
        missing = [n for n in names if not getattr(self, n)]
        if missing:
            variables = ", ".join(ENVIRONMENT_VARIABLES[n] for n in missing)
            raise ValueError(
                f"{purpose} needs {variables} (environment variables, or the keys "
                f"{missing} of the azure_openai block in conf/local/credentials.yml)"
            )


class AzureCredentialsDataset(AbstractDataset[None, AzureCredentials]):
    """Read-only dataset resolving :class:`AzureCredentials` for the nodes that call Azure.

    Kedro hands credentials to datasets only, and parameters are logged to MLflow, so
    secrets travel this way: environment variables, overridden by the ``credentials``
    Kedro resolves from ``conf/local/credentials.yml`` when the catalog entry names a
    block there. Neither ``repr`` nor the dataset's description shows a secret.

    Example catalog entry (``conf/local/catalog_deployment.yml``)::

        azure_openai_credentials:
          type: llm_finetuning.azure_openai.AzureCredentialsDataset
          credentials: azure_openai
    """

    def __init__(
        self,
        *,
        credentials: Mapping[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._configured = dict(credentials or {})
        self.metadata = metadata

    def load(self) -> AzureCredentials:
        return AzureCredentials.from_sources(self._configured)

    def save(self, data: None) -> None:
        raise DatasetError("AzureCredentialsDataset is read-only")

    def _describe(self) -> dict[str, Any]:
        return {"configured_keys": sorted(self._configured)}


# --- the job record -----------------------------------------------------------------

# Request keys that name uploaded files: their ids differ per upload, so a job is
# recognised by the files' content hashes instead.
FILE_ID_KEYS = ("training_file", "validation_file")


def sha256_hex(data: str | bytes) -> str:
    """Hex SHA-256 of ``data`` (text as UTF-8)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()


def upload_filename(stem: str, content: bytes) -> str:
    """``<stem>-<12 hex digits of the content's SHA-256>.jsonl``.

    The name says what the file holds, so an upload that took effect without an answer
    (or before a kill) is recognised by name, size and purpose instead of sent twice.
    """
    return f"{stem}-{sha256_hex(content)[:12]}.jsonl"


def job_identity(
    job_request: Mapping[str, Any],
    training_jsonl: str,
    validation_jsonl: str,
    endpoint: str | None,
) -> dict[str, Any]:
    """What must be unchanged for a recorded fine-tuning job to be resumed.

    The endpoint (another resource holds other jobs), every request key but the file
    ids (model, hyperparameters, seed, suffix) and the SHA-256 of both files' content.
    """
    identity: dict[str, Any] = {
        "endpoint": (endpoint or "").rstrip("/"),
        "training_file_sha256": sha256_hex(training_jsonl),
        "validation_file_sha256": sha256_hex(validation_jsonl),
    }
    for key, value in sorted(job_request.items()):
        if key not in FILE_ID_KEYS:
            identity[f"request.{key}"] = value
    return identity


def identity_changes(
    recorded: Mapping[str, Any], current: Mapping[str, Any]
) -> list[str]:
    """The keys on which two :func:`job_identity` values differ, sorted."""
    return sorted(
        key
        for key in set(recorded) | set(current)
        if recorded.get(key) != current.get(key)
    )


def _same_value(actual: Any, wanted: Any) -> bool:
    """Equal, numbers compared as floats (``2`` and ``2.0``, ``0.1`` and ``0.1000001``)."""
    numbers = (int, float)
    if isinstance(actual, numbers) and isinstance(wanted, numbers):
        return math.isclose(float(actual), float(wanted), rel_tol=1e-9)
    return actual == wanted


def job_matches(job: Any, request: Mapping[str, Any]) -> bool:
    """Whether a listed fine-tuning job was created for ``request``.

    Same training and validation file ids, base model and seed, and every
    hyperparameter asked for; the suffix too where the job shows it (Azure's jobs do,
    OpenAI's schema has none). Hyperparameters left to the service are not compared:
    the job shows the values the service chose.
    """
    suffix = getattr(job, "suffix", None)
    shown = job.hyperparameters
    checks = [
        job.training_file == request.get("training_file"),
        (job.validation_file or None) == (request.get("validation_file") or None),
        job.model == request.get("model"),
        "seed" not in request or _same_value(job.seed, request["seed"]),
        "suffix" not in request or suffix is None or suffix == request["suffix"],
        *(
            _same_value(getattr(shown, key, None), wanted)
            for key, wanted in (request.get("hyperparameters") or {}).items()
        ),
    ]
    return all(checks)


def write_json_atomically(path: Path, data: Any) -> None:
    """Replace ``path`` with ``data`` as JSON so a reader never sees half of it.

    Written to a temporary file in the same folder (same filesystem), flushed to disk,
    then renamed over ``path``: a kill at any moment leaves the old file or the new one.
    """
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, scratch = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(scratch, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(scratch)
        raise
    # The rename itself is durable only once the folder is flushed (POSIX).
    with contextlib.suppress(OSError):
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


class JobRecordDataset(AbstractDataset[dict[str, Any], dict[str, Any]]):
    """A JSON record on a local (or mounted) filesystem, replaced atomically.

    The Azure OpenAI job record must survive a kill at any moment, so it is saved
    with :func:`write_json_atomically` (``json.JSONDataset`` writes in place). Loading
    a file that does not exist gives ``{}``: the first run has no earlier job.

    A node cannot take and produce the same dataset, so a node that reads the previous
    record and writes the new one uses two entries on the same file, the reading one
    with ``read_only: true``::

        azure_openai_previous_job_record:
          type: llm_finetuning.azure_openai.JobRecordDataset
          filepath: data/06_models/azure_openai/job_record.json
          read_only: true
    """

    def __init__(
        self,
        *,
        filepath: str,
        read_only: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        text = str(filepath)
        if "://" in text and not text.startswith("file://"):
            raise ValueError(
                f"JobRecordDataset filepath {text!r}: only local or mounted paths "
                "(/Volumes/... included) can be replaced atomically"
            )
        self._filepath = Path(text.removeprefix("file://"))
        self._read_only = read_only
        self.metadata = metadata

    def load(self) -> dict[str, Any]:
        if not self._filepath.is_file():
            return {}
        try:
            data = json.loads(self._filepath.read_text("utf-8"))
        except json.JSONDecodeError as error:
            raise DatasetError(
                f"{self._filepath} is not valid JSON ({error}); delete it to start "
                "without a job record"
            ) from error
        if not isinstance(data, dict):
            raise DatasetError(
                f"{self._filepath} holds a JSON {type(data).__name__}, not an object"
            )
        return data

    def save(self, data: dict[str, Any]) -> None:
        if self._read_only:
            raise DatasetError(
                f"This entry only reads {self._filepath} (read_only: true); the "
                "record is written through its other catalog entry"
            )
        if not isinstance(data, Mapping):
            raise DatasetError(
                f"A job record is a JSON object, not {type(data).__name__} "
                f"({self._filepath})"
            )
        write_json_atomically(self._filepath, dict(data))

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "read_only": self._read_only}


# --- chat-format JSONL --------------------------------------------------------------


def chat_example(system_prompt: str, review: str, answer: str | None = None) -> dict:
    """One chat example: system prompt, the review as the user turn, the label word."""
    messages = [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": review},
    ]
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return {"messages": messages}


def chat_examples(
    reviews: pd.DataFrame, label_words: Sequence[str], system_prompt: str
) -> list[dict]:
    """Chat examples of ``reviews`` (columns ``text``, ``label``), in row order."""
    missing = {"text", "label"} - set(reviews.columns)
    if missing:
        raise ValueError(
            f"reviews lack column(s) {sorted(missing)}: {list(reviews.columns)}"
        )
    unknown = ~reviews["label"].isin(range(len(label_words)))
    if unknown.any():
        raise ValueError(
            f"{int(unknown.sum())} review(s) have labels outside 0..{len(label_words) - 1}: "
            f"row_id {reviews.loc[unknown, 'row_id'].head(5).tolist() if 'row_id' in reviews else ''}"
        )
    return [
        chat_example(system_prompt, str(text), label_words[int(label)])
        for text, label in zip(reviews["text"], reviews["label"], strict=True)
    ]


def to_jsonl(examples: Iterable[Mapping[str, Any]]) -> str:
    """JSON Lines with real UTF-8 characters (not ``\\u`` escapes): one example a line."""
    return "".join(
        json.dumps(example, ensure_ascii=False) + "\n" for example in examples
    )


def parse_jsonl(text: str, name: str) -> list[dict]:
    """Examples of a JSONL file; a line that is not JSON is an error naming the line."""
    examples = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            examples.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{name} line {number} is not valid JSON: {error}"
            ) from error
    return examples


# --- token counting -----------------------------------------------------------------


def tiktoken_encoding_name(model: str) -> str:
    """The tiktoken encoding of an OpenAI chat model family."""
    if model.startswith(("gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4")):
        return "o200k_base"
    return "cl100k_base"


def estimate_tokens(text: str) -> int:
    """A deliberately high estimate (one token per 3 UTF-8 bytes) for when tiktoken's
    encoding cannot be loaded: English averages about 4 characters per token."""
    return math.ceil(len(text.encode("utf-8")) / 3)


def _load_tiktoken(encoding_name: str, timeout_s: float) -> TokenCounter:
    """tiktoken's encoding, loaded in a thread: the first load downloads it."""
    import tiktoken

    result: dict[str, Any] = {}

    def load() -> None:
        try:
            result["encoding"] = tiktoken.get_encoding(encoding_name)
        except Exception as error:  # noqa: BLE001 - reported to the caller below
            result["error"] = error

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if "encoding" not in result:
        raise RuntimeError(
            result.get("error")
            or f"loading tiktoken's {encoding_name} took over {timeout_s} s"
        )
    encoding = result["encoding"]
    return lambda text: len(encoding.encode(text, disallowed_special=()))


def token_counter_for(
    model: str, settings: ValidationSettings
) -> tuple[TokenCounter, str]:
    """A token counter for ``model`` and a description of it for the report."""
    if settings.token_counter != "estimate":
        name = tiktoken_encoding_name(model)
        try:
            return _load_tiktoken(
                name, settings.tiktoken_load_timeout_s
            ), f"tiktoken {name}"
        except Exception as error:
            if settings.token_counter == "tiktoken":
                raise RuntimeError(
                    f"tiktoken's {name} encoding could not be loaded ({error}); set "
                    "validation.token_counter to auto or estimate to count without it"
                ) from error
            logger.warning(
                "tiktoken's %s encoding could not be loaded (%s): token counts are "
                "estimated (UTF-8 bytes / 3, on the high side)",
                name,
                error,
            )
    return estimate_tokens, "estimate: UTF-8 bytes / 3 (tiktoken encoding not loaded)"


def chat_tokens(messages: Sequence[Mapping[str, Any]], count: TokenCounter) -> int:
    """Tokens of a chat example as OpenAI's cookbook counts them: 3 per message plus
    its role and content, plus 3 priming the reply."""
    return 3 + sum(
        3 + count(str(m.get("role", ""))) + count(str(m.get("content", "")))
        for m in messages
    )


def example_token_limit(model: str, settings: ValidationSettings) -> int:
    if settings.max_tokens_per_example:
        return settings.max_tokens_per_example
    for prefix in sorted(MODEL_EXAMPLE_TOKEN_LIMITS, key=len, reverse=True):
        if model.startswith(prefix):
            return MODEL_EXAMPLE_TOKEN_LIMITS[prefix]
    raise ValueError(
        f"No known per-example token limit for base model {model!r}: set "
        "deployment.azure_openai.validation.max_tokens_per_example"
    )


# --- validation ---------------------------------------------------------------------


def _check_example(example: Any, label_words: Sequence[str]) -> str | None:
    """Why ``example`` is not a valid system/user/assistant example, or ``None``."""
    if not isinstance(example, dict) or not isinstance(example.get("messages"), list):
        return 'not an object with a "messages" list'
    messages = example["messages"]
    roles = [m.get("role") if isinstance(m, dict) else None for m in messages]
    if roles != ["system", "user", "assistant"]:
        return f"roles are {roles}, expected ['system', 'user', 'assistant']"
    for message in messages:
        content = message.get("content")
        if not isinstance(content, str) or not content.strip():
            return f"the {message['role']} message has no text"
    answer = messages[2]["content"]
    if answer not in label_words:
        return f"the assistant answer {answer!r} is not one of the label words {list(label_words)}"
    return None


def _file_report(
    text: str,
    name: str,
    label_words: Sequence[str],
    *,
    count: TokenCounter,
    token_limit: int,
    min_examples: int,
) -> tuple[dict[str, Any], list[str]]:
    """Statistics of one JSONL file and the problems found in it."""
    problems: list[str] = []
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        line = text.count("\n", 0, error.start) + 1
        problems.append(
            f"{name} line {line} cannot be encoded as UTF-8: {error.reason}"
        )
        return {"n_examples": 0}, problems
    try:
        examples = parse_jsonl(text, name)
    except ValueError as error:
        return {"n_examples": 0}, [str(error)]
    invalid = []
    for number, example in enumerate(examples, start=1):
        reason = _check_example(example, label_words)
        if reason:
            invalid.append(f"{name} example {number}: {reason}")
    problems.extend(invalid[:10])
    if len(invalid) > 10:
        problems.append(f"{name}: {len(invalid) - 10} more invalid example(s)")
    if len(examples) < min_examples:
        problems.append(
            f"{name} has {len(examples)} example(s); Azure OpenAI needs at least {min_examples}"
        )
    if invalid:
        return {"n_examples": len(examples)}, problems
    tokens = [chat_tokens(example["messages"], count) for example in examples]
    too_long = [i + 1 for i, n in enumerate(tokens) if n > token_limit]
    if too_long:
        problems.append(
            f"{name}: {len(too_long)} example(s) exceed the {token_limit}-token limit "
            f"per example: example number(s) {too_long[:10]}"
        )
    answers = Counter(example["messages"][2]["content"] for example in examples)
    total = sum(tokens)
    return {
        "n_examples": len(examples),
        "label_counts": {word: answers.get(word, 0) for word in label_words},
        "label_shares": {
            word: round(answers.get(word, 0) / max(len(examples), 1), 4)
            for word in label_words
        },
        "tokens": {
            "total": total,
            "mean": round(total / max(len(tokens), 1), 1),
            "max": max(tokens, default=0),
            "n_over_limit": len(too_long),
        },
        "utf8_bytes": len(text.encode("utf-8")),
    }, problems


def validate_chat_jsonl(
    train_jsonl: str,
    validation_jsonl: str,
    label_words: Sequence[str],
    settings: AzureOpenAISettings,
    *,
    count: TokenCounter | None = None,
    counter_name: str | None = None,
) -> dict[str, Any]:
    """Check both files as Azure OpenAI fine-tuning will, before anything is uploaded.

    Raises:
        ValueError: listing every problem (file, example number, reason): fewer than
            ``min_examples`` examples, text that is not UTF-8, lines that are not JSON
            or not system/user/assistant examples, answers that are not label words,
            examples over the token limit, a label word missing from the training file.

    Returns:
        Per file: examples, label counts and shares, token statistics; the trained
        tokens and cost estimate; warnings (label imbalance).
    """
    model = settings.fine_tuning.base_model
    if count is None:
        count, counter_name = token_counter_for(model, settings.validation)
    limit = example_token_limit(model, settings.validation)
    reports, problems = {}, []
    for name, text in (
        ("train.jsonl", train_jsonl),
        ("validation.jsonl", validation_jsonl),
    ):
        reports[name], found = _file_report(
            text,
            name,
            label_words,
            count=count,
            token_limit=limit,
            min_examples=settings.validation.min_examples,
        )
        problems.extend(found)
    train = reports["train.jsonl"]
    warnings: list[str] = []
    if not problems:
        counts = train["label_counts"]
        absent = [word for word, n in counts.items() if n == 0]
        if absent:
            problems.append(f"train.jsonl has no example answering {absent}")
        else:
            ratio = max(counts.values()) / min(counts.values())
            if ratio > settings.validation.max_label_imbalance:
                warnings.append(
                    f"train.jsonl label counts {counts} are imbalanced (ratio "
                    f"{ratio:.2f} > {settings.validation.max_label_imbalance})"
                )
    if problems:
        raise ValueError(
            "The fine-tuning files are not valid for Azure OpenAI:\n- "
            + "\n- ".join(problems)
        )
    for warning in warnings:
        logger.warning(warning)
    epochs = settings.fine_tuning.n_epochs
    assumed_epochs = epochs or settings.cost.assumed_epochs_when_auto
    trained_tokens = train["tokens"]["total"] * assumed_epochs
    return {
        "base_model": model,
        "token_counter": counter_name,
        "max_tokens_per_example": limit,
        "files": reports,
        "estimate": {
            "n_epochs": assumed_epochs,
            "n_epochs_assumed": epochs is None,
            "trained_tokens": trained_tokens,
            "training_cost_usd": round(
                trained_tokens / 1e6 * settings.cost.training_usd_per_million_tokens, 4
            ),
            "hosting_cost_usd_per_hour": settings.cost.hosting_usd_per_hour,
            "prices": asdict(settings.cost),
            "note": "list prices from parameters; check the Azure OpenAI pricing page",
        },
        "warnings": warnings,
    }


def fine_tuning_job_request(settings: FineTuningSettings) -> dict[str, Any]:
    """The body of ``POST /openai/fine_tuning/jobs`` without the file ids."""
    hyperparameters = {
        key: value
        for key, value in (
            ("n_epochs", settings.n_epochs),
            ("batch_size", settings.batch_size),
            ("learning_rate_multiplier", settings.learning_rate_multiplier),
        )
        if value is not None
    }
    request: dict[str, Any] = {"model": settings.base_model}
    if hyperparameters:
        request["hyperparameters"] = hyperparameters
    if settings.seed is not None:
        request["seed"] = settings.seed
    if settings.suffix:
        request["suffix"] = settings.suffix
    return request


# --- answers ------------------------------------------------------------------------

_STRIP = " \t\r\n.,;:!?\"'`*_()[]{}<>"


def parse_label_word(answer: str | None, label_words: Sequence[str]) -> int:
    """The class id a chat answer names, or ``-1`` when it names none or several.

    Case, surrounding punctuation and markdown are ignored (``"Positive."``), and a
    short sentence naming exactly one label word counts (``"The review is negative"``).
    Answers naming two label words, none, or rambling past ``MAX_ANSWER_CHARS`` are
    unparseable.
    """
    if not answer or len(answer) > MAX_ANSWER_CHARS:
        return INVALID_LABEL
    words = [w.lower() for w in label_words]
    cleaned = answer.strip(_STRIP).lower()
    if cleaned in words:
        return words.index(cleaned)
    found = {
        i
        for i, word in enumerate(words)
        if re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", cleaned)
    }
    return found.pop() if len(found) == 1 else INVALID_LABEL


# --- retries and deadlines ----------------------------------------------------------


class AzureOpenAIError(RuntimeError):
    """A call to Azure failed for good (after retries), with the service's message."""


class FineTuningJobFailed(AzureOpenAIError):
    """The fine-tuning job ended ``failed`` or ``cancelled``."""


class DeploymentFailed(AzureOpenAIError):
    """The Resource Manager deployment ended ``Failed`` or ``Canceled``."""


class AzureTimeout(AzureOpenAIError, TimeoutError):
    """A wait ran past its deadline (a ``timeout_s`` in the parameters)."""


class _HttpError(Exception):
    """A Resource Manager answer that is not a success (raised for the retry loop)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.status_code = response.status_code
        super().__init__(
            f"{response.request.method} {_safe_url(response.request.url)}: "
            f"HTTP {response.status_code} {_error_message(response)}"
        )


def _safe_url(url: httpx.URL | str) -> str:
    """The URL without its query (which holds nothing secret, but is long)."""
    return str(url).split("?", 1)[0]


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return f"{error.get('code', '')}: {error.get('message', '')}".strip(": ")
    return json.dumps(body)[:500]


class Deadline:
    """A point in time a wait must not pass, on an injectable clock."""

    def __init__(self, timeout_s: float, clock: Clock, what: str) -> None:
        self.timeout_s = timeout_s
        self.what = what
        self._clock = clock
        self._end = clock() + timeout_s

    def remaining(self) -> float:
        return self._end - self._clock()

    def check(self, detail: str = "") -> None:
        if self.remaining() <= 0:
            raise AzureTimeout(
                f"Timed out after {self.timeout_s:g} s {self.what}"
                + (f" ({detail})" if detail else "")
                + ": raise the matching timeout_s in parameters_deployment.yml or check "
                "the resource in the Azure portal"
            )


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The wait a 429/503 answer asks for: ``retry-after-ms``, ``Retry-After`` (seconds
    or an HTTP date)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    for name, scale in (("retry-after-ms", 1e-3), ("x-ms-retry-after-ms", 1e-3)):
        if name in lowered:
            try:
                return max(float(lowered[name]) * scale, 0.0)
            except ValueError:
                pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(parsed.timestamp() - time.time(), 0.0) if parsed else None


def _retryable(error: BaseException) -> tuple[bool, float | None]:
    """Whether ``error`` deserves another attempt, and the wait the service asked for."""
    if isinstance(error, openai.APIStatusError | _HttpError):
        status = error.status_code
        if status in {408, 429} or status >= 500:
            return True, retry_after_seconds(error.response.headers)
        return False, None
    if isinstance(error, openai.APIConnectionError | httpx.TransportError):
        return True, None
    return False, None


_Result = TypeVar("_Result")


def call_with_retries(
    operation: Callable[[], _Result],
    what: str,
    settings: RetrySettings,
    sleep: Sleep,
    clock: Clock,
) -> _Result:
    """Run ``operation``, retrying 429, 408, 5xx and connection errors.

    Waits what ``Retry-After`` asks, else an exponential back-off; never past the
    call's deadline (``settings.timeout_s``).
    """
    deadline = Deadline(settings.timeout_s, clock, f"calling {what}")
    backoff = settings.initial_backoff_s
    for attempt in range(1, settings.max_attempts + 1):
        try:
            return operation()
        except Exception as error:
            retry, asked = _retryable(error)
            if not retry or attempt == settings.max_attempts:
                raise AzureOpenAIError(
                    f"{what} failed after {attempt} attempt(s): {error}"
                ) from error
            wait = asked if asked is not None else min(backoff, settings.max_backoff_s)
            backoff *= settings.multiplier
            if wait > deadline.remaining():
                raise AzureTimeout(
                    f"{what}: the service asked to wait {wait:g} s, past the "
                    f"{settings.timeout_s:g} s deadline (retry.timeout_s): {error}"
                ) from error
            logger.warning(
                "%s: attempt %d/%d failed (%s); retrying in %.1f s%s",
                what,
                attempt,
                settings.max_attempts,
                getattr(error, "status_code", type(error).__name__),
                wait,
                " as Retry-After asks" if asked is not None else "",
            )
            sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


def outcome_unknown(error: BaseException) -> bool:
    """Whether the service may have acted on a request that failed with ``error``.

    A 5xx, a 408 or a lost connection (a timeout included) can come after the service
    stored what was asked; a 429 or another 4xx is a refusal.
    """
    if isinstance(error, openai.APIStatusError | _HttpError):
        return error.status_code == 408 or error.status_code >= 500
    return isinstance(error, openai.APIConnectionError | httpx.TransportError)


def create_at_most_once(
    create: Callable[[], _Result],
    find_created: Callable[[], _Result | None],
    what: str,
    *,
    settings: RetrySettings,
    sleep: Sleep,
    clock: Clock,
) -> _Result:
    """Send a request that creates something (upload, job) so that it takes effect once.

    Like :func:`call_with_retries`, but never blindly: after an answer that leaves the
    outcome unknown (:func:`outcome_unknown`), and the back-off wait, ``find_created``
    looks for what the request would have created; only when it finds nothing is the
    request sent again. A 429 is retried after the wait it asks for (nothing was
    created); other 4xx answers fail at once.
    """
    deadline = Deadline(settings.timeout_s, clock, f"calling {what}")
    backoff = settings.initial_backoff_s
    for attempt in range(1, settings.max_attempts + 1):
        try:
            return create()
        except Exception as error:
            retry, asked = _retryable(error)
            unknown = outcome_unknown(error)
            last = attempt == settings.max_attempts
            if not retry or (last and not unknown):
                raise AzureOpenAIError(
                    f"{what} failed after {attempt} attempt(s): {error}"
                ) from error
            wait = asked if asked is not None else min(backoff, settings.max_backoff_s)
            backoff *= settings.multiplier
            if wait > deadline.remaining():
                if not unknown:
                    raise AzureTimeout(
                        f"{what}: the service asked to wait {wait:g} s, past the "
                        f"{settings.timeout_s:g} s deadline (retry.timeout_s): {error}"
                    ) from error
                # Still look for what the request created before giving up.
                wait = max(deadline.remaining(), 0.0)
            logger.warning(
                "%s: attempt %d/%d failed (%s)%s; waiting %.1f s",
                what,
                attempt,
                settings.max_attempts,
                getattr(error, "status_code", type(error).__name__),
                ", it may have taken effect" if unknown else "",
                wait,
            )
            sleep(wait)
            if unknown:
                found = find_created()
                if found is not None:
                    logger.warning(
                        "%s: the failed attempt had taken effect (%s): not sending "
                        "it again",
                        what,
                        getattr(found, "id", None) or "found by listing",
                    )
                    return found
                if last or deadline.remaining() <= 0:
                    raise AzureOpenAIError(
                        f"{what} failed after {attempt} attempt(s), and nothing it "
                        f"would have created exists: {error}"
                    ) from error
                logger.info("%s: nothing was created; sending it again", what)
    raise AssertionError("unreachable")  # pragma: no cover


def _poll_intervals(settings: PollSettings) -> Iterable[float]:
    interval = settings.interval_s
    while True:
        yield interval
        interval = min(interval * settings.multiplier, settings.max_interval_s)


# --- the service --------------------------------------------------------------------


class AzureOpenAIService:
    """Azure OpenAI data plane (openai SDK) and Resource Manager deployments (REST).

    Args:
        credentials: Endpoint, key and resource address.
        settings: The ``deployment.azure_openai`` parameters.
        sleep, clock: Injected in tests so that back-off and timeouts take no time.
        openai_client: An ``AzureOpenAI`` client to use instead of building one.
        arm_client: An ``httpx.Client`` for Resource Manager calls.
        credential: An azure-identity credential (``DefaultAzureCredential`` when
            ``None`` and a token is needed).
    """

    def __init__(
        self,
        credentials: AzureCredentials,
        settings: AzureOpenAISettings,
        *,
        sleep: Sleep = time.sleep,
        clock: Clock = time.monotonic,
        openai_client: openai.AzureOpenAI | None = None,
        arm_client: httpx.Client | None = None,
        credential: Any = None,
    ) -> None:
        self.credentials = credentials
        self.settings = settings
        self._sleep = sleep
        self._clock = clock
        self._openai = openai_client
        self._arm = arm_client
        self._credential = credential

    # -- plumbing

    def _azure_credential(self) -> Any:
        if self._credential is None:
            from azure.identity import DefaultAzureCredential

            self._credential = DefaultAzureCredential()
        return self._credential

    @property
    def client(self) -> openai.AzureOpenAI:
        if self._openai is None:
            self.credentials.require("endpoint", purpose="Calling Azure OpenAI")
            kwargs: dict[str, Any] = {}
            if self.credentials.api_key:
                kwargs["api_key"] = self.credentials.api_key
            elif self.credentials.use_entra_id:
                from azure.identity import get_bearer_token_provider

                kwargs["azure_ad_token_provider"] = get_bearer_token_provider(
                    self._azure_credential(), COGNITIVE_SERVICES_SCOPE
                )
            else:
                self.credentials.require("api_key", purpose="Calling Azure OpenAI")
            self._openai = openai.AzureOpenAI(
                azure_endpoint=self.credentials.endpoint,
                api_version=self.settings.api_version,
                # Retries are ours: GETs through call_with_retries (injectable sleep,
                # one deadline), POSTs that create through create_at_most_once. The
                # SDK's own would re-send an upload or job creation blindly on a 5xx.
                max_retries=0,
                timeout=self.settings.retry.request_timeout_s,
                **kwargs,
            )
        return self._openai

    def _retry(self, operation: Callable[[], _Result], what: str) -> _Result:
        return call_with_retries(
            operation, what, self.settings.retry, self._sleep, self._clock
        )

    def _poll(self, settings: PollSettings, what: str) -> Iterable[Deadline]:
        """Yield before each check; sleep between checks; raise past the deadline."""
        deadline = Deadline(settings.timeout_s, self._clock, what)
        for interval in _poll_intervals(settings):
            yield deadline
            deadline.check()
            self._sleep(max(min(interval, deadline.remaining()), 0.0))

    def _create_once(
        self,
        create: Callable[[], _Result],
        find_created: Callable[[], _Result | None],
        what: str,
    ) -> _Result:
        return create_at_most_once(
            create,
            find_created,
            what,
            settings=self.settings.retry,
            sleep=self._sleep,
            clock=self._clock,
        )

    def _listed(self, first_page: Callable[[], Any], what: str) -> list[Any]:
        """Every item of a paged listing (newest first), each page read with retries.

        Stops after :data:`MAX_LISTED` items, or at a page that brings nothing new (a
        service that ignores ``after`` would otherwise repeat its page forever).
        """
        page = self._retry(first_page, what)
        items: list[Any] = []
        seen: set[str] = set()
        while True:
            new = [item for item in page.data if item.id not in seen]
            seen.update(item.id for item in new)
            items.extend(new)
            if not new or len(items) >= MAX_LISTED or not page.has_next_page():
                return items[:MAX_LISTED]
            page = self._retry(page.get_next_page, f"{what} (next page)")

    # -- files

    def _matching_files(self, filename: str, size: int) -> list[Any]:
        """Uploaded fine-tuning files with this name and size (usable or not)."""
        return [
            file
            for file in self._listed(
                lambda: self.client.files.list(purpose="fine-tune"), "listing files"
            )
            if file.filename == filename
            and file.bytes == size
            and file.purpose == "fine-tune"
        ]

    def upload_file(self, filename: str, content: bytes) -> str:
        """Upload a fine-tuning file at most once; return its id once Azure has processed it.

        A file of the same name, size and purpose already uploaded (and not failed) is
        used instead of a new upload: :func:`upload_filename` puts the content's hash in
        the name. An upload answered with a 5xx or a timeout is looked for the same way
        before it is sent again.
        """
        size = len(content)
        matching = self._matching_files(filename, size)
        usable = [f for f in matching if f.status not in FILE_FAILED_STATUSES]
        if usable:
            file_id = usable[0].id
            logger.info(
                "Using file %s: %s (%d bytes) was uploaded before",
                file_id,
                filename,
                size,
            )
        else:
            known = {f.id for f in matching}

            def find_created() -> Any:
                found = [
                    f
                    for f in self._matching_files(filename, size)
                    if f.id not in known and f.status not in FILE_FAILED_STATUSES
                ]
                return found[0] if found else None

            file_id = self._create_once(
                lambda: self.client.files.create(
                    file=(filename, content, "application/jsonl"), purpose="fine-tune"
                ),
                find_created,
                f"uploading {filename}",
            ).id
            logger.info("Uploaded %s as file %s (%d bytes)", filename, file_id, size)
        return self._wait_for_file(file_id, filename)

    def _wait_for_file(self, file_id: str, filename: str) -> str:
        for deadline in self._poll(
            self.settings.file_poll, f"waiting for file {file_id}"
        ):
            status = self._retry(
                lambda: self.client.files.retrieve(file_id),
                f"reading file {file_id}",
            ).status
            if status == "processed":
                return file_id
            if status in FILE_FAILED_STATUSES:
                raise AzureOpenAIError(
                    f"Azure OpenAI could not import {filename} (file {file_id}): "
                    f"status {status}"
                )
            deadline.check(f"file {file_id} status {status}")
        raise AssertionError("unreachable")  # pragma: no cover

    def delete_file(self, file_id: str) -> bool:
        """Delete an uploaded file; ``False`` when it was already gone."""
        try:
            self._retry(
                lambda: self.client.files.delete(file_id), f"deleting file {file_id}"
            )
        except AzureOpenAIError as error:
            if isinstance(error.__cause__, openai.NotFoundError):
                return False
            raise
        return True

    def file_text(self, file_id: str) -> str:
        """Content of a result file (``results.csv``), decoded from base64 if so sent."""
        raw = self._retry(
            lambda: self.client.files.content(file_id).read(),
            f"downloading file {file_id}",
        )
        try:
            return base64.b64decode(raw, validate=True).decode("utf-8")
        except ValueError:
            return raw.decode("utf-8", errors="replace")

    # -- fine-tuning jobs

    def matching_jobs(self, request: Mapping[str, Any]) -> list[Any]:
        """Jobs of this resource created for ``request`` (:func:`job_matches`), newest
        first, whatever their status."""
        return [
            job
            for job in self._listed(
                lambda: self.client.fine_tuning.jobs.list(limit=LIST_PAGE_SIZE),
                "listing fine-tuning jobs",
            )
            if job_matches(job, request)
        ]

    def create_job(self, request: Mapping[str, Any]) -> Any:
        """Create a fine-tuning job at most once (a 5xx or timeout is checked by listing
        the jobs before the request is sent again)."""
        known = {job.id for job in self.matching_jobs(request)}

        def find_created() -> Any:
            found = [j for j in self.matching_jobs(request) if j.id not in known]
            return found[0] if found else None

        job = self._create_once(
            lambda: self.client.fine_tuning.jobs.create(**request),
            find_created,
            "creating the fine-tuning job",
        )
        logger.info("Created fine-tuning job %s (status %s)", job.id, job.status)
        return job

    def find_or_create_job(
        self, request: Mapping[str, Any], *, reuse: bool = True
    ) -> tuple[Any, bool]:
        """A job for ``request``, and whether this call created it.

        With ``reuse``, the newest job created earlier for the same files and request
        that has not failed or been cancelled is returned instead of a new one: what an
        earlier run created just before it was killed (or before its record was saved).
        """
        if reuse:
            for job in self.matching_jobs(request):
                if job.status not in JOB_FAILED_STATUSES:
                    logger.info(
                        "Using fine-tuning job %s (status %s): created earlier for the "
                        "same files and request",
                        job.id,
                        job.status,
                    )
                    return job, False
        return self.create_job(request), True

    def retrieve_job(self, job_id: str) -> Any | None:
        """The job, or ``None`` when this resource has no job of that id."""
        try:
            return self._retry(
                lambda: self.client.fine_tuning.jobs.retrieve(job_id),
                f"reading job {job_id}",
            )
        except AzureOpenAIError as error:
            if isinstance(error.__cause__, openai.NotFoundError):
                return None
            raise

    def _new_events(self, job_id: str, seen: set[str]) -> list[Any]:
        page = self._retry(
            lambda: self.client.fine_tuning.jobs.list_events(job_id, limit=100),
            f"listing events of job {job_id}",
        )
        events = [e for e in page.data if e.id not in seen]
        seen.update(e.id for e in events)
        return sorted(events, key=lambda e: e.created_at)

    def wait_for_job(self, job_id: str) -> tuple[Any, list[dict[str, Any]]]:
        """Poll the job with back-off, logging its new events, until it ends.

        Raises:
            FineTuningJobFailed: on ``failed`` or ``cancelled``, with the service's
                error message and the last events.
            AzureTimeout: past ``job_poll.timeout_s``.
        """
        seen: set[str] = set()
        events: list[dict[str, Any]] = []
        for deadline in self._poll(
            self.settings.job_poll, f"waiting for fine-tuning job {job_id}"
        ):
            job = self._retry(
                lambda: self.client.fine_tuning.jobs.retrieve(job_id),
                f"reading job {job_id}",
            )
            for event in self._new_events(job_id, seen):
                logger.info("Job %s: %s", job_id, event.message)
                events.append(
                    {
                        "created_at": event.created_at,
                        "level": event.level,
                        "message": event.message,
                    }
                )
            if job.status == JOB_SUCCEEDED:
                return job, events
            if job.status in JOB_FAILED_STATUSES:
                error = getattr(job, "error", None)
                message = getattr(error, "message", None) or "no error message"
                code = getattr(error, "code", None)
                raise FineTuningJobFailed(
                    f"Fine-tuning job {job_id} {job.status}: "
                    f"{f'{code}: ' if code else ''}{message}"
                    + (f" (last event: {events[-1]['message']})" if events else "")
                )
            deadline.check(f"job {job_id} status {job.status}")
        raise AssertionError("unreachable")  # pragma: no cover

    # -- chat completions

    def complete(
        self, deployment: str, system_prompt: str, user: str
    ) -> tuple[str | None, str | None]:
        """The deployment's answer to one review, and an error for a filtered prompt.

        A prompt Azure's content filter rejects (HTTP 400, ``content_filter``) is an
        answer-level error, not a crash: the review counts as unparseable.
        """
        inference = self.settings.inference
        try:
            response = self._retry(
                lambda: self.client.chat.completions.create(
                    model=deployment,
                    messages=chat_example(system_prompt, user)["messages"],
                    max_tokens=inference.max_tokens,
                    temperature=inference.temperature,
                ),
                f"chat completion on deployment {deployment}",
            )
        except AzureOpenAIError as error:
            cause = error.__cause__
            if (
                isinstance(cause, openai.BadRequestError)
                and cause.code == "content_filter"
            ):
                return None, "content_filter"
            raise
        if not response.choices:
            return None, "no choices"
        choice = response.choices[0]
        return choice.message.content, (
            choice.finish_reason if choice.finish_reason == "content_filter" else None
        )

    # -- Resource Manager deployments

    @property
    def arm(self) -> httpx.Client:
        if self._arm is None:
            self._arm = httpx.Client(timeout=self.settings.retry.request_timeout_s)
        return self._arm

    def _management_token(self) -> str:
        if self.credentials.management_token:
            return self.credentials.management_token
        scope = (
            self.settings.deployment.management_endpoint.rstrip("/") + ARM_SCOPE_SUFFIX
        )
        return self._azure_credential().get_token(scope).token

    def deployment_url(self, name: str | None = None) -> str:
        self.credentials.require(
            "subscription_id",
            "resource_group",
            "account_name",
            purpose="Deploying through Azure Resource Manager",
        )
        c, d = self.credentials, self.settings.deployment
        return (
            f"{d.management_endpoint.rstrip('/')}/subscriptions/{c.subscription_id}"
            f"/resourceGroups/{c.resource_group}/providers/Microsoft.CognitiveServices"
            f"/accounts/{c.account_name}/deployments/{name or d.name}"
        )

    def _arm_send(
        self, method: str, url: str, body: Mapping[str, Any] | None = None
    ) -> httpx.Response:
        """One Resource Manager request; an answer that is not a success raises."""
        response = self.arm.request(
            method,
            url,
            params=None
            if "api-version=" in url
            else {"api-version": self.settings.deployment.arm_api_version},
            json=body,
            headers={"Authorization": f"Bearer {self._management_token()}"},
        )
        if response.status_code >= 400 and not (
            method == "DELETE" and response.status_code == 404
        ):
            raise _HttpError(response)
        return response

    def _arm_request(
        self, method: str, url: str, what: str, body: Mapping[str, Any] | None = None
    ) -> httpx.Response:
        return self._retry(lambda: self._arm_send(method, url, body), what)

    def get_deployment(self, name: str | None = None) -> dict[str, Any] | None:
        """The deployment resource, or ``None`` when there is none of that name."""
        name = name or self.settings.deployment.name
        try:
            return self._arm_request(
                "GET", self.deployment_url(name), f"reading deployment {name}"
            ).json()
        except AzureOpenAIError as error:
            cause = error.__cause__
            if isinstance(cause, _HttpError) and cause.status_code == 404:
                return None
            raise

    def _deploys(self, resource: Mapping[str, Any] | None, model: str) -> bool:
        """Whether ``resource`` is a deployment of ``model`` (this version) that has not
        failed: one to wait for or use, not to create again."""
        if not resource:
            return False
        properties = resource.get("properties", {})
        deployed = properties.get("model", {})
        return (
            deployed.get("name") == model
            and str(deployed.get("version"))
            == str(self.settings.deployment.model_version)
            and properties.get("provisioningState") not in DEPLOYMENT_FAILED_STATES
        )

    def deploy(self, model: str) -> dict[str, Any]:
        """Create or update the deployment of ``model``; wait until it has succeeded.

        A deployment of that name already deploying ``model`` (an earlier run's, or
        this request's after an unanswered PUT) is used as it is: no second PUT.

        Raises:
            DeploymentFailed: ``Failed`` or ``Canceled``, with Resource Manager's message.
            AzureTimeout: past ``deployment.poll.timeout_s``.
        """
        d = self.settings.deployment
        url = self.deployment_url()
        operation_url = None
        existing = self.get_deployment()
        if self._deploys(existing, model):
            logger.info(
                "Deployment %s of %s exists (%s): using it",
                d.name,
                model,
                existing["properties"].get("provisioningState"),
            )
        else:
            if existing:
                logger.info(
                    "Deployment %s exists with %s (%s): updating it to %s",
                    d.name,
                    existing.get("properties", {}).get("model", {}).get("name"),
                    existing.get("properties", {}).get("provisioningState"),
                    model,
                )
            body = {
                "sku": {"name": d.sku_name, "capacity": d.capacity},
                "properties": {
                    "model": {
                        "format": "OpenAI",
                        "name": model,
                        "version": d.model_version,
                    }
                },
            }
            sent = self._create_once(
                lambda: self._arm_send("PUT", url, body),
                lambda: self._deployment_if_deploying(model),
                f"creating deployment {d.name}",
            )
            if isinstance(sent, httpx.Response):
                operation_url = sent.headers.get("Azure-AsyncOperation")
                logger.info(
                    "Deployment %s of %s requested (HTTP %d)",
                    d.name,
                    model,
                    sent.status_code,
                )
        for deadline in self._poll(d.poll, f"waiting for deployment {d.name}"):
            resource = self._arm_request(
                "GET", url, f"reading deployment {d.name}"
            ).json()
            state = resource.get("properties", {}).get("provisioningState", "Unknown")
            if state == "Succeeded":
                logger.info("Deployment %s succeeded", d.name)
                return resource
            if state in DEPLOYMENT_FAILED_STATES:
                raise DeploymentFailed(
                    f"Deployment {d.name} of {model} {state.lower()}: "
                    f"{self._operation_error(operation_url) or json.dumps(resource.get('properties', {}))}"
                )
            deadline.check(f"deployment {d.name} is {state}")
        raise AssertionError("unreachable")  # pragma: no cover

    def _deployment_if_deploying(self, model: str) -> dict[str, Any] | None:
        resource = self.get_deployment()
        return resource if self._deploys(resource, model) else None

    def _operation_error(self, operation_url: str | None) -> str | None:
        """The error message of Resource Manager's asynchronous operation, if any."""
        if not operation_url:
            return None
        try:
            operation = self._arm_request(
                "GET", operation_url, "reading the deployment operation"
            ).json()
        except AzureOpenAIError:
            return None
        error = operation.get("error") or {}
        return (
            f"{error.get('code', '')}: {error.get('message', '')}".strip(": ") or None
        )

    def delete_deployment(self, name: str | None = None) -> bool:
        """Delete the deployment and wait until it is gone; ``False`` if there was none."""
        d = self.settings.deployment
        name = name or d.name
        url = self.deployment_url(name)
        response = self._arm_request("DELETE", url, f"deleting deployment {name}")
        if response.status_code == 404:
            return False
        for deadline in self._poll(
            d.poll, f"waiting for deployment {name} to be deleted"
        ):
            try:
                self._arm_request("GET", url, f"reading deployment {name}")
            except AzureOpenAIError as error:
                cause = error.__cause__
                if isinstance(cause, _HttpError) and cause.status_code == 404:
                    logger.info("Deployment %s deleted", name)
                    return True
                raise
            deadline.check(f"deployment {name} still exists")
        raise AssertionError("unreachable")  # pragma: no cover
