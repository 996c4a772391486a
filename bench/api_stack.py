"""The cost of a request: PaulyOps routes against a bare FastAPI app, in one run.

Starts two servers under the same uvicorn settings (``uvicorn.run(app, log_config=None,
timeout_graceful_shutdown=30)``, one process each): a bare FastAPI app answering
``/api/livez`` with the same JSON, and ``paulyops serve`` on a fresh SQLite instance with
one organization, its owner signed in (a session cookie) and an API token. A small
asyncio load generator (HTTP/1.1 keep-alive, ``--connections`` connections, ``--seconds``
per measurement) then measures, round after round, the bare app and each target:

* ``livez``    ``GET /api/livez``                 vs. the bare app       aim >= 0.8
* ``me-token`` ``GET /api/auth/me`` (bearer)      vs. the bare app       aim >= 0.5
* ``me-cookie````GET /api/auth/me`` (session)     vs. the bare app       aim >= 0.5
* ``console``  ``GET /console`` (session)         vs. the bare app       aim >= 0.1
* ``healthz``  ``GET /api/healthz``               vs. PaulyOps livez     aim >= 0.5

Each ratio is the median over rounds of target / baseline measured back to back in the
same round (a paired median: a busy moment on this shared machine hits both sides). Every
answer's status is counted; a 5xx (0 expected) is reported per target. Measures only; no
asserts.

    .venv/bin/python bench/api_stack.py [--seconds 3] [--rounds 3] [--connections 16]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
# Counted in place of a status when the server closed the connection mid-answer.
CLOSED = 0
UVICORN_SETTINGS = {"log_config": None, "timeout_graceful_shutdown": 30}


# --- the servers -----------------------------------------------------------------------------


def run_bare_server(port: int) -> None:
    """Serve the bare FastAPI app (one async route, the same JSON as PaulyOps' livez)."""
    import uvicorn
    from fastapi import FastAPI

    from paulyops import __version__

    app = FastAPI()

    @app.get("/api/livez")
    async def livez() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    uvicorn.run(app, host="127.0.0.1", port=port, **UVICORN_SETTINGS)  # type: ignore[arg-type]


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def instance_env(root: Path) -> dict[str, str]:
    """Return the environment of the benchmarked instance (fresh secrets, SQLite)."""
    from paulyops.core.settings import new_encryption_key, new_secret

    env = {
        k: v for k, v in os.environ.items() if not k.startswith("PAULYOPS_") and k != "DATABASE_URL"
    }
    env.pop("REDIS_URL", None)
    env.update(
        PAULYOPS_HOME=str(root),
        PAULYOPS_ENV="development",
        PAULYOPS_LOG_FORMAT="json",
        PAULYOPS_LOG_LEVEL="INFO",
        # The general limit would answer 429 long before the load ends; counting still runs.
        PAULYOPS_RATE_LIMITS="api=100000000/minute",
        JWT_SECRET=new_secret(),
        SESSION_SECRET=new_secret(),
        ENCRYPTION_KEY=new_encryption_key(),
        PAULYOPS_INSTANCE_KEY=new_encryption_key(),
        PYTHONUNBUFFERED="1",
    )
    return env


@dataclass
class Credentials:
    """What the load generator presents."""

    cookie: str
    token: str


def prepare_instance(root: Path, env: dict[str, str]) -> Credentials:
    """Migrate the instance and create an organization, its owner, a session and a token."""
    from paulyops.core.db.models import Membership, Organization, SecurityConfig
    from paulyops.core.db.scoped import OrgScope
    from paulyops.core.instance import Instance
    from paulyops.core.settings import load_settings
    from paulyops.services.auth import accounts, rbac, sessions, tokens

    settings = load_settings(root=root, environ=env)
    instance = Instance(settings)
    instance.start(background=False)
    try:
        with instance.db.write_session() as session:
            org = Organization(
                slug="bench",
                name="Bench",
                industry="other",
                compliance_level="basic",
                size="1-10",
                rbac_model="simple",
                spec_hash="0" * 64,
            )
            session.add(org)
            session.flush()
            scope = OrgScope(session, org.id)
            scope.add(
                SecurityConfig(
                    audit_logging=True,
                    audit_retention_days=365,
                    encryption_level="standard",
                )
            )
            roles = rbac.seed_roles(scope, "simple")
            user = accounts.create_user(
                session,
                instance.hashing,
                email="owner@bench.example.com",
                name="Owner",
                password="correct-horse-battery-staple-42",
            )
            scope.add(Membership(user_id=user.id, role_id=roles["Owner"].id))
            session.flush()
            grant = rbac.grant_for(session, org.id, user.id)
            assert grant is not None
            web = sessions.create_session(session, user_id=user.id, organization_id=org.id)
            issued = tokens.create_api_token(
                scope,
                user_id=user.id,
                name="bench",
                permissions=["org:read"],
                holder_permissions=grant.permissions,
            )
            return Credentials(cookie=web.token, token=issued.secret)
    finally:
        instance.close()


@contextlib.contextmanager
def server(command: list[str], env: dict[str, str], port: int, log: Path) -> Iterator[str]:
    """Run a server until the block ends; yield its base URL once livez answers."""
    with log.open("wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url + "/api/livez", timeout=1).status_code == 200:
                        break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start; see {log}")
                time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_ready(port: int) -> None:
    """Wait until the instance finished starting (healthz answers 200)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/api/healthz", timeout=5).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError("the instance did not become ready")


def settle(port: int) -> None:
    """Wait (up to 60 s) until livez answers fast again: no backlog from the last target."""
    deadline = time.monotonic() + 60
    fast = 0
    while fast < 3 and time.monotonic() < deadline:
        start = time.perf_counter()
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/api/livez", timeout=10)
        fast = fast + 1 if time.perf_counter() - start < 0.02 else 0
        time.sleep(0.1)


# --- the load generator -------------------------------------------------------------------


@dataclass
class Result:
    """Answers of one measurement."""

    requests: int = 0
    seconds: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        """Answers per second."""
        return self.requests / self.seconds if self.seconds else 0.0


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        lowered = name.strip().lower()
        if lowered == b"content-length":
            length = int(value.strip())
        elif lowered == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status


async def _connection(
    port: int, request: bytes, stop_at: float, result: Result, measuring: asyncio.Event
) -> None:
    # A server may close a keep-alive connection (after an error, say): count it, reconnect.
    while time.perf_counter() < stop_at:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < stop_at:
                writer.write(request)
                status = await _read_response(reader)
                if measuring.is_set():
                    result.requests += 1
                    result.statuses[status] += 1
        except (ConnectionError, asyncio.IncompleteReadError):
            if measuring.is_set():
                result.statuses[CLOSED] += 1
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def _load(
    port: int, path: str, headers: dict[str, str], connections: int, seconds: float
) -> Result:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    warmup = 0.5
    result = Result()
    measuring = asyncio.Event()
    start = time.perf_counter()
    stop_at = start + warmup + seconds
    tasks = [
        asyncio.create_task(_connection(port, request, stop_at, result, measuring))
        for _ in range(connections)
    ]
    await asyncio.sleep(warmup)
    measuring.set()
    began = time.perf_counter()
    await asyncio.gather(*tasks)
    result.seconds = time.perf_counter() - began
    return result


def load(port: int, path: str, headers: dict[str, str], connections: int, seconds: float) -> Result:
    """Send GET ``path`` over ``connections`` keep-alive connections for ``seconds``."""
    return asyncio.run(_load(port, path, headers, connections, seconds))


# --- the run ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One measured route and what it is compared with."""

    name: str
    path: str
    credential: str  # "", "token" or "cookie"
    baseline: str  # "bare" or "livez"
    aim: float


TARGETS = (
    Target("livez", "/api/livez", "", "bare", 0.8),
    Target("me-token", "/api/auth/me", "token", "bare", 0.5),
    Target("me-cookie", "/api/auth/me", "cookie", "bare", 0.5),
    Target("healthz", "/api/healthz", "", "livez", 0.5),
    # Last: requests it leaves waiting for the pool would slow the next target down.
    Target("console", "/console", "cookie", "bare", 0.1),
)


def main() -> None:
    """Start both servers, measure every target per round, print the paired medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median ratio counts")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections")
    parser.add_argument("--only", nargs="*", help="measure only these targets (and livez)")
    parser.add_argument("--bare-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server:
        run_bare_server(args.bare_server)
        return
    targets = [t for t in TARGETS if not args.only or t.name in {"livez", *args.only}]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "instance"
        root.mkdir()
        env = instance_env(root)
        creds = prepare_instance(root, env)
        bare_port, app_port = free_port(), free_port()
        bare_cmd = [sys.executable, __file__, "--bare-server", str(bare_port)]
        app_cmd = [sys.executable, "-m", "paulyops.cli.main", "serve", "--port", str(app_port)]
        credentials = {
            "": {},
            "token": {"Authorization": f"Bearer {creds.token}"},
            "cookie": {"Cookie": f"paulyops_session={creds.cookie}"},
        }
        with (
            server(bare_cmd, env, bare_port, Path(tmp) / "bare.log"),
            server(app_cmd, env, app_port, Path(tmp) / "paulyops.log"),
        ):
            wait_ready(app_port)
            for target in targets:  # warm up: lazy imports, statement caches, the pool
                load(app_port, target.path, credentials[target.credential], args.connections, 1)
            ratios: dict[str, list[float]] = {t.name: [] for t in targets}
            rates: dict[str, list[float]] = {"bare": [], **{t.name: [] for t in targets}}
            errors: Counter[str] = Counter()
            others: Counter[str] = Counter()
            for _round in range(args.rounds):
                settle(app_port)
                bare = load(bare_port, "/api/livez", {}, args.connections, args.seconds)
                rates["bare"].append(bare.rate)
                measured: dict[str, Result] = {"bare": bare}
                for target in targets:
                    res = load(
                        app_port,
                        target.path,
                        credentials[target.credential],
                        args.connections,
                        args.seconds,
                    )
                    measured[target.name] = res
                    rates[target.name].append(res.rate)
                    base = measured[target.baseline].rate
                    ratios[target.name].append(res.rate / base if base else 0.0)
                    for status, count in res.statuses.items():
                        if status >= 500 or status == CLOSED:
                            errors[target.name] += count
                        elif status >= 300:
                            others[f"{target.name} {status}"] += count
        print(
            f"{args.connections} connections, {args.rounds} rounds of {args.seconds:g} s; "
            f"bare FastAPI {statistics.median(rates['bare']):.0f} requests/s (median)"
        )
        for target in targets:
            ratio = statistics.median(ratios[target.name])
            spread = f"{min(ratios[target.name]):.2f}-{max(ratios[target.name]):.2f}"
            print(
                f"{target.name:<10} {statistics.median(rates[target.name]):7.0f} requests/s   "
                f"ratio {ratio:.2f} vs {target.baseline} ({spread}; aim >= {target.aim})   "
                f"5xx {errors[target.name]}"
            )
        if others:
            print("other non-2xx answers:", dict(others))


if __name__ == "__main__":
    main()
