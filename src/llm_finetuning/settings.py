"""Project settings: configuration loader, resolvers and hooks.

kedro-mlflow registers its own hooks through its entry point; the project's hooks
(:mod:`llm_finetuning.hooks`) end training and MLflow runs whatever way a run ends, and
``EncodingHintHooks`` says which encoding to set when a raw file does not decode;
``LineageHooks`` links the runs and flags stale outputs.
Settings are read by every ``kedro`` command: nothing imported here may load torch.
They also register the project's resolvers and silence the known library warnings
(:mod:`llm_finetuning.third_party_warnings`) before any configuration is loaded.
"""

from llm_finetuning.hooks import (
    CheckpointHooks,
    LineageHooks,
    RunEndingHooks,
    RunSummaryHooks,
)
from llm_finetuning.params import ParamsTrackingHooks
from llm_finetuning.pipelines.data_processing.hooks import EncodingHintHooks
from llm_finetuning.resolvers import RESOLVERS, register_resolvers
from llm_finetuning.third_party_warnings import silence_known_noise

silence_known_noise()
register_resolvers()

# The summary reports what the lineage hooks found (run lineage, stale outputs).
_LINEAGE = LineageHooks()

HOOKS = (
    CheckpointHooks(),
    RunEndingHooks(),
    EncodingHintHooks(),
    _LINEAGE,
    RunSummaryHooks(lineage=_LINEAGE),
    ParamsTrackingHooks(),  # typed parameter blocks into MLflow, flattened
)

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # Registered above with OmegaConf's current API; Kedro registers (with the
    # deprecated one) only a name that is missing, e.g. after OmegaConf.clear_resolvers.
    "custom_resolvers": RESOLVERS,
    # An env's parameter file holds only what differs from base: its values are merged
    # into base's blocks key by key (a list or a null replaces base's value whole).
    # Catalog entries still replace base's entry whole; roots come from globals.yml.
    "merge_strategy": {"parameters": "soft"},
}
