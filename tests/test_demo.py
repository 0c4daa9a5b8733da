"""The README's main command, end to end: `quire demo --exit` on the embedded defaults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port


@pytest.mark.slow
def test_the_demo_walks_an_order_from_claim_to_earnings(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "QUIRE_DATA_DIR": str(tmp_path / "data"),
        "QUIRE_API_PORT": str(free_port()),
        "QUIRE_JWT_SECRET": "demo-test-secret-that-is-long-enough-0123456789",
    }
    for name in ("DATABASE_URL", "PREFECT_API_URL", "PREFECT_HOME", "PREFECT_LOCAL_STORAGE_PATH"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-m", "deployments.cli", "demo", "--exit"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert out.count("accepted; earnings posted") == 2
    assert "specialist_payable" in out
    assert (tmp_path / "data" / "quire.db").exists()
