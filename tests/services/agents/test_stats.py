"""Run figures of installed agents: percentiles, success rate, last run, the chart, monitoring off.

Runs on SQLite and on PostgreSQL (when configured), like every ``db`` test.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest
from sqlalchemy import event

from paulyops.core.db.models import AgentConfig, Job, utcnow
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import NotFoundError
from paulyops.services.agents import stats
from tests.support.jobs import make_installation

SVG = "{http://www.w3.org/2000/svg}"


def add_jobs(db, org_id, inst_id, specs):
    """Insert finished (or waiting) jobs: (status, duration ms, minutes ago); return their ids."""
    now = utcnow()
    ids = []
    with db.write_session() as session:
        scope = OrgScope(session, org_id)
        for index, (status, duration, ago) in enumerate(specs):
            done = status in ("succeeded", "dead", "cancelled")
            job = Job(
                installation_id=inst_id,
                agent_id="acme.words",
                status=status,
                input={"name": f"file-{index}.txt"},
                attempts=1 if status != "dead" else 3,
                max_attempts=3,
                started_at=now - timedelta(minutes=ago, seconds=1) if done else None,
                finished_at=now - timedelta(minutes=ago) if done else None,
                duration_ms=duration,
                error="dead after 3 attempts: boom <&>" if status == "dead" else None,
            )
            scope.add(job)
            session.flush()
            ids.append(job.id)
    return ids


def test_percentiles_interpolate_between_ranks():
    values = [float(v) for v in range(100, 2001, 100)]  # 20 runs: 100 ms .. 2000 ms
    assert stats.percentile(values, 0.5) == pytest.approx(1050.0)
    assert stats.percentile(values, 0.95) == pytest.approx(1905.0)
    assert stats.percentile([], 0.5) is None
    assert stats.percentile([42.0], 0.95) == 42.0
    assert stats.format_ms(850) == "850 ms"
    assert stats.format_ms(0.55) == "0.6 ms"
    assert stats.format_ms(0) == "0 ms"
    assert stats.format_ms(1450) == "1.4 s"
    assert stats.format_ms(125_000) == "2 min 5 s"


def test_known_durations_give_the_figures(db):
    org_id, inst_id = make_installation(db)
    durations = list(range(100, 2001, 100))
    # 18 succeeded and 2 dead (newest first: the first spec is the latest run).
    specs = [
        ("dead" if i in (0, 7) else "succeeded", float(d), i + 1) for i, d in enumerate(durations)
    ]
    specs += [("queued", None, 0), ("cancelled", 5.0, 0)]
    add_jobs(db, org_id, inst_id, specs)
    with db.session() as session:
        figures = stats.agent_stats(OrgScope(session, org_id), inst_id)
    assert figures.monitoring_enabled
    assert (figures.runs, figures.succeeded, figures.failed, figures.waiting) == (20, 18, 2, 1)
    assert figures.success_rate == pytest.approx(0.9)
    assert figures.p50_ms == pytest.approx(1050.0)
    assert figures.p95_ms == pytest.approx(1905.0)
    assert figures.last_run_status == "dead"  # the cancelled one does not count as a run
    assert not figures.quarantined
    assert len(figures.recent) == 20
    assert figures.recent[-1].status == "dead"  # oldest first, newest last
    body = figures.model_dump(by_alias=True, mode="json")
    assert {"p50Ms", "p95Ms", "successRate", "lastRunAt", "quarantined"} <= set(body)


def test_the_chart_is_well_formed_accessible_svg(db):
    org_id, inst_id = make_installation(db)
    add_jobs(
        db, org_id, inst_id, [("succeeded", 120.0, 3), ("dead", 900.0, 2), ("succeeded", 80.0, 1)]
    )
    with db.session() as session:
        figures = stats.agent_stats(OrgScope(session, org_id), inst_id)
    svg = stats.duration_chart(figures, chart_id="c1")
    assert svg is not None
    root = ET.fromstring(svg)  # raises on anything not well-formed
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img"
    assert root.get("aria-labelledby") == "c1-title c1-desc"
    assert root.find(f"{SVG}title").text == "Durations of the last 3 runs"
    assert "2 succeeded, 1 failed" in root.find(f"{SVG}desc").text
    bars = [r for r in root.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]
    assert len(bars) == 3
    assert "dead" in bars[1].find(f"{SVG}title").text
    assert "url(#c1-hatch)" in bars[1].get("fill")
    heights = [float(b.get("height")) for b in bars]
    assert heights[1] == max(heights)
    assert (
        stats.duration_chart(
            stats.AgentStats(
                monitoring_enabled=True,
                status="enabled",
                quarantined=False,
                quarantined_reason=None,
                quarantined_at=None,
            )
        )
        is None
    )


def test_monitoring_off_keeps_runs_but_no_figures(db):
    org_id, inst_id = make_installation(db)
    add_jobs(db, org_id, inst_id, [("succeeded", 100.0, 1)])
    with db.write_session() as session:
        OrgScope(session, org_id).add(AgentConfig(monitoring_enabled=False))
    with db.session() as session:
        scope = OrgScope(session, org_id)
        figures = stats.agent_stats(scope, inst_id)
        assert stats.summaries(scope, [inst_id]) == {}
        assert len(stats.run_views(scope, inst_id)) == 1
    assert figures.monitoring_enabled is False
    assert figures.runs is None
    assert figures.p50_ms is None
    assert figures.recent == []


def test_summaries_of_many_installations_in_two_queries_and_never_another_orgs(db):
    org_id, inst_a = make_installation(db, "acme")
    other_org, inst_b = make_installation(db, "other")
    add_jobs(db, org_id, inst_a, [("succeeded", 100.0, 5), ("dead", 50.0, 1)])
    add_jobs(db, other_org, inst_b, [("succeeded", 10.0, 1)] * 3)
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        with db.session() as session:
            scope = OrgScope(session, org_id)
            statements.clear()
            got = stats.summaries(scope, [inst_a, inst_b])
            queries = [s for s in statements if "jobs" in s]
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert len(queries) == 2
    assert got[inst_a].runs == 2
    assert got[inst_a].success_rate == pytest.approx(0.5)
    assert got[inst_a].last_run_status == "dead"
    # The other organization's installation is asked for by id, and still shows nothing.
    assert got[inst_b].runs == 0
    assert got[inst_b].last_run_at is None
    with db.session() as session, pytest.raises(NotFoundError):
        stats.agent_stats(OrgScope(session, org_id), inst_b)
    with db.session() as session, pytest.raises(NotFoundError):
        stats.run_views(OrgScope(session, org_id), inst_b)


def test_run_logs_come_from_the_table_of_that_org_and_job_bounded(db):
    from paulyops.services.agents import joblogs
    from paulyops.services.agents.runtime import AgentLogLine

    org_id, inst_a = make_installation(db, "logs")
    other_org, inst_b = make_installation(db, "logs-other")
    job_1, job_2 = add_jobs(db, org_id, inst_a, [("succeeded", 10.0, 1)] * 2)
    (theirs,) = add_jobs(db, other_org, inst_b, [("succeeded", 10.0, 1)])
    now = utcnow()
    lines = [
        AgentLogLine(job_1, now, "info", "agent", "hello s3cr3t-value"),
        AgentLogLine(None, now, "warning", "stderr", "batch line"),
        AgentLogLine(job_2, now, "info", "agent", "other"),
        *(AgentLogLine(job_1, now, "info", "agent", f"line {n}") for n in range(300)),
    ]
    with db.write_session() as session:
        joblogs.store(session, org_id, [job_1, job_2], lines, secrets=("s3cr3t-value",))
        joblogs.store(session, other_org, [theirs], [AgentLogLine(None, now, "info", "x", "no")])
    with db.session() as session:
        got = stats.run_logs(OrgScope(session, org_id), [job_1, job_2, theirs])
    assert set(got) == {job_1, job_2}
    first = [line.message for line in got[job_1]]
    assert first[:2] == ["hello [secret]", "batch line"]  # untagged lines go to every job
    assert len(first) == joblogs.MAX_LINES_PER_JOB + 1
    assert first[-1] == f"{300 + 2 - joblogs.MAX_LINES_PER_JOB} more lines dropped"
    assert [line.message for line in got[job_2]] == ["batch line", "other"]
    # Deleted with its job (retention follows jobs).
    with db.write_session() as session:
        session.delete(session.get(Job, job_2))
    with db.session() as session:
        assert job_2 not in stats.run_logs(OrgScope(session, org_id), [job_2])
