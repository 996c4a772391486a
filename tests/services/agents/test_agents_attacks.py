"""Attacks on the job layer and ``agents run --input``: hostile names and files, other orgs."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import func, select

from paulyops.core.db.models import Job, JobInput
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import NotFoundError, SpecValidationError
from paulyops.services.actor import CLI
from paulyops.services.agents import jobs, runs
from paulyops.services.agents.jobs import JobPolicy, JobSpec
from tests.support.jobs import make_installation

POLICY = JobPolicy()


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
