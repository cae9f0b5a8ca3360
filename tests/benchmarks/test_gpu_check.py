"""The prepared GPU check starts and reports every phase: its ``--tiny`` run on CPU.

The GPU run itself needs a GPU machine (docs/gpu_check.md); this is what a CPU can
prove beforehand: every phase runs through the project's code (``fit``, the torchrun
launcher over gloo, MiniLM scoring), the table has every phase and no MFU above 100%.
Real IMDB when present, else the bundled demo corpus: the test always runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from llm_finetuning.processes import start_supervised, stop_supervised

PHASES = [
    "gpt2 ours",
    "gpt2 reference",
    "gpt2 torchrun",
    "minilm train",
    "minilm score",
]
# About 40 s of CPU on a quiet 2-core machine; far longer when it is shared.
TIMEOUT_S = 480


@pytest.mark.slow
def test_tiny_run_on_cpu_reports_every_phase(project_root: Path, tmp_path: Path):
    output = tmp_path / "gpu_check.json"
    process = start_supervised(
        [
            sys.executable,
            str(project_root / "benchmarks" / "gpu_check.py"),
            "--tiny",
            "--device",
            "cpu",
            "--output",
            str(output),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        log, _ = process.communicate(timeout=TIMEOUT_S)
    finally:
        stop_supervised(process)
    assert process.returncode == 0, log[-4000:]

    result = json.loads(output.read_text())
    rows = {entry["phase"]: entry for entry in result["phases"]}
    assert list(rows) == PHASES
    assert result["tiny"] is True and result["peak_flops"] > 0
    for phase, entry in rows.items():
        assert entry["seconds"] > 0, phase
        assert entry["samples_per_second"] > 0 and entry["tokens_per_second"] > 0
        assert 0 < entry["mfu"] <= 1, f"{phase}: MFU {entry['mfu']}"
        assert f"\n{phase} " in log, f"the printed table lacks {phase}"
    assert rows["gpt2 torchrun"]["backend"] == "gloo"
    assert rows["gpt2 torchrun"]["world_size"] == 1
    assert rows["gpt2 torchrun"]["steps"] == 2
    assert 0 <= rows["minilm score"]["accuracy"] <= 1
    assert rows["minilm score"]["reviews"] == 100
