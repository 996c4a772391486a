"""An agent's runs in the console and the API: figures, chart, recent runs, logs, who sees them.

A viewer sees the runs; a role without ``agents:read`` gets 403; another organization never
sees them (404); monitoring off shows the runs but says so instead of the figures.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import timedelta

from sqlalchemy import update

from paulyops.core.db.models import AgentConfig, Job, Membership, Role, utcnow
from paulyops.core.db.scoped import OrgScope
from tests.web.api.test_marketplace_api import sign_in
from tests.web.pages.console.test_agents_pages import world  # noqa: F401  # the fixture
from tests.web.pages.console.test_console_pages import _signed_in

SVG = "{http://www.w3.org/2000/svg}"


def add_runs(db, org_id, inst_id):
    """Three finished runs (two succeeded, one dead) and one queued; return their ids."""
    now = utcnow()
    ids = []
    with db.write_session() as session:
        scope = OrgScope(session, org_id)
        for index, (status, ms) in enumerate(
            (("succeeded", 200.0), ("dead", 1200.0), ("succeeded", 400.0), ("queued", None))
        ):
            done = status != "queued"
            job = Job(
                installation_id=inst_id,
                agent_id="acme.hello",
                status=status,
                input={"name": f"invoice-{index}.pdf"},
                attempts=3 if status == "dead" else 1,
                max_attempts=3,
                started_at=now - timedelta(minutes=10 - index) if done else None,
                finished_at=now - timedelta(minutes=9 - index) if done else None,
                duration_ms=ms,
                error="dead after 3 attempts: <script>bad</script>" if status == "dead" else None,
            )
            scope.add(job)
            session.flush()
            ids.append(job.id)
    return ids


def write_log(client, org_id, job_id, message):
    from paulyops.services.agents import joblogs
    from paulyops.services.agents.runtime import AgentLogLine

    db = client.app.state.instance.db
    with db.write_session() as session:
        line = AgentLogLine(job_id, utcnow(), "info", "stderr", message)
        joblogs.store(session, org_id, [job_id], [line])


def _svg(html: str) -> ET.Element:
    match = re.search(r"<svg [^>]*class=\"run-chart\".*?</svg>", html, re.S)
    assert match, "no chart"
    return ET.fromstring(match.group(0))


def test_a_viewer_sees_figures_chart_runs_and_their_logs(world, client):  # noqa: F811
    db, _key, a, _b, inst_id, _cache = world
    ids = add_runs(db, a.id, inst_id)
    write_log(client, a.id, ids[0], "read 3 pages")
    _signed_in(client, a.emails["Viewer"])
    page = client.get("/console/agents/acme.hello")
    assert page.status_code == 200
    text = page.text
    assert "Success rate" in text
    assert "67 %" in text  # 2 of 3
    assert "p95 duration" in text
    assert "not quarantined" in text
    svg = _svg(text)
    assert svg.get("role") == "img"
    assert svg.find(f"{SVG}title").text == "Durations of the last 3 runs"
    for name in ("invoice-0.pdf", "invoice-1.pdf", "invoice-3.pdf", ids[3]):
        assert name in text
    assert "1 of 3" in text
    assert "3 of 3" in text
    assert "read 3 pages" in text
    assert "<script>bad</script>" not in text
    assert "&lt;script&gt;bad&lt;/script&gt;" in text
    listing = client.get("/console/agents").text
    assert "Last run" in listing
    assert "67 % of 3 succeeded" in listing


def test_monitoring_off_shows_runs_but_no_figures(world, client):  # noqa: F811
    db, _key, a, _b, inst_id, _cache = world
    add_runs(db, a.id, inst_id)
    with db.write_session() as session:
        updated = session.execute(
            update(AgentConfig)
            .where(AgentConfig.organization_id == a.id)
            .values(monitoring_enabled=False)
        )
        if updated.rowcount == 0:
            OrgScope(session, a.id).add(AgentConfig(monitoring_enabled=False))
    _signed_in(client, a.emails["User"])
    text = client.get("/console/agents/acme.hello").text
    assert "Monitoring is off" in text
    assert "invoice-1.pdf" in text
    assert "Success rate" not in text
    assert "<svg" not in text.split("Runs", 1)[1]
    assert "Last run" not in client.get("/console/agents").text
    body = client.get("/api/agents/acme.hello").json()
    assert body["stats"]["monitoringEnabled"] is False
    assert body["stats"]["successRate"] is None
    assert len(client.get("/api/agents/acme.hello/runs").json()) == 4


def test_api_stats_and_runs_follow_the_organization_and_permission(world, client):  # noqa: F811
    db, _key, a, b, inst_id, _cache = world
    ids = add_runs(db, a.id, inst_id)
    sign_in(client, a.id, a.members["Viewer"])
    body = client.get(f"/api/agents/{inst_id}").json()
    assert body["agentId"] == "acme.hello"
    figures = body["stats"]
    assert figures["runs"] == 3
    assert figures["successRate"] == 2 / 3
    assert figures["p50Ms"] == 400.0
    assert figures["lastRunStatus"] == "succeeded"
    assert figures["quarantined"] is False
    runs = client.get("/api/agents/acme.hello/runs?limit=2")
    assert runs.status_code == 200
    assert [r["id"] for r in runs.json()] == [ids[3], ids[2]]
    assert runs.json()[0]["inputName"] == "invoice-3.pdf"
    assert client.get("/api/agents/acme.hello/runs?limit=0").status_code == 422
    # Another organization: not found, by agent id and installation id.
    sign_in(client, b.id, b.members["Owner"])
    for ref in ("acme.hello", inst_id):
        assert client.get(f"/api/agents/{ref}").status_code == 404
        assert client.get(f"/api/agents/{ref}/runs").status_code == 404
    _signed_in(client, b.emails["Owner"])
    assert client.get(f"/console/agents/{inst_id}").status_code == 404
    # A role without agents:read: 403 on the page and in the API.
    with db.write_session() as session:
        role = Role(organization_id=a.id, name="Reader", permissions=["org:read"], is_builtin=False)
        session.add(role)
        session.flush()
        session.get(Membership, a.memberships["target"]).role_id = role.id
    sign_in(client, a.id, a.members["target"])
    assert client.get("/api/agents/acme.hello").status_code == 403
    assert client.get("/api/agents/acme.hello/runs").status_code == 403
    _signed_in(client, "target@acme.example.com")
    assert client.get("/console/agents/acme.hello").status_code == 403
