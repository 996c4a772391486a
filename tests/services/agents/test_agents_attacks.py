"""Attacks on the job layer and ``agents run --input``: hostile names and files, other orgs."""

from __future__ import annotations

import os

import pytest
import structlog.testing
from sqlalchemy import func, select

from paulyops.core.db.models import Job, JobInput
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import NotFoundError, SpecValidationError
from paulyops.services.actor import CLI
from paulyops.services.agents import jobs, runs
from paulyops.services.agents.jobs import JobPolicy, JobSpec
from tests.support.jobs import make_installation

POLICY = JobPolicy()
# Its sandbox runs take slot uids from the range test_sandbox.py uses.
pytestmark = pytest.mark.xdist_group("sandbox-uids")


def _count(db) -> tuple[int, int]:
    with db.session() as session:
        return (
            session.scalar(select(func.count()).select_from(Job)),
            session.scalar(select(func.count()).select_from(JobInput)),
        )


@pytest.mark.parametrize(
    "name",
    [
        "a\x00b.txt",
        "a\nb.txt",
        "a\rb.txt",
        "report\u202etxt.exe",
        "x\u2066y.txt",
        "..",
        ".",
        "../x",
        "a\\..\\x",
        "",
        "x" * 256,
        "\x1b[31mred.txt",
    ],
)
def test_a_hostile_input_name_is_refused_before_anything_is_queued(db, name):
    org, inst = make_installation(db, "one")
    before = _count(db)
    with db.write_session() as session, pytest.raises(SpecValidationError) as caught:
        jobs.enqueue(
            OrgScope(session, org),
            inst,
            [JobSpec(name=name, media_type="text/plain", data=b"hi")],
            policy=POLICY,
        )
    assert caught.value.errors[0].field == "inputs[0]"
    assert _count(db) == before


def test_hostile_files_for_agents_run(db, tmp_path):
    """A FIFO, /dev/zero, a folder, a missing file, 60 MB: refused, nothing queued, no hang."""
    org, inst = make_installation(db, "one")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    big = tmp_path / "big.bin"
    with big.open("wb") as out:
        out.truncate(60 * 1024 * 1024)
    before = _count(db)
    for path in (fifo, tmp_path / "missing.txt", tmp_path, "/dev/zero"):
        with pytest.raises(NotFoundError):
            runs.run_file(db, org, inst, type(tmp_path)(path), actor=CLI, policy=POLICY)
    with pytest.raises(SpecValidationError):
        runs.run_file(db, org, inst, big, actor=CLI, policy=POLICY)
    assert _count(db) == before


def test_a_symlink_input_is_staged_as_its_target_under_the_links_own_name(db, tmp_path):
    """The person at the terminal chose the file; its bytes are staged, the name is the link's."""
    org, inst = make_installation(db, "one")
    target = tmp_path / "real.txt"
    target.write_text("one two")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    view = runs.run_file(db, org, inst, link, actor=CLI, policy=POLICY)
    with db.session() as session:
        job = session.get(Job, view.id)
        assert job.input["name"] == "link.txt"
        assert job.input["size"] == 7


def test_a_file_name_with_a_newline_is_refused_by_agents_run(db, tmp_path):
    org, inst = make_installation(db, "one")
    path = tmp_path / "a\nb.txt"
    path.write_text("hi")
    with pytest.raises(SpecValidationError):
        runs.run_file(db, org, inst, path, actor=CLI, policy=POLICY)
    assert _count(db) == (0, 0)


def test_another_organizations_jobs_are_never_found_nor_cancelled(db):
    org, inst = make_installation(db, "one")
    other, other_inst = make_installation(db, "two")
    with db.write_session() as session:
        (job,) = jobs.enqueue(
            OrgScope(session, org),
            inst,
            [JobSpec(name="a.txt", media_type="text/plain", data=b"hi")],
            policy=POLICY,
        )
        job_id = job.id
    with db.write_session() as session:
        scope = OrgScope(session, other)
        with pytest.raises(NotFoundError):
            jobs.get_job(scope, job_id)
        with pytest.raises(NotFoundError):
            jobs.cancel(scope, job_id, actor=CLI)
        with pytest.raises(NotFoundError):
            jobs.enqueue(
                scope,
                inst,
                [JobSpec(name="a.txt", media_type="text/plain", data=b"hi")],
                policy=POLICY,
            )
        assert jobs.recent_jobs(scope, inst) == []
        assert jobs.recent_jobs(scope, other_inst) == []
    with db.session() as session:
        assert session.get(Job, job_id).status == jobs.QUEUED


# --- package run: hostile manifests and inputs ---------------------------------------------

PKG_MANIFEST = """\
format = 1
id = "acme.hostile"
name = "Hostile"
version = "0.1.0"
description = "Tries its luck."
publisher = "acme"
license = "MIT"
entrypoint = "{entrypoint}"

[compatibility]
paulyops = ">=0.1,<1"
python = ">=3.11"
platforms = ["linux"]
"""


def _package_file(tmp_path, entrypoint: str, sources: dict[str, str]):
    from paulyops.services.marketplace.build import build_package

    src = tmp_path / f"src-{abs(hash(entrypoint))}"
    src.mkdir()
    (src / "manifest.toml").write_text(PKG_MANIFEST.format(entrypoint=entrypoint))
    for name, text in sources.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(text)
    out = tmp_path / f"{src.name}.pauly"
    out.write_bytes(build_package(src))
    return out


@pytest.mark.parametrize("entrypoint", ["../x:y", "os:system", "/etc/passwd:x", "a:b:c", "x"])
def test_package_run_refuses_an_entrypoint_outside_the_package(
    tmp_path, entrypoint, sandbox_config
):
    """A manifest naming ``../x:y`` or a stdlib module not in the package never runs."""
    from paulyops.core.errors import PaulyOpsError
    from paulyops.services.agents.local_run import run_package

    source = tmp_path / "in.txt"
    source.write_text("hi")
    try:
        package = _package_file(tmp_path, entrypoint, {"agent.py": "def handle(c, i):\n    pass\n"})
    except PaulyOpsError:
        return  # refused at build: the manifest form
    with pytest.raises(PaulyOpsError):
        run_package(package, [source], settings={}, grants=[], config=sandbox_config)


def test_package_run_of_a_package_shadowing_os_calls_nothing_of_the_hosts(tmp_path, bwrap_config):
    """``entrypoint = "os:system"`` with an ``os.py`` in the package validates, but the run
    calls the sandbox's own ``os.system(ctx, item)``: a TypeError, the item fails, nothing ran."""
    from paulyops.services.agents.local_run import run_package

    marker = tmp_path / "ran"
    package = _package_file(
        tmp_path,
        "os:system",
        {"os.py": f"open({str(marker)!r}, 'w').write('x')\ndef system(*a):\n    pass\n"},
    )
    source = tmp_path / "in.txt"
    source.write_text(f"touch {marker}")
    result = run_package(package, [source], settings={}, grants=[], config=bwrap_config)
    (item,) = result.outcome.items
    assert item.ok is False
    assert "TypeError" in (item.error or "") or "system" in (item.error or "")
    assert not marker.exists()


def test_package_run_refuses_fifos_devices_and_folders_without_hanging(tmp_path, sandbox_config):
    from paulyops.core.errors import PaulyOpsError
    from paulyops.services.agents.local_run import run_package

    package = _package_file(tmp_path, "agent:handle", {"agent.py": "def handle(c, i):\n    pass\n"})
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (fifo, type(tmp_path)("/dev/zero"), tmp_path, tmp_path / "missing"):
        with pytest.raises(PaulyOpsError) as caught:
            run_package(package, [path], settings={}, grants=[], config=sandbox_config)
        assert caught.value.errors[0].field == "input"


def test_package_run_stages_a_hostile_name_under_a_safe_one(tmp_path, bwrap_config):
    """Names with ``..``, a newline or U+202E reach the agent only as a safe file name in its
    own inputs folder; the sandbox's staging never writes outside the run folder."""
    from paulyops.services.agents.local_run import run_package

    agent = (
        "import os\n"
        "from paulyops.sdk import Result\n"
        "def handle(ctx, item):\n"
        "    return Result(data={'path': str(item.path), 'text': item.read_text()})\n"
    )
    package = _package_file(tmp_path, "agent:handle", {"agent.py": agent})
    names = ["a\nb.txt", "report\u202etxt.exe", "..x", "-rf"]
    inputs = []
    for index, name in enumerate(names):
        folder = tmp_path / f"in{index}"
        folder.mkdir()
        (folder / name).write_text(f"text {index}")
        inputs.append(folder / name)
    result = run_package(package, inputs, settings={}, grants=[], config=bwrap_config)
    for index, item in enumerate(result.outcome.items):
        assert item.ok, item.error
        path = item.result["data"]["path"]
        assert "\n" not in path, path
        assert "\u202e" not in path, path
        assert "/../" not in path
        assert item.result["data"]["text"] == f"text {index}"


# --- a secret the agent echoes in its error ---------------------------------------------------

SECRET = "sk-live-very-secret-value-0123456789"


def test_a_secret_setting_echoed_in_an_agents_error_is_never_recorded(db, tmp_path):
    """An agent granted ``secrets:apiKey`` raises with the key in its message: the job's
    error, the installation's last error, the events and the quarantine reason (all shown
    to every reader of the agent) carry ``[secret]`` instead."""
    import json

    from sqlalchemy import update

    from paulyops.core.db.models import AgentEvent, AgentInstallation, AgentPackage
    from paulyops.services.agents.execute import JobExecutor
    from paulyops.services.agents.runtime import ItemOutcome, RunOutcome

    org, inst = make_installation(db, "one")
    with db.write_session() as session:
        manifest = {
            "id": "acme.words",
            "entrypoint": "agent:handle",
            "version": "1.0.0",
            "settings": {
                "type": "object",
                "properties": {"apiKey": {"type": "string", "secret": True}, "n": {}},
            },
        }
        session.execute(update(AgentPackage).values(manifest=manifest))
        (job,) = jobs.enqueue(
            OrgScope(session, org),
            inst,
            [JobSpec(name="a.txt", media_type="text/plain", data=b"hi")],
            policy=POLICY,
        )

    def runner(request):
        assert request.settings["apiKey"] == SECRET
        assert SECRET in request.secret_values
        return RunOutcome(
            items=[
                ItemOutcome(i.job_id, ok=False, error=f"ValueError: key {SECRET} refused")
                for i in request.items
            ],
            mode="bubblewrap",
            error=f"exit 1: {SECRET!r}",
        )

    executor = JobExecutor(
        db,
        runner=runner,
        settings_provider=lambda scope, installation: {"apiKey": SECRET, "n": 1},
        data_dir=tmp_path / "data",
        policy=JobPolicy(max_attempts=1, retry_base_s=0, retry_max_s=0),
        quarantine_after=1,
    )
    claim = jobs.claim(db, owner="w", policy=POLICY)
    executor.run(claim)
    with db.session() as session:
        row = session.get(Job, job.id)
        installation = session.get(AgentInstallation, inst)
        details = session.scalars(select(AgentEvent.details)).all()
        recorded = json.dumps(
            [row.error, installation.last_error, installation.quarantined_reason, details]
        )
    assert "[secret]" in (row.error or "")
    assert installation.status == "quarantined"
    assert SECRET not in recorded


def test_a_secret_the_agent_logs_is_replaced_in_its_log_lines(
    bwrap_config, build_agent, sandbox_root, capsys
):
    """Stderr and ``logging`` lines become server log lines: the secret values the run was
    given (``RunRequest.secret_values``, set by the executor) come out as ``[secret]``."""
    import hashlib

    from paulyops.services.agents.runtime import RunItem, RunRequest
    from paulyops.services.agents.sandbox import run_batch

    package = build_agent(
        """
        import logging
        def handle(ctx, item):
            logging.getLogger("x").warning("the key is %s", ctx.settings["apiKey"])
            print("raw " + ctx.settings["apiKey"], file=sys.stderr, flush=True)
            return Result(data={})
        """
    )
    source = sandbox_root / "inputs" / hashlib.sha256(b"hi").hexdigest()
    source.parent.mkdir(exist_ok=True)
    source.write_bytes(b"hi")
    request = RunRequest(
        organization_id="org-a",
        installation_id="inst-a",
        agent_id="acme.probe",
        version="0.1.0",
        package_dir=package,
        entrypoint="agent:handle",
        items=[
            RunItem(
                job_id="job-1",
                attempt=1,
                source=source,
                name="in.txt",
                media_type="text/plain",
                size=2,
            )
        ],
        settings={"apiKey": SECRET},
        secret_values=(SECRET,),
    )
    # The event dicts themselves, whatever renderer and stream other tests configured.
    with structlog.testing.capture_logs() as events:
        outcome = run_batch(request, config=bwrap_config)
    assert outcome.items[0].ok, (outcome.error, outcome.items[0].error)
    lines = [str(e.get("message")) for e in events if e.get("event") == "agent_log"]
    assert any("[secret]" in line for line in lines), lines
    assert not any(SECRET in str(e) for e in events)
