"""Shared pytest fixtures and rules: where the repository, the C++ build and the model are, and
why a test may not be skipped.

LONGENC_BUILD_DIR and LONGENC_MODEL_DIR override the defaults (scripts/run_tests.sh sets the
first; ctest sets both).

No silent skips: a missing binary, package, model or command is a failure, because a build that
produced nothing must not pass. Suites declare what they run with
`pytest.mark.needs_programs("longenc-server", ..., commands=("openssl",))`; a missing one fails
the test and names it. Any other skip fails too, except for tests whose name ends in `_CUDA`
(no GPU is missing hardware, not a broken build). LONGENC_ALLOW_SKIPS=1 turns this off for a
developer's partial build (e.g. -DLONGENC_BUILD_MODEL=OFF); scripts/run_tests.sh never sets it.
"""
import os
import pathlib
import shutil

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD_DIR = pathlib.Path(os.environ.get("LONGENC_BUILD_DIR", REPO_ROOT / "build"))
ALLOW_SKIPS = os.environ.get("LONGENC_ALLOW_SKIPS") == "1"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "needs_programs(*names, commands=()): programs of the build ($LONGENC_BUILD_DIR"
        "/bin) and system commands the test runs; a missing one fails the test")


def pytest_runtest_setup(item):
    for marker in item.iter_markers("needs_programs"):
        missing = [str(BUILD_DIR / "bin" / name) for name in marker.args
                   if not (BUILD_DIR / "bin" / name).exists()]
        missing += [name for name in marker.kwargs.get("commands", ()) if not shutil.which(name)]
        if not missing:
            continue
        message = (f"missing: {', '.join(missing)} (`make build` builds the programs, "
                   "scripts/bootstrap.sh installs the commands)")
        if ALLOW_SKIPS:
            pytest.skip(message)
        pytest.fail(message, pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Turns the skip of a test that may not skip into a failure that says why it skipped."""
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or ALLOW_SKIPS or hasattr(report, "wasxfail"):
        return
    if getattr(item, "originalname", item.name).endswith("_CUDA"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = (f"skipped ({reason}), but only *_CUDA tests may skip: install or build "
                       "what is missing (LONGENC_ALLOW_SKIPS=1 allows skips on a partial build)")


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def build_dir() -> pathlib.Path:
    return BUILD_DIR


@pytest.fixture(scope="session")
def model_dir() -> pathlib.Path:
    return pathlib.Path(
        os.environ.get("LONGENC_MODEL_DIR", REPO_ROOT / "models" / "all-MiniLM-L6-v2"))
