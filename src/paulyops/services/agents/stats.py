"""Run statistics of installed agents: last run, success rate, p50/p95 duration, a chart.

Read from the Job rows (the truth of every run), one query per figure and never one per
row: :func:`agent_stats` for one installation's page and API answer, :func:`summaries` for
the agents list (every installation in two queries). Success rate is succeeded among
finished runs that did not get cancelled (``succeeded / (succeeded + dead)``, as
:func:`paulyops.services.agents.runs.success_rate`); durations are those of the latest
:data:`DURATION_WINDOW` finished runs that measured one.

An organization whose AgentConfig has ``monitoringEnabled: false`` keeps its job records
(recent runs stay visible) but gets no run metrics: the figures are ``None`` and
``monitoring_enabled`` is false. :func:`duration_chart` draws the recent durations as a
small, self-contained SVG (no script), with a ``<title>``/``<desc>`` and a title per bar.
:func:`run_logs` reads an agent's log lines back from the ``job_logs`` table, where the
executor stores them with each job's outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel
from sqlalchemy import func, select

from paulyops.core.db.models import AgentConfig, AgentInstallation, Job
from paulyops.core.db.scoped import OrgScope
from paulyops.services.agents import joblogs, jobs, lifecycle, runs
from paulyops.services.agents.installations import InstallationView

# How many of the latest finished runs the percentiles and the chart are computed from.
DURATION_WINDOW = 200
CHART_RUNS = 30
# Log lines shown per run (the executor stores at most 200 per job, and a "dropped" line).
MAX_LOG_LINES = 201
ENDED = (jobs.SUCCEEDED, jobs.DEAD)


class _View(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class RunPoint(_View):
    """One finished run in the chart: when, how long, how it ended."""

    job_id: str
    status: str
    finished_at: datetime
    duration_ms: float
    input_name: str


class AgentStats(_View):
    """One installation's run figures (``None`` where there is no run, or monitoring is off)."""

    monitoring_enabled: bool
    status: str
    quarantined: bool
    quarantined_reason: str | None
    quarantined_at: datetime | None
    runs: int | None = None
    succeeded: int | None = None
    failed: int | None = None
    waiting: int | None = None
    success_rate: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    last_run_at: datetime | None = None
    last_run_status: str | None = None
    recent: list[RunPoint] = []


class RunSummary(_View):
    """What the agents list shows of one installation: its last run and success rate."""

    last_run_at: datetime | None = None
    last_run_status: str | None = None
    success_rate: float | None = None
    runs: int = 0


class LogLine(_View):
    """One line an agent logged during a run."""

    timestamp: datetime
    level: str
    logger: str
    message: str


class AgentDetail(InstallationView):
    """One installed agent with its run figures (``GET /api/agents/{agentId}``)."""

    stats: AgentStats


class RunView(_View):
    """One run (a Job record) as the API lists it."""

    id: str
    agent_id: str
    status: str
    attempts: int
    max_attempts: int
    input_name: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: float | None
    error: str | None
    result: dict[str, Any] | None


def agent_detail(scope: OrgScope, ref: str) -> AgentDetail:
    """Return an installed agent (agent id or installation id) with its figures.

    Raises:
        NotFoundError: not installed in this organization.
    """
    inst = lifecycle.show(scope, ref)
    return AgentDetail(**inst.model_dump(), stats=agent_stats(scope, inst.id))


def run_views(scope: OrgScope, ref: str, *, limit: int = 20) -> list[RunView]:
    """Return an installed agent's latest runs, newest first.

    Raises:
        NotFoundError: not installed in this organization.
    """
    return [
        RunView(
            id=v.id,
            agent_id=v.agent_id,
            status=v.status,
            attempts=v.attempts,
            max_attempts=v.max_attempts,
            input_name=v.input_name,
            created_at=v.created_at,
            started_at=v.started_at,
            finished_at=v.finished_at,
            duration_ms=v.duration_ms,
            error=v.error,
            result=v.result,
        )
        for v in runs.recent_runs(scope, ref, limit=limit)
    ]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) with linear interpolation between ranks; ``None`` if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * min(1.0, max(0.0, q))
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def monitoring_enabled(scope: OrgScope) -> bool:
    """Whether the organization keeps run metrics (AgentConfig ``monitoringEnabled``)."""
    config = scope.first(AgentConfig)
    return True if config is None else bool(config.monitoring_enabled)


def _rate(succeeded: int, dead: int) -> float | None:
    total = succeeded + dead
    return succeeded / total if total else None


def agent_stats(scope: OrgScope, installation_id: str) -> AgentStats:
    """Return one installation's figures: three queries (counts, latest runs, last run).

    Raises:
        NotFoundError: no such installation in this organization.
    """
    inst = scope.get(AgentInstallation, installation_id)
    base = AgentStats(
        monitoring_enabled=monitoring_enabled(scope),
        status=inst.status,
        quarantined=inst.status == "quarantined",
        quarantined_reason=inst.quarantined_reason,
        quarantined_at=inst.quarantined_at,
    )
    if not base.monitoring_enabled:
        return base
    session, org = scope.session, scope.organization_id
    mine = (Job.organization_id == org, Job.installation_id == inst.id)
    counts: dict[str, int] = {
        status: count
        for status, count in session.execute(
            select(Job.status, func.count()).where(*mine).group_by(Job.status)
        ).all()
    }
    latest = session.execute(
        select(Job.id, Job.status, Job.finished_at, Job.duration_ms, Job.input)
        .where(*mine, Job.status.in_(ENDED), Job.duration_ms.is_not(None))
        .order_by(Job.finished_at.desc(), Job.id.desc())
        .limit(DURATION_WINDOW)
    ).all()
    last = session.execute(
        select(Job.status, Job.finished_at)
        .where(*mine, Job.finished_at.is_not(None), Job.status != jobs.CANCELLED)
        .order_by(Job.finished_at.desc(), Job.id.desc())
        .limit(1)
    ).first()
    durations = [float(row.duration_ms) for row in latest]
    succeeded, dead = counts.get(jobs.SUCCEEDED, 0), counts.get(jobs.DEAD, 0)
    recent = [
        RunPoint(
            job_id=row.id,
            status=row.status,
            finished_at=row.finished_at,
            duration_ms=float(row.duration_ms),
            input_name=str((row.input or {}).get("name") or ""),
        )
        for row in reversed(latest[:CHART_RUNS])
    ]
    return base.model_copy(
        update={
            "runs": succeeded + dead,
            "succeeded": succeeded,
            "failed": dead,
            "waiting": sum(counts.get(s, 0) for s in (jobs.QUEUED, jobs.RUNNING, jobs.FAILED)),
            "success_rate": _rate(succeeded, dead),
            "p50_ms": percentile(durations, 0.50),
            "p95_ms": percentile(durations, 0.95),
            "last_run_at": last.finished_at if last else None,
            "last_run_status": last.status if last else None,
            "recent": recent,
        }
    )


def summaries(scope: OrgScope, installation_ids: Sequence[str]) -> dict[str, RunSummary]:
    """Last run and success rate of several installations, in two queries.

    Empty when the organization's monitoring is off (the list then shows nothing).
    """
    ids = list(installation_ids)
    if not ids or not monitoring_enabled(scope):
        return {}
    session, org = scope.session, scope.organization_id
    counts: dict[str, dict[str, int]] = {}
    for installation_id, status, count in session.execute(
        select(Job.installation_id, Job.status, func.count())
        .where(
            Job.organization_id == org,
            Job.installation_id.in_(ids),
            Job.status.in_(ENDED),
        )
        .group_by(Job.installation_id, Job.status)
    ).all():
        counts.setdefault(str(installation_id), {})[status] = count
    ranked = (
        select(
            Job.installation_id,
            Job.status,
            Job.finished_at,
            func.row_number()
            .over(
                partition_by=Job.installation_id,
                order_by=(Job.finished_at.desc(), Job.id.desc()),
            )
            .label("rank"),
        )
        .where(
            Job.organization_id == org,
            Job.installation_id.in_(ids),
            Job.finished_at.is_not(None),
            Job.status != jobs.CANCELLED,
        )
        .subquery()
    )
    last = {
        row.installation_id: row
        for row in session.execute(
            select(ranked.c.installation_id, ranked.c.status, ranked.c.finished_at).where(
                ranked.c.rank == 1
            )
        ).all()
    }
    out: dict[str, RunSummary] = {}
    for installation_id in ids:
        by_status = counts.get(installation_id, {})
        succeeded, dead = by_status.get(jobs.SUCCEEDED, 0), by_status.get(jobs.DEAD, 0)
        row = last.get(installation_id)
        out[installation_id] = RunSummary(
            last_run_at=row.finished_at if row else None,
            last_run_status=row.status if row else None,
            success_rate=_rate(succeeded, dead),
            runs=succeeded + dead,
        )
    return out


def run_logs(scope: OrgScope, job_ids: Sequence[str]) -> dict[str, list[LogLine]]:
    """The agent log lines of these jobs, as the executor stored them (``job_logs``).

    Stored with the job outcome by whichever machine ran it (the server, a CLI's
    ``--wait``, a remote Celery worker), so every reader sees the same lines.
    """
    return {
        job_id: [
            LogLine(timestamp=row.at, level=row.level, logger=row.logger, message=row.message)
            for row in rows[:MAX_LOG_LINES]
        ]
        for job_id, rows in joblogs.read(scope, job_ids).items()
    }


# --- the chart ----------------------------------------------------------------------------

CHART_WIDTH = 400
CHART_HEIGHT = 150
_PAD_LEFT, _PAD_RIGHT, _PAD_TOP, _PAD_BOTTOM = 56, 6, 12, 24


def format_ms(value: float | None) -> str:
    """A duration for people: ``0.6 ms``, ``850 ms``, ``1.4 s``, ``2 min 5 s``; ``—`` if unknown."""
    if value is None:
        return "—"
    if value == 0:
        return "0 ms"
    if value < 10:
        return f"{value:.1f} ms"
    if value < 1000:
        return f"{value:.0f} ms"
    seconds = value / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


def duration_chart(stats: AgentStats, *, chart_id: str = "run-chart") -> str | None:
    """Draw the recent runs' durations as an inline SVG, oldest left; ``None`` without runs.

    Succeeded runs are solid bars; failed (dead) ones are hatched and marked, so the
    difference does not rest on colour alone. The p95 is a dashed line. Every bar has a
    ``<title>`` (shown on hover, read by screen readers).
    """
    points = stats.recent
    if not points:
        return None
    top = max(max(p.duration_ms for p in points), stats.p95_ms or 0.0) or 1.0
    inner_w = CHART_WIDTH - _PAD_LEFT - _PAD_RIGHT
    inner_h = CHART_HEIGHT - _PAD_TOP - _PAD_BOTTOM
    slot = inner_w / max(len(points), 1)
    bar = max(2.0, min(24.0, slot * 0.7))
    failed = sum(1 for p in points if p.status != jobs.SUCCEEDED)
    title = f"Durations of the last {len(points)} runs"
    desc = (
        f"{len(points) - failed} succeeded, {failed} failed; p50 {format_ms(stats.p50_ms)}, "
        f"p95 {format_ms(stats.p95_ms)}; longest {format_ms(top)}."
    )
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="run-chart" role="img" '
        f'viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" preserveAspectRatio="xMinYMid meet" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
        f'<desc id="{chart_id}-desc">{escape(desc)}</desc>',
        f'<defs><pattern id="{chart_id}-hatch" width="6" height="6" '
        'patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
        '<rect width="6" height="6" class="bar-failed"/>'
        '<line x1="0" y1="0" x2="0" y2="6" class="hatch"/></pattern></defs>',
    ]
    base_y = _PAD_TOP + inner_h
    for fraction in (0.0, 0.5, 1.0):
        y = base_y - inner_h * fraction
        parts.append(
            f'<line x1="{_PAD_LEFT}" y1="{y:.1f}" x2="{CHART_WIDTH - _PAD_RIGHT}" '
            f'y2="{y:.1f}" class="grid"/>'
            f'<text x="{_PAD_LEFT - 6}" y="{y + 4:.1f}" class="axis" text-anchor="end">'
            f"{escape(format_ms(top * fraction))}</text>"
        )
    for index, point in enumerate(points):
        height = max(1.5, inner_h * point.duration_ms / top)
        x = _PAD_LEFT + slot * index + (slot - bar) / 2
        ok = point.status == jobs.SUCCEEDED
        label = (
            f"{point.input_name or point.job_id}: {point.status}, "
            f"{format_ms(point.duration_ms)}, {point.finished_at:%Y-%m-%d %H:%M} UTC"
        )
        fill = 'class="bar-ok"' if ok else f'fill="url(#{chart_id}-hatch)" class="bar-hatched"'
        parts.append(
            f'<rect x="{x:.1f}" y="{base_y - height:.1f}" width="{bar:.1f}" '
            f'height="{height:.1f}" {fill}><title>{escape(label)}</title></rect>'
        )
        if not ok:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{base_y - height - 3:.1f}" class="mark" '
                'text-anchor="middle" aria-hidden="true">&#215;</text>'
            )
    if stats.p95_ms is not None:
        y = base_y - inner_h * stats.p95_ms / top
        parts.append(
            f'<line x1="{_PAD_LEFT}" y1="{y:.1f}" x2="{CHART_WIDTH - _PAD_RIGHT}" '
            f'y2="{y:.1f}" class="p95"><title>{escape("p95 " + format_ms(stats.p95_ms))}'
            "</title></line>"
        )
    first, last = points[0].finished_at, points[-1].finished_at
    parts.append(
        f'<text x="{_PAD_LEFT}" y="{CHART_HEIGHT - 6}" class="axis">'
        f"{escape(f'{first:%b %d %H:%M}')}</text>"
        f'<text x="{CHART_WIDTH - _PAD_RIGHT}" y="{CHART_HEIGHT - 6}" class="axis" '
        f'text-anchor="end">{escape(f"{last:%b %d %H:%M}")}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


__all__ = [
    "CHART_RUNS",
    "DURATION_WINDOW",
    "AgentDetail",
    "AgentStats",
    "LogLine",
    "RunPoint",
    "RunSummary",
    "RunView",
    "agent_detail",
    "agent_stats",
    "duration_chart",
    "format_ms",
    "monitoring_enabled",
    "percentile",
    "run_logs",
    "run_views",
    "summaries",
]
