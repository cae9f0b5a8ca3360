"""Azure OpenAI for the ``deployment_azure_openai`` pipeline, one concern a module:

* :mod:`.settings`: the typed ``deployment.azure_openai`` parameters.
* :mod:`.credentials`: secrets from the environment or credentials.yml
  (:class:`AzureCredentialsDataset`) and azure-identity credentials.
* :mod:`.chat_files`: chat-format JSONL export, validation, token counting (tiktoken),
  the job request, and parsing answers back to labels.
* :mod:`.job_record`: the job record a rerun resumes (:class:`JobRecordDataset`).
* :mod:`.waiting`: errors, deadlines, polling, at-most-once creation.
* :mod:`.data_plane`: files, fine-tuning jobs, chat completions (openai SDK).
* :mod:`.control_plane`: deployments (azure-mgmt-cognitiveservices).

Only the catalog's dataset types are imported here: the SDKs load with the nodes.
"""

from llm_finetuning.pipelines.deployment.azure_openai.credentials import (
    AzureCredentialsDataset,
)
from llm_finetuning.pipelines.deployment.azure_openai.job_record import (
    JobRecordDataset,
)

__all__ = ["AzureCredentialsDataset", "JobRecordDataset"]
