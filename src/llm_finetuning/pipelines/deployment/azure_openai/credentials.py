"""Where and as whom to call Azure: secrets from environment variables or
``conf/local/credentials.yml``, never printed, and azure-identity credentials.

The data plane takes the resource key, or with ``use_entra_id`` a Microsoft Entra ID
token; Resource Manager takes ``AZURE_MANAGEMENT_TOKEN`` when set, else
:class:`azure.identity.DefaultAzureCredential`: ``az login``, a managed identity, or a
service principal's ``AZURE_CLIENT_ID`` / ``AZURE_CLIENT_SECRET`` / ``AZURE_TENANT_ID``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kedro.io import AbstractDataset, DatasetError

# azure-core loads when a credential is made, not when the pipelines are built.
if TYPE_CHECKING:
    from azure.core.credentials import AccessToken, TokenCredential

# Environment variables read by AzureCredentials.from_sources (credentials.yml keys
# on the left). DefaultAzureCredential reads its own (AZURE_CLIENT_ID, ...).
ENVIRONMENT_VARIABLES = {
    "endpoint": "AZURE_OPENAI_ENDPOINT",
    "api_key": "AZURE_OPENAI_API_KEY",
    "subscription_id": "AZURE_SUBSCRIPTION_ID",
    "resource_group": "AZURE_RESOURCE_GROUP",
    "account_name": "AZURE_OPENAI_ACCOUNT",
    "management_token": "AZURE_MANAGEMENT_TOKEN",
    "use_entra_id": "AZURE_OPENAI_USE_ENTRA_ID",
}
COGNITIVE_SERVICES_SCOPE = "https://cognitiveservices.azure.com/.default"
# A token given as text is used as it is; Resource Manager says when it has expired.
_STATIC_TOKEN_LIFETIME_S = 3600


@dataclass(frozen=True)
class AzureCredentials:
    """Endpoint, key and resource address. Secrets are left out of ``repr``.

    Attributes:
        endpoint: ``https://<resource>.openai.azure.com`` (data plane).
        api_key: Key of the Azure OpenAI resource.
        subscription_id, resource_group, account_name: The resource in Resource
            Manager, for deployments.
        management_token: A Resource Manager bearer token (``az account
            get-access-token``); without it ``DefaultAzureCredential`` gets one.
        use_entra_id: Data-plane calls with an Entra ID token instead of the key.
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

    def require(self, *names: str, purpose: str) -> None:
        """Raise naming the environment variables to set when ``names`` are missing."""
        missing = [n for n in names if not getattr(self, n)]
        if missing:
            variables = ", ".join(ENVIRONMENT_VARIABLES[n] for n in missing)
            raise ValueError(
                f"{purpose} needs {variables} (environment variables, or the keys "
                f"{missing} of the azure_openai block in conf/local/credentials.yml); "
                "`kedro run --pipelines deployment_azure_openai_dry_run` needs none"
            )

    def require_data_plane(self) -> None:
        self.require("endpoint", purpose="Calling Azure OpenAI")
        if not self.use_entra_id:
            self.require("api_key", purpose="Calling Azure OpenAI with a key")


class StaticTokenCredential:
    """A bearer token given as text (``AZURE_MANAGEMENT_TOKEN``) as an azure-core
    credential (``TokenCredential`` is a protocol: ``get_token`` is all it takes)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        from azure.core.credentials import AccessToken

        return AccessToken(self._token, int(time.time()) + _STATIC_TOKEN_LIFETIME_S)


def management_credential(credentials: AzureCredentials) -> TokenCredential:
    """The Resource Manager credential: the given token, else ``DefaultAzureCredential``."""
    if credentials.management_token:
        return StaticTokenCredential(credentials.management_token)
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def data_plane_credential() -> TokenCredential:
    """The Entra ID credential for data-plane calls without a key."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


class AzureCredentialsDataset(AbstractDataset[None, AzureCredentials]):
    """Read-only dataset resolving :class:`AzureCredentials` for the nodes that call Azure.

    Kedro hands credentials to datasets only, and parameters are logged to MLflow, so
    secrets travel this way: environment variables, overridden by the ``credentials``
    Kedro resolves from ``conf/local/credentials.yml`` when the catalog entry names a
    block there. Neither ``repr`` nor the dataset's description shows a secret::

        azure_openai_credentials:
          type: llm_finetuning.pipelines.deployment.azure_openai.AzureCredentialsDataset
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
