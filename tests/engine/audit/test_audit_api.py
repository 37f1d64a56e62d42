"""The public surface of aegis.engine.audit (habit H1): explicit, documented, light."""

from __future__ import annotations

import subprocess
import sys

from aegis.engine import audit

EXPECTED = {
    "AuditRecordV1", "AuditSink", "BatchingSink", "ChainHead", "DEFAULT_SENSITIVE_KEYS",
    "Entry", "GENESIS_HASH", "HeadAnchor", "JsonlAuditSink", "Masker", "MemoryAuditSink",
    "Mode", "RecordRejected", "VerifyResult", "canonical_json", "decision_record",
    "event_record", "open_sink", "seal", "verify", "verify_jsonl", "verify_url",
}  # fmt: skip


def test_exported_names_are_the_expected_ones_and_documented() -> None:
    assert set(audit.__all__) == EXPECTED
    for name in audit.__all__:
        value = getattr(audit, name)
        if callable(value) and name != "Mode":
            assert (value.__doc__ or "").strip(), f"{name} has no docstring"


def test_importing_audit_does_not_import_sqlalchemy() -> None:
    code = "import sys, aegis.engine.audit; print('sqlalchemy' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"
