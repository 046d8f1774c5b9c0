"""Shared pytest fixtures: where the repository, the C++ build and the model are.

LONGENC_BUILD_DIR and LONGENC_MODEL_DIR override the defaults (scripts/run_tests.sh sets the
first; ctest sets both).
"""
import os
import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def build_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("LONGENC_BUILD_DIR", REPO_ROOT / "build"))


@pytest.fixture(scope="session")
def model_dir() -> pathlib.Path:
    return pathlib.Path(
        os.environ.get("LONGENC_MODEL_DIR", REPO_ROOT / "models" / "all-MiniLM-L6-v2"))
