"""The ``deployment.azure_openai`` parameters: the defaults are these fields' (an env's
``parameters_deployment.yml`` names only what differs); docs/deployment.md lists them."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, PositiveFloat, PositiveInt

from llm_finetuning.params import Params


class RetryParams(Params):
    """Retries of 429, 408, 5xx and connection errors.

    ``max_attempts`` and ``request_timeout_s`` go to the openai SDK (``max_retries``,
    ``timeout``) and to azure-core (``retry_total``, read timeout); the back-off
    (doubling from ``initial_backoff_s`` to ``max_backoff_s``) to azure-core and to
    requests that create something (:func:`~.waiting.create_at_most_once`, which gives
    up at ``timeout_s``). The openai SDK backs off on its own (0.5 s doubling to 8 s)
    when the service sends no ``Retry-After``.
    """

    max_attempts: PositiveInt = 6
    initial_backoff_s: PositiveFloat = 2.0
    max_backoff_s: PositiveFloat = 60.0
    timeout_s: PositiveFloat = 600.0
    request_timeout_s: PositiveFloat = 60.0


class PollParams(Params):
    """Polling with back-off: ``interval_s`` growing by ``multiplier`` up to
    ``max_interval_s``, giving up after ``timeout_s`` (the defaults suit a fine-tuning
    job, which takes minutes to hours)."""

    interval_s: PositiveFloat = 30.0
    max_interval_s: PositiveFloat = 300.0
    multiplier: float = Field(1.5, ge=1.0)
    timeout_s: PositiveFloat = 14_400.0


class FilePollParams(PollParams):
    """Waiting for Azure to import an uploaded file (seconds to minutes)."""

    interval_s: PositiveFloat = 2.0
    max_interval_s: PositiveFloat = 30.0
    timeout_s: PositiveFloat = 600.0


class LroParams(Params):
    """A Resource Manager long-running operation: azure-core's poller checks every
    ``interval_s`` (or what ``Retry-After`` asks) and is given up after ``timeout_s``."""

    interval_s: PositiveFloat = 15.0
    timeout_s: PositiveFloat = 1800.0


class ExampleCountParams(Params):
    """Reviews of each split sent to Azure (stratified by label, seeded)."""

    train: PositiveInt = 500
    validation: PositiveInt = 100
    test: PositiveInt = 200


class FineTuningParams(Params):
    """The fine-tuning job request (``null`` hyperparameters: the service chooses)."""

    base_model: str = "gpt-4o-mini-2024-07-18"
    n_epochs: PositiveInt | None = 2
    batch_size: PositiveInt | None = None
    learning_rate_multiplier: PositiveFloat | None = None
    seed: int | None = 42
    suffix: str | None = "imdb-sentiment"


class ValidationParams(Params):
    """Checks of the JSONL files before upload.

    ``max_tokens_per_example``: the base model's training context per example (65,536
    for the gpt-4o and gpt-4.1 families, 16,385 for gpt-35-turbo). ``token_counter``:
    ``auto`` (tiktoken's encoding for the model where it loads, else an estimate),
    ``tiktoken`` (fail without it) or ``estimate``. tiktoken downloads its encoding
    once; offline that can hang, hence ``tiktoken_load_timeout_s``.
    """

    min_examples: int = Field(10, ge=10)  # Azure OpenAI's minimum per file
    max_tokens_per_example: PositiveInt = 65_536
    max_label_imbalance: float = Field(3.0, ge=1.0)
    token_counter: Literal["auto", "tiktoken", "estimate"] = "auto"
    tiktoken_load_timeout_s: PositiveFloat = 10.0


class CostParams(Params):
    """List prices for the estimate and the model comparison: check the Azure OpenAI
    pricing page (they vary by model, region and date).

    The per-token inference prices have no default (``null``: the comparison shows no
    cost per 1,000 predictions): ``fine_tuned_*`` for the fine-tuned deployment,
    ``base_*`` for ``base_model_deployment``.
    """

    training_usd_per_million_tokens: float = Field(3.30, ge=0)
    hosting_usd_per_hour: float = Field(1.70, ge=0)
    assumed_epochs_when_auto: PositiveInt = 3
    fine_tuned_input_usd_per_million_tokens: float | None = Field(None, ge=0)
    fine_tuned_output_usd_per_million_tokens: float | None = Field(None, ge=0)
    base_input_usd_per_million_tokens: float | None = Field(None, ge=0)
    base_output_usd_per_million_tokens: float | None = Field(None, ge=0)


class DeploymentParams(Params):
    """The Resource Manager deployment of the fine-tuned model.

    ``sku_name``: ``standard``, ``globalstandard`` or ``developer`` (where offered);
    ``capacity``: thousands of tokens per minute for ``standard``;
    ``management_endpoint``: another one for sovereign clouds (a local server in tests).
    """

    name: str = "imdb-sentiment-ft"
    sku_name: str = "standard"
    capacity: PositiveInt = 1
    model_version: str = "1"
    arm_api_version: str = "2024-10-01"
    management_endpoint: str = "https://management.azure.com"
    poll: LroParams = LroParams()


class InferenceParams(Params):
    """Chat completions of the deployed model."""

    max_tokens: PositiveInt = 5
    temperature: float = Field(0.0, ge=0)


class CleanupParams(Params):
    """What the clean-up removes. ``on_failure``: delete the deployment when deploying
    or scoring fails half-way, before the error goes up (it is billed per hour)."""

    delete_deployment: bool = True
    delete_files: bool = False
    on_failure: bool = True


class AzureOpenAIParams(Params):
    """The ``deployment.azure_openai`` block (docs/deployment.md, "Parameters").

    ``label_words`` maps label names to the word the model answers; names not listed
    answer as themselves. ``resume_job: false`` creates a new, billed job every run
    instead of picking up the recorded one. ``base_model_deployment``: an existing
    deployment of the base model, asked the same test sample zero-shot (the "before
    fine-tuning" row of the model comparison); ``null`` skips it.
    """

    key: ClassVar[str] = "deployment.azure_openai"

    resume_job: bool = True
    api_version: str = "2024-10-21"
    system_prompt: str = (
        "Classify the sentiment of the movie review. "
        "Answer with exactly one word: positive or negative."
    )
    label_words: dict[str, str] = {}
    base_model_deployment: str | None = None
    examples: ExampleCountParams = ExampleCountParams()
    fine_tuning: FineTuningParams = FineTuningParams()
    validation: ValidationParams = ValidationParams()
    cost: CostParams = CostParams()
    job_poll: PollParams = PollParams()
    file_poll: FilePollParams = FilePollParams()
    retry: RetryParams = RetryParams()
    deployment: DeploymentParams = DeploymentParams()
    inference: InferenceParams = InferenceParams()
    cleanup: CleanupParams = CleanupParams()

    def label_word(self, label_name: str) -> str:
        return str(self.label_words.get(label_name, label_name))
