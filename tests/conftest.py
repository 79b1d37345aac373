"""Shared fixtures: a running simulator (tests/fixtures/sim.py), users by role
(tests/fixtures/users.py), a headless browser (tests/fixtures/browser.py)."""
import os
import tempfile
from pathlib import Path

import pytest

pytest_plugins = ["tests.fixtures.sim", "tests.fixtures.users", "tests.fixtures.browser", "tests.fixtures.cluster"]

# Audit checkpoints written by tests (and by the e2e server, which inherits the environment)
# must never land in the real data directory: they would describe the test databases.
os.environ.setdefault("SESAM_AUDIT_CHECKPOINT_DIR", tempfile.mkdtemp(prefix="sesam-test-checkpoints-"))


@pytest.fixture(autouse=True)
def audit_checkpoint_dir(settings, tmp_path_factory):
    """Each test starts without an audit checkpoint (sesamweb/audit/checkpoints.py), in this
    process and in the e2e server (whose database is flushed between tests)."""
    (Path(os.environ["SESAM_AUDIT_CHECKPOINT_DIR"]) / "audit-checkpoint.json").unlink(missing_ok=True)
    settings.SESAM_AUDIT_CHECKPOINT_DIR = tmp_path_factory.mktemp("audit-checkpoints")
    return settings.SESAM_AUDIT_CHECKPOINT_DIR


def pytest_terminal_summary(terminalreporter):
    """The counts of the guard tests (tests/fixtures/summary.py), visible without -s."""
    from tests.fixtures.summary import SUMMARY_LINES

    if SUMMARY_LINES:
        terminalreporter.section("guards")
        for line in SUMMARY_LINES:
            terminalreporter.write_line(line)
