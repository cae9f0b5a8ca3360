"""Run the packaged project: ``llm-finetuning`` or ``python -m llm_finetuning``.

This is the entry point a Databricks ``python_wheel_task`` calls (``package_name:
llm_finetuning``, ``entry_point: llm-finetuning``): the task's parameters arrive as
``sys.argv`` and are those of ``kedro run``, e.g. ``--pipelines training --env databricks
--conf-source /Volumes/<catalog>/<schema>/<volume>/conf/conf-llm_finetuning.tar.gz``.
"""

from __future__ import annotations

import os
import sys
from importlib.util import find_spec
from pathlib import Path
from typing import Any


def _use_plain_logging_outside_a_project() -> None:
    """Log plainly when run from an installed wheel outside the project folder.

    Kedro reads ``KEDRO_LOGGING_CONFIG``, else ``conf/logging.yml`` in the working
    directory, else its rich console configuration, which has broken wheel jobs on
    Databricks. A wheel job's working directory has no ``conf/``, so without this it
    would get rich. Kedro's own plain configuration is used instead; an explicit
    ``KEDRO_LOGGING_CONFIG`` always wins. This must run before Kedro is imported,
    because Kedro configures logging at import time.
    """
    if os.environ.get("KEDRO_LOGGING_CONFIG"):
        return
    if any(Path("conf", f"logging.{ext}").is_file() for ext in ("yml", "yaml")):
        return
    kedro_spec = find_spec("kedro")
    if kedro_spec is None or not kedro_spec.submodule_search_locations:
        return
    plain = Path(kedro_spec.submodule_search_locations[0], "framework", "project")
    plain /= "default_logging.yml"
    if plain.is_file():
        os.environ["KEDRO_LOGGING_CONFIG"] = str(plain)


def main(*args: Any, **kwargs: Any) -> Any:
    """Run ``kedro run`` for this package with the command-line arguments."""
    _use_plain_logging_outside_a_project()
    # What the kedro CLI does through the kedro.init entry point, which it alone calls.
    from llm_finetuning.third_party_warnings import quiet_cli_start

    quiet_cli_start()

    from kedro.framework.cli.utils import find_run_command
    from kedro.framework.project import configure_project

    package_name = Path(__file__).parent.name
    configure_project(package_name)

    interactive = hasattr(sys, "ps1")
    kwargs["standalone_mode"] = not interactive

    run = find_run_command(package_name)
    return run(*args, **kwargs)


if __name__ == "__main__":
    main()
