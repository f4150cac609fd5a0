"""Under CI a skip is a failure unless tests/conftest.py's allow-list names its reason (issue 61): a missing peer
or dependency cannot keep CI green; outside CI the same skip is a skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import CI_ALLOWED_SKIPS

ROOT = Path(__file__).resolve().parents[1]


def test_a_skip_not_on_the_allow_list_fails_under_ci_and_only_there(tmp_path):
    allowed = next(iter(CI_ALLOWED_SKIPS))
    (tmp_path / "conftest.py").write_text("from tests.conftest import pytest_runtest_makereport  # noqa: F401\n")
    (tmp_path / "test_probe.py").write_text(
        "import pytest\n\n"
        "def test_peer_missing():\n    pytest.skip('VLFeat is not here')\n\n"
        f"def test_allowed():\n    pytest.skip({allowed!r} + ' (reason)')\n"
    )

    def run(ci: str) -> str:
        env = {**os.environ, "CI": ci, "PYTHONPATH": str(ROOT)}
        command = [sys.executable, "-m", "pytest", "-q", "-n0", "-p", "no:cacheprovider", "-rA", str(tmp_path)]
        return subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env).stdout

    under_ci = run("true")
    assert "1 failed, 1 skipped" in under_ci and "skipped under CI: Skipped: VLFeat is not here" in under_ci
    assert "2 skipped" in run("")
