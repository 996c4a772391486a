"""Run one claimed batch: package from the database, staged inputs, the injected runner.

:class:`JobExecutor` is what every worker (embedded thread or Celery task) calls with a
:class:`~paulyops.services.agents.jobs.Claim`:

1. the installation's stored archive is unpacked into the per-machine cache
   (``<data dir>/agents/cache``) by :func:`~paulyops.services.agents.unpack.unpack`, which
   checks its sha256 and CHECKSUMS there: no worker ever assumes a disk shared with the
   server. A stored archive that no longer matches quarantines that installation;
2. each job's input becomes a :class:`~paulyops.services.agents.runtime.RunItem` (a local
   path, or bytes staged in ``job_inputs`` written to a private work folder);
3. the run settings come from the injected provider (the lifecycle service's
   ``run_settings(scope, installation)``), the run from the injected
   :class:`~paulyops.services.agents.runtime.BatchRunner` (the sandbox's ``run_batch``);
4. while it runs, a heartbeat thread renews the leases every third of the lease;
5. each :class:`~paulyops.services.agents.runtime.ItemOutcome` completes or fails its job
   (only while the lease is still ours), AgentEvents record the run, consecutive failures
   are counted on the installation, and after ``quarantine_after`` of them it is
   quarantined (an AgentEvent, a security event and an audit row);
6. ``on_batch_finished(installation_id, ok_count, failed_count)`` is called last (the
   lifecycle service connects its automatic rollback there).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, cast

from sqlalchemy import select
from sqlalchemy.orm import Session, undefer

from paulyops.core import metrics
from paulyops.core.db.engine import Database
from paulyops.core.db.models import (
    AgentConfig,
    AgentEvent,
    AgentInstallation,
    AgentPackage,
    StorageConfig,
)
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import NotFoundError, SandboxError
from paulyops.core.logging import get_logger
from paulyops.core.metrics import set_sandbox_mode
from paulyops.core.security.crypto import DecryptionError
from paulyops.services.actor import SYSTEM, Actor
from paulyops.services.agents import joblogs, jobs, lifecycle
from paulyops.services.agents.jobs import Claim, ClaimedJob, JobPolicy
from paulyops.services.agents.runtime import (
    BatchRunner,
    ItemOutcome,
    RunItem,
    RunOutcome,
    RunRequest,
)
from paulyops.services.agents.unpack import ArchiveMismatchError, unpack
from paulyops.services.marketplace.errors import ArchiveError
from paulyops.services.storage import backends
from paulyops.services.storage.backends.base import CHUNK_BYTES, StorageBackend, StorageError

log = get_logger("paulyops.agents.jobs")

QUARANTINED = "quarantined"
DEFAULT_QUARANTINE_AFTER = 5


class BackendFactory(Protocol):
    """Build a stored connection's backend (``services.storage.backends.backend_for``)."""

    def __call__(
        self, config: StorageConfig, *, data_dir: Path
    ) -> backends.ConnectionTester | None: ...


class SettingsProvider(Protocol):
    """Return the settings one run may see (secret fields only with their grant)."""

    def __call__(self, scope: OrgScope, installation: AgentInstallation) -> Mapping[str, Any]: ...


JobFinishedHook = Callable[[Session, ClaimedJob, str, Mapping[str, Any] | None, str | None], None]
"""``on_job_finished(session, job, state, result, error)`` for a job that ``succeeded`` or is
``dead``, in the transaction that records it (a savepoint: its failure is logged and
loses nothing). Called at most once per job record: complete/fail only act on our lease."""

BatchFinishedHook = Callable[[str, int, int], None]
"""``on_batch_finished(installation_id, ok_count, failed_count)``, after the outcomes commit."""


def no_settings(scope: OrgScope, installation: AgentInstallation) -> Mapping[str, Any]:
    """A provider for agents without settings (and for tests): always ``{}``."""
    return {}


@dataclass(frozen=True, slots=True)
class BatchReport:
    """What one batch did: jobs succeeded, failed (retrying or dead), handed back, discarded."""

    installation_id: str
    succeeded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    dead: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    discarded: list[str] = field(default_factory=list)
    quarantined: bool = False
    error: str | None = None


class Heartbeat:
    """Renew a claim's leases every third of the lease until stopped, in a thread."""

    def __init__(self, db: Database, claim: Claim, policy: JobPolicy) -> None:
        self.db = db
        self.claim = claim
        self.policy = policy
        self.held = set(claim.job_ids)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"heartbeat-{claim.owner}", daemon=True
        )

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.policy.heartbeat_s):
            try:
                still = jobs.heartbeat(
                    self.db, list(self.held), owner=self.claim.owner, policy=self.policy
                )
            except Exception:  # a missed beat is retried; the lease outlives two of them
                log.warning("job_heartbeat_failed", owner=self.claim.owner, exc_info=True)
                continue
            lost = self.held - set(still)
            if lost:
                log.warning("job_lease_lost", owner=self.claim.owner, jobs=sorted(lost))
                self.held = set(still)


@dataclass
class _Prepared:
    request: RunRequest
    work_dir: Path
    skipped: dict[str, str]  # job id -> why it could not be given to the agent
    secrets: tuple[str, ...] = ()  # the secret settings' values the run was given


REDACTED = "[secret]"


def secret_values(manifest: Mapping[str, Any], settings: Mapping[str, Any]) -> tuple[str, ...]:
    """Return the values of the secret settings (``secret: true``) given to a run, as an
    agent's error text would show them (longest first, so none is half-replaced)."""
    props = dict(dict(manifest.get("settings") or {}).get("properties") or {})
    found = {
        text
        for key, prop in props.items()
        if isinstance(prop, dict) and prop.get("secret") is True and key in settings
        for text in (str(settings[key]), repr(settings[key]))
        if len(text) >= 4
    }
    return tuple(sorted(found, key=len, reverse=True))


def redact(text: str | None, values: tuple[str, ...]) -> str | None:
    """Return ``text`` with every secret value replaced (an agent may echo its secrets)."""
    if text is None:
        return None
    for value in values:
        text = text.replace(value, REDACTED)
    return text


def _redacted(outcome: RunOutcome, values: tuple[str, ...]) -> RunOutcome:
    if not values:
        return outcome
    items = [replace(item, error=redact(item.error, values)) for item in outcome.items]
    return replace(outcome, items=tuple(items), error=redact(outcome.error, values))


class JobExecutor:
    """Run claimed batches with an injected runner and settings provider.

    Args:
        db: the database.
        runner: the sandbox's ``run_batch`` (or any :class:`BatchRunner`).
        settings_provider: ``run_settings(scope, installation) -> dict``.
        data_dir: the instance data dir; packages unpack into ``agents/cache`` there and
            staged inputs go to ``agents/work``.
        policy: lease and retry policy.
        quarantine_after: consecutive failed jobs that quarantine an installation.
        on_batch_finished: called with (installation id, ok count, failed count).
        backend_factory: builds a connection's storage backend for ``storage`` inputs.
    """

    def __init__(
        self,
        db: Database,
        *,
        runner: BatchRunner,
        settings_provider: SettingsProvider,
        data_dir: Path,
        policy: JobPolicy,
        quarantine_after: int = DEFAULT_QUARANTINE_AFTER,
        on_batch_finished: BatchFinishedHook | None = None,
        on_job_finished: JobFinishedHook | None = None,
        backend_factory: BackendFactory = backends.backend_for,
    ) -> None:
        self.db = db
        self.data_dir = data_dir
        self.backend_factory = backend_factory
        self.runner = runner
        self.settings_provider = settings_provider
        self.cache_dir = data_dir / "agents" / "cache"
        self.work_root = data_dir / "agents" / "work"
        self.policy = policy
        self.quarantine_after = quarantine_after
        self.on_batch_finished = on_batch_finished
        self.on_job_finished = on_job_finished

    # --- the batch ------------------------------------------------------------------------
    def run(self, claim: Claim) -> BatchReport:
        """Run one claimed batch to the end and record every job's outcome."""
        try:
            with Heartbeat(self.db, claim, self.policy):
                prepared = self._prepare(claim)
                try:
                    outcome = self._run_batch(prepared, claim)
                except BaseException:
                    _remove(prepared.work_dir)
                    raise
        except _Refused as refused:
            return refused.report
        # Beats stop before the outcomes are recorded (the lease has two thirds left):
        # a beat after a completion would only report the finished jobs as lost.
        try:
            report = self._record(claim, prepared, outcome)
        finally:
            _remove(prepared.work_dir)
        if self.on_batch_finished is not None:
            try:
                self.on_batch_finished(
                    claim.installation_id, len(report.succeeded), len(report.failed + report.dead)
                )
            except Exception:  # the hook (rollback) must not lose the recorded outcomes
                log.exception("on_batch_finished_failed", installation=claim.installation_id)
        return report

    def _prepare(self, claim: Claim) -> _Prepared:
        with self.db.session() as session:
            scope = OrgScope(session, claim.organization_id)
            installation = scope.first(
                AgentInstallation, AgentInstallation.id == claim.installation_id
            )
            if installation is None or installation.status != jobs.RUNNABLE_INSTALLATION:
                # Disabled or quarantined since the claim: its jobs wait for it.
                released = jobs.release(self.db, claim.job_ids, owner=claim.owner, started=False)
                raise _Refused(BatchReport(claim.installation_id, released=released))
            package = session.scalar(
                select(AgentPackage)
                .options(undefer(AgentPackage.archive))
                .where(AgentPackage.id == installation.package_id)
            )
            if package is None:
                raise _Refused(self._fail_all(claim, "the agent's package is no longer stored"))
            try:
                package_dir = unpack(package.archive, package.sha256, self.cache_dir)
            except ArchiveMismatchError:
                reason = "its stored archive no longer matches the checksum recorded at install"
                raise _Refused(self._quarantine_and_release(claim, reason)) from None
            except ArchiveError as err:
                reason = f"its stored archive is unreadable: {err.message}"
                raise _Refused(self._quarantine_and_release(claim, reason)) from None
            settings = self.settings_provider(scope, installation)
            manifest = package.manifest or {}
            entrypoint = str(manifest.get("entrypoint", ""))
            resources = {
                str(k): int(v)
                for k, v in dict(manifest.get("resources") or {}).items()
                if isinstance(v, int)
            }
            capabilities = frozenset(installation.granted_permissions or [])
            trusted = package.source == "bundled" or package.signature_state == "signed"
            agent_id, version = installation.agent_id, installation.version
        work_dir = self.work_root / f"{claim.installation_id}-{secrets.token_hex(6)}"
        work_dir.mkdir(parents=True, mode=0o700)
        items: list[RunItem] = []
        skipped: dict[str, str] = {}
        for job in claim.jobs:
            try:
                items.append(self._item(job, work_dir))
            except _InputError as err:
                skipped[job.id] = str(err)
        request = RunRequest(
            organization_id=claim.organization_id,
            installation_id=claim.installation_id,
            agent_id=agent_id,
            version=version,
            package_dir=package_dir,
            entrypoint=entrypoint,
            items=items,
            capabilities=capabilities,
            settings=dict(settings),
            resources=resources,
            trusted=trusted,
            correlation_id=claim.jobs[0].correlation_id,
        )
        hidden = secret_values(manifest, settings)
        return _Prepared(replace(request, secret_values=hidden), work_dir, skipped, hidden)

    def _item(self, job: ClaimedJob, work_dir: Path) -> RunItem:
        doc = job.input
        source = dict(doc.get("source") or {})
        name = str(doc.get("name") or "input")
        if source.get("kind") == "storage":
            path = self._fetch(job, source, work_dir, name)
        elif source.get("kind") == "staged":
            try:
                data = jobs.staged_input(self.db, job)
            except Exception as err:
                raise _InputError(f"input {name}: {err}") from err
            folder = work_dir / job.id
            folder.mkdir(mode=0o700)
            path = folder / Path(name).name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        else:
            path = Path(str(source.get("path") or ""))
            if not path.is_absolute() or not path.is_file():
                raise _InputError(
                    f"input {name} is not readable on this machine; local files reach other "
                    "machines' workers only when staged (see docs/agents/jobs.md)"
                )
        return RunItem(
            job_id=job.id,
            attempt=job.attempt,
            source=path,
            name=name,
            media_type=str(doc.get("mediaType") or "application/octet-stream"),
            size=path.stat().st_size,
            document_class=doc.get("documentClass"),
            metadata=dict(doc.get("metadata") or {}),
        )

    def _fetch(self, job: ClaimedJob, source: dict[str, Any], work_dir: Path, name: str) -> Path:
        """Read a ``storage`` input through its connection (DESIGN.md, "Inputs on other
        machines"), checking its size and sha256 against what ingestion recorded."""
        try:
            with self.db.session() as session:
                row = OrgScope(session, job.organization_id).get(
                    StorageConfig, str(source.get("connection") or "")
                )
                backend = self.backend_factory(row, data_dir=self.data_dir)
        except (NotFoundError, ValueError, DecryptionError) as err:
            raise _InputError(f"input {name}: its storage connection is unusable: {err}") from err
        if backend is None or not hasattr(backend, "open_read"):
            raise _InputError(f"input {name}: its storage connection cannot be read here")
        reader = cast("StorageBackend", backend)
        folder = work_dir / job.id
        folder.mkdir(mode=0o700)
        path = folder / Path(name).name
        digest = hashlib.sha256()
        size = 0
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh, reader.open_read(str(source.get("path"))) as stream:
                while chunk := stream.read(CHUNK_BYTES):
                    digest.update(chunk)
                    size += len(chunk)
                    fh.write(chunk)
        except StorageError as err:
            raise _InputError(f"input {name}: {err.message}") from err
        expected = source.get("sha256")
        if expected and digest.hexdigest() != expected:
            raise _InputError(
                f"input {name}: its content changed since it was found (sha256 "
                f"{digest.hexdigest()[:12]}..., expected {str(expected)[:12]}...)"
            )
        return path

    def _run_batch(self, prepared: _Prepared, claim: Claim) -> RunOutcome:
        request = prepared.request
        self._event(
            claim,
            "run.started",
            {"jobs": [item.job_id for item in request.items], "size": len(request.items)},
        )
        if not request.items:
            return RunOutcome(items=(), mode="refused", error="no input could be staged")
        start = time.perf_counter()
        try:
            outcome = self.runner(request)
        except SandboxError as err:
            # The host's problem (every slot busy, an untraversable sandbox root), not the
            # agent's: hand the jobs back without counting it against the installation.
            log.warning(
                "agent_sandbox_unavailable", installation=claim.installation_id, error=str(err)
            )
            released = jobs.release(self.db, claim.job_ids, owner=claim.owner, started=False)
            raise _Refused(BatchReport(claim.installation_id, released=released)) from None
        except Exception as err:  # the runner is an outside edge: its failure fails the batch
            log.exception("agent_runner_failed", installation=claim.installation_id)
            reason = f"the sandbox failed: {type(err).__name__}: {err}"
            return RunOutcome(
                items=[ItemOutcome(item.job_id, ok=False, error=reason) for item in request.items],
                mode="refused",
                error=reason,
                duration_ms=(time.perf_counter() - start) * 1000,
            )
        set_sandbox_mode(outcome.mode)
        return outcome

    def _after_batch(
        self,
        session: Session,
        installation: AgentInstallation,
        count: int,
        failed: bool,
        report: BatchReport,
        *,
        alert: bool = True,
    ) -> BatchReport:
        """Probation and quarantine, in the outcomes' transaction (the lifecycle decides)."""
        scope = OrgScope(session, installation.organization_id)
        if installation.status != jobs.RUNNABLE_INSTALLATION:
            return report
        if not failed:
            installation.probation_runs_left = max(0, installation.probation_runs_left - 1)
            return report
        if installation.probation_runs_left > 0 and installation.previous_package_id:
            why = (
                f"version {installation.version} failed a run while on probation: "
                f"{installation.last_error}"
            )
            lifecycle.rollback(scope, installation.id, why, cache=self.cache_dir)
            jobs.requeue_installation(scope, installation.id)
            return report
        if count >= self.quarantine_after:
            quarantine(
                session,
                installation,
                f"{count} consecutive failed runs (the last: {installation.last_error})",
                alert=alert,
            )
            return _with_quarantine(report)
        return report

    # --- recording --------------------------------------------------------------------------
    def _record(self, claim: Claim, prepared: _Prepared, outcome: RunOutcome) -> BatchReport:
        # Errors are shown to every reader of the agent (and in events, alerts, logs):
        # a secret setting the agent echoed in its error never reaches them.
        outcome = _redacted(outcome, prepared.secrets)
        by_id = {item.job_id: item for item in outcome.items}
        report = BatchReport(claim.installation_id, error=outcome.error)
        ordered: list[tuple[ClaimedJob, ItemOutcome]] = []
        for job in claim.jobs:
            if job.id in prepared.skipped:
                ordered.append((job, ItemOutcome(job.id, ok=False, error=prepared.skipped[job.id])))
            else:
                missing = outcome.error or "the sandbox returned no outcome for this job"
                ordered.append(
                    (job, by_id.get(job.id) or ItemOutcome(job.id, False, error=missing))
                )
        with self.db.write_session() as session:
            monitored = monitoring_enabled(session, claim.organization_id)
            streak_broken = False
            new_failures = 0
            for job, item in ordered:
                self._record_one(session, claim, job, item, report, monitored=monitored)
                if item.ok:
                    streak_broken, new_failures = True, 0
                elif job.id not in prepared.skipped:
                    new_failures += 1
            installation = _installation(session, claim)
            if installation is not None:
                count = new_failures if streak_broken else installation.failure_count + new_failures
                installation.failure_count = count
                failures = report.failed + report.dead
                if failures:
                    installation.last_error = outcome.error or next(
                        (item.error for _job, item in ordered if not item.ok and item.error), None
                    )
                kind = "run.failed" if failures else "run.succeeded"
                if monitored or not failures:  # monitoring off: no failure alerts
                    self._event(
                        claim,
                        kind,
                        {
                            "succeeded": len(report.succeeded),
                            "failed": len(failures),
                            "discarded": len(report.discarded),
                            "mode": outcome.mode,
                            "durationMs": round(outcome.duration_ms, 1),
                            **({"error": outcome.error} if outcome.error else {}),
                        },
                        session=session,
                    )
                report = self._after_batch(
                    session, installation, count, bool(failures), report, alert=monitored
                )
            # The agent's log lines, with the outcomes they explain (and the same fate).
            joblogs.store(
                session,
                claim.organization_id,
                [job.id for job in claim.jobs],
                outcome.logs,
                dropped=outcome.dropped_logs,
                secrets=prepared.secrets,
            )
        return report

    def _record_one(
        self,
        session: Session,
        claim: Claim,
        job: ClaimedJob,
        item: ItemOutcome,
        report: BatchReport,
        *,
        monitored: bool = True,
    ) -> None:
        seconds = item.duration_ms / 1000 if item.duration_ms else None

        def count_agent_run(result: str, seconds: float | None) -> None:
            if monitored:  # the organization's monitoringEnabled: false keeps no metrics
                metrics.count_agent_run(result, seconds)

        if item.ok:
            result = dict(item.result or {})
            if item.files:
                result["outputFiles"] = [
                    {"name": name, "size": len(data)} for name, data in sorted(item.files.items())
                ]
            done = jobs.complete(
                self.db,
                job.id,
                owner=claim.owner,
                result=result,
                duration_ms=item.duration_ms,
                session=session,
            )
            (report.succeeded if done else report.discarded).append(job.id)
            count_agent_run("succeeded" if done else "discarded", seconds)
            if done:
                self._job_finished(session, job, jobs.SUCCEEDED, result, None)
            return
        outcome = jobs.fail(
            self.db,
            job.id,
            owner=claim.owner,
            error=item.error or "failed without a reason",
            policy=self.policy,
            duration_ms=item.duration_ms,
            session=session,
        )
        if outcome is None:
            report.discarded.append(job.id)
            count_agent_run("discarded", seconds)
        elif outcome.state == jobs.DEAD:
            report.dead.append(job.id)
            count_agent_run("dead", seconds)
            self._job_finished(session, job, jobs.DEAD, None, item.error)
        else:
            report.failed.append(job.id)
            count_agent_run("failed", seconds)

    def _job_finished(
        self,
        session: Session,
        job: ClaimedJob,
        state: str,
        result: Mapping[str, Any] | None,
        error: str | None,
    ) -> None:
        if self.on_job_finished is None:
            return
        try:
            with session.begin_nested():
                self.on_job_finished(session, job, state, result, error)
        except Exception:  # the job's own outcome must stay recorded
            log.exception("on_job_finished_failed", job=job.id)

    def _event(
        self,
        claim: Claim,
        kind: str,
        details: dict[str, Any],
        *,
        session: Session | None = None,
    ) -> None:
        def add(s: Session) -> None:
            OrgScope(s, claim.organization_id).add(
                AgentEvent(
                    installation_id=claim.installation_id,
                    agent_id=claim.jobs[0].agent_id,
                    kind=kind,
                    details=details,
                )
            )

        if session is not None:
            add(session)
            return
        with self.db.write_session() as s:
            add(s)

    def _fail_all(self, claim: Claim, reason: str) -> BatchReport:
        report = BatchReport(claim.installation_id, error=reason)
        with self.db.write_session() as session:
            for job in claim.jobs:
                outcome = jobs.fail(
                    self.db,
                    job.id,
                    owner=claim.owner,
                    error=reason,
                    policy=self.policy,
                    retry=False,
                    session=session,
                )
                if outcome is not None:
                    report.dead.append(job.id)
        return report

    def _quarantine_and_release(self, claim: Claim, reason: str) -> BatchReport:
        with self.db.write_session() as session:
            installation = _installation(session, claim)
            if installation is not None and installation.status != QUARANTINED:
                quarantine(session, installation, reason)
        released = jobs.release(self.db, claim.job_ids, owner=claim.owner, started=False)
        return BatchReport(claim.installation_id, released=released, quarantined=True, error=reason)


class _Refused(Exception):  # noqa: N818  # control flow inside this module, never raised out
    def __init__(self, report: BatchReport) -> None:
        super().__init__(report.error or "refused")
        self.report = report


class _InputError(Exception):
    pass


def _installation(session: Session, claim: Claim) -> AgentInstallation | None:
    return OrgScope(session, claim.organization_id).first(
        AgentInstallation, AgentInstallation.id == claim.installation_id
    )


def _with_quarantine(report: BatchReport) -> BatchReport:
    return BatchReport(
        report.installation_id,
        succeeded=report.succeeded,
        failed=report.failed,
        dead=report.dead,
        released=report.released,
        discarded=report.discarded,
        quarantined=True,
        error=report.error,
    )


def _remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def quarantine(
    session: Session,
    installation: AgentInstallation,
    reason: str,
    *,
    actor: Actor = SYSTEM,
    alert: bool = True,
) -> None:
    """Quarantine one installation, in the caller's transaction: it runs nothing until released.

    The lifecycle service writes the AgentEvent, the audit row and (with ``alert``) the
    security event; its queued jobs stay queued, and an admin's release resets
    ``failure_count`` and requeues them.
    """
    installation.last_error = reason[: jobs.MAX_ERROR_CHARS]
    lifecycle.quarantine(
        OrgScope(session, installation.organization_id),
        installation.id,
        reason,
        actor=actor,
        alert=alert,
    )


def monitoring_enabled(session: Session, organization_id: str) -> bool:
    """Whether the organization keeps run metrics and failure alerts (``monitoringEnabled``)."""
    config = OrgScope(session, organization_id).first(AgentConfig)
    return True if config is None else bool(config.monitoring_enabled)


__all__ = [
    "DEFAULT_QUARANTINE_AFTER",
    "QUARANTINED",
    "BatchFinishedHook",
    "BatchReport",
    "Heartbeat",
    "JobExecutor",
    "JobFinishedHook",
    "SettingsProvider",
    "monitoring_enabled",
    "no_settings",
    "quarantine",
]
