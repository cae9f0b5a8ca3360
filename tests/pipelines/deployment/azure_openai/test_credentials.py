"""Azure credentials: environment and credentials.yml, never printed, azure-identity."""

from __future__ import annotations

import pytest

from llm_finetuning.pipelines.deployment.azure_openai.credentials import (
    AzureCredentials,
    AzureCredentialsDataset,
    StaticTokenCredential,
    management_credential,
)


def test_credentials_come_from_the_environment_or_configuration_and_never_print():
    environment = {
        "AZURE_OPENAI_ENDPOINT": "https://env.openai.azure.com",
        "AZURE_OPENAI_API_KEY": "env-secret-key",
        "AZURE_SUBSCRIPTION_ID": "sub-env",
    }
    credentials = AzureCredentials.from_sources(
        {"subscription_id": "sub-conf"}, environment
    )
    assert credentials.endpoint == "https://env.openai.azure.com"
    assert credentials.api_key == "env-secret-key"
    assert credentials.subscription_id == "sub-conf"  # configuration wins
    assert "env-secret-key" not in repr(credentials)

    dataset = AzureCredentialsDataset(credentials={"api_key": "conf-secret-key"})
    assert "conf-secret-key" not in repr(dataset)
    assert "conf-secret-key" not in str(dataset._describe())
    assert dataset.load().api_key == "conf-secret-key"
    with pytest.raises(ValueError, match="Unknown key"):
        AzureCredentials.from_sources({"apikey": "x"}, {})


def test_missing_credentials_name_the_variables_and_the_dry_run():
    with pytest.raises(
        ValueError, match="AZURE_RESOURCE_GROUP, AZURE_OPENAI_ACCOUNT.*dry_run"
    ):
        AzureCredentials(subscription_id="s").require(
            "subscription_id", "resource_group", "account_name", purpose="Deploying"
        )
    with pytest.raises(ValueError, match="AZURE_OPENAI_API_KEY"):
        AzureCredentials(endpoint="https://x").require_data_plane()
    AzureCredentials(endpoint="https://x", use_entra_id=True).require_data_plane()


def test_a_given_token_is_used_else_default_azure_credential(monkeypatch):
    from azure.identity import DefaultAzureCredential

    given = management_credential(AzureCredentials(management_token="tok"))
    assert isinstance(given, StaticTokenCredential)
    assert given.get_token("https://management.azure.com/.default").token == "tok"
    # A service principal from the environment, as azure-identity reads it.
    monkeypatch.setenv("AZURE_CLIENT_ID", "client")
    monkeypatch.setenv("AZURE_TENANT_ID", "tenant")
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "secret")
    assert isinstance(management_credential(AzureCredentials()), DefaultAzureCredential)
