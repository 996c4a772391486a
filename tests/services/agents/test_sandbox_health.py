"""The sandbox in healthz and /metrics: mode, layers, and a root slot uids cannot reach."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from paulyops.core import metrics
from paulyops.core.metrics import _health_metrics
from paulyops.services.agents.sandbox import SandboxConfig, sandbox_check, sandbox_status

# Slot uids of the tests' range are shared: checks that no process of that range is left
# behind hold only when no other sandbox test runs at the same time.
pytestmark = pytest.mark.xdist_group("sandbox-uids")


def test_unreachable_sandbox_root_is_unhealthy(tmp_path: Path) -> None:
    """As root, a sandbox root under a 0700 folder is reported with the reason."""
    if os.geteuid() != 0:
        pytest.skip("slot uids (and so this check) need root")
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    config = SandboxConfig(root=closed / "sandbox", uid_range=(62300, 62301))
    if "slot-uid" not in sandbox_status(config).layers:
        pytest.skip("no slot uid on this host")
    result = sandbox_check(config)()
    assert result.status == "unhealthy"
    assert "closed to the slot uid" in result.details["reason"]


def test_metrics_export_the_sandbox_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before any run, paulyops_sandbox_mode is 1 for the probed mode and 0 for the others."""
    monkeypatch.setattr(metrics, "_sandbox_mode", [])
    report = {
        "status": "degraded",
        "checks": {"sandbox": {"status": "degraded", "details": {"mode": "fallback"}}},
    }
    families = {m.name: m for m in _health_metrics(report)}
    samples = {s.labels["mode"]: s.value for s in families["paulyops_sandbox_mode"].samples}
    assert samples == {"bubblewrap": 0.0, "fallback": 1.0, "insecure": 0.0, "refused": 0.0}
