"""Run the benchmarks one after another (never two at once: 2 cores thrash).

Each prints its own side-by-side ratio. Usage::

    python -m benchmarks                      # all, fastest first (about an hour on CPU)
    python -m benchmarks tokenization training_throughput
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARKS = (
    "tokenization",
    "training_throughput",
    "inference_throughput",
    "scoring_throughput",
    "minilm_accuracy",
    "gpu_check",  # skips without a GPU; docs/gpu_check.md
)


def main(names: list[str]) -> int:
    """Run each named benchmark script in its own process; return the worst exit code."""
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
        return 2
    folder = Path(__file__).parent
    worst = 0
    for name in names or BENCHMARKS:
        print(f"\n=== {name} ===", flush=True)
        worst = max(
            worst, subprocess.call([sys.executable, str(folder / f"{name}.py")])
        )
    return worst


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
