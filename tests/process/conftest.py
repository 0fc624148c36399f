"""Fixtures of the process layer: the driver as a process of its own, shipping to ``cw``."""

from __future__ import annotations

import uuid

import pytest

from support.plugin import PluginProcess


@pytest.fixture
def cluster() -> str:
    """A cluster name of its own, so a CLI test's group discovery sees only its groups."""
    return f"c{uuid.uuid4().hex[:10]}"


@pytest.fixture
def driver(cw):
    proc = PluginProcess(cw.env()).start()
    yield proc
    proc.cleanup()
