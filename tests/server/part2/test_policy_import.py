"""``aegis policies import``: example files become policy documents of a running server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from server_helpers import Env, bearer

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "policies"


def _run(url: str, *paths: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AEGIS_JWT_SECRET": "s" * 40, "AEGIS_DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "aegis.cli", "policies", "import", *paths],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_examples_are_imported_once_and_decide(env: Env, tmp_path: Path) -> None:
    url = str(env.db.url)
    done = _run(url, str(EXAMPLES))
    assert done.returncode == 0, done.stderr
    assert "freezes, roles" in done.stdout
    assert _run(url, str(EXAMPLES)).stdout.strip() == "imported 0 policy documents"
    admin = bearer(env.admin())
    names = [d["name"] for d in env.client.get("/api/v1/policies", headers=admin).json()["items"]]
    assert names == ["freezes", "roles"]
    status = env.client.get("/api/v1/metrics/current", headers=admin).json()
    assert status["documents"] == 2 and status["rules"] > 0
    clash = tmp_path / "clash.aegis"
    first_rule = re.search(r'allow "([^"]+)"', (EXAMPLES / "roles.aegis").read_text())[1]
    clash.write_text(f'allow "{first_rule}" {{ true }}\n')
    refused = _run(url, str(clash))
    assert refused.returncode == 1 and "duplicate" in refused.stderr
