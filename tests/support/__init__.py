"""Helpers the tests share (and scripts/, benchmarks/ use): the strict CloudWatch endpoint
(cwlogs, cwlogs_server), Docker (dockerenv), the driver as a process (plugin) or in this process
(inprocess), numbered lines and what arrived of them (counting, faults), waiting (waiting).

pytest puts tests/ on sys.path (pyproject.toml's ``pythonpath``), so a test imports
``from support.cwlogs import CloudWatchEndpoint``; no test module imports another.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI") == "true"


def need(condition: bool, what: str) -> None:
    """Skip when a component is missing - except in CI, where that fails the run."""
    import pytest  # here: scripts and benchmarks import support's modules without pytest

    if not condition:
        if IN_CI:
            pytest.fail(f"CI=true but {what} is not available")
        pytest.skip(f"{what} is not available")
