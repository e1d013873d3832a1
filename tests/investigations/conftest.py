"""Fixtures of the investigation tests."""

import shutil

import pytest


@pytest.fixture
def lake(scored_lake, tmp_path):
    """A private copy of the scored lake (real alerts to decide on)."""
    return shutil.copytree(scored_lake, tmp_path / "lake")
