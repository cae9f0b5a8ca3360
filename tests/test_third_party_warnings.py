"""Third-party warnings are dropped one by one, and the same warning elsewhere still shows.

Each check runs in a fresh interpreter: this test process has imported kedro-mlflow
(and defined its model class) already.
"""

from __future__ import annotations

import json
import subprocess
import sys

# Run the CLI's init hook, then define a model class of our own without type hints.
INIT_THEN_OWN_MODEL = """
import contextlib, io, json, warnings
from llm_finetuning.third_party_warnings import quiet_cli_start
shown = io.StringIO()
with contextlib.redirect_stderr(shown):
    quiet_cli_start()
import kedro_mlflow.mlflow
from mlflow.pyfunc import PythonModel
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    class OwnModel(PythonModel):
        def predict(self, context, model_input):
            return model_input
print(json.dumps({"shown_at_init": shown.getvalue(),
                  "own_model": [str(w.message) for w in caught]}))
"""


def test_kedro_mlflows_warning_is_dropped_and_the_same_warning_for_our_code_is_not():
    result = subprocess.run(
        [sys.executable, "-c", INIT_THEN_OWN_MODEL],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert "Add type hints" not in report["shown_at_init"] + result.stderr
    assert any("Add type hints" in message for message in report["own_model"]), report
