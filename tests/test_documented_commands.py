"""Every ``paulyops`` command that README.md and docs/ show works exactly as written.

Commands are taken from fenced code blocks and from inline code spans. Each one is

* checked against the CLI itself: its command path exists and every ``--option`` it names
  belongs to that command (in process, through Click's command tree);
* run exactly as written, by ``bash`` in a temporary instance root, when it is a complete
  command: not a synopsis (``[--opt]``, ``a / b``, ``REV``, ``<id>``, ``...``), not an
  inline mention that leaves out a required option or argument (the full form sits in a
  table or block next to it), and not one of the few :data:`EXCEPTIONS`.

The instance root is shared, in document order (README.md first), so the README's own
``setup --quick`` creates the organization ``acme`` the later examples refer to. Files
the examples read (``acme.yaml``, ``setup.json``, ...) are copies of the ``configs/setup.json``
that setup wrote. ``paulyops serve`` is started on a free port (``PORT`` in the instance's
``.env.local``, the command untouched) until ``/api/livez`` answers.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer.main

from paulyops.cli.main import app

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]

# Commands that are shown but cannot run here as written, each with its reason. Keep it
# short: prefer fixing the docs.
EXCEPTIONS: dict[str, str] = {
    ".venv/bin/paulyops setup": "interactive wizard: tests/cli/test_setup_wizard_pty.py drives it",
    "paulyops setup": "interactive wizard: tests/cli/test_setup_wizard_pty.py drives it",
    "paulyops setup --dir ./instance": "interactive wizard: tests/cli/test_setup_wizard_pty.py",
    "REDIS_URL=redis://127.0.0.1:6379/0 paulyops serve --workers 4": (
        "needs the shared Redis and four server processes; serve is run on its own below"
    ),
    "paulyops health --url http://127.0.0.1:8000": (
        "asks a server on the fixed port 8000; tests only bind free ports"
    ),
    '.venv/bin/paulyops db revision -m "add storage configs index" --rev-id 0003': (
        "a developer's command: it writes a migration file into the source tree"
    ),
    "paulyops package checksums src/paulyops/bundled": (
        "a developer's command: it writes CHECKSUMS into the source tree "
        "(tests/bundled/test_bundled_loader.py runs it on a copy)"
    ),
    "paulyops package checksums src/paulyops/bundled --check": (
        "a developer's command on the source tree (tests/bundled/test_bundled_loader.py)"
    ),
    "paulyops setup --config /old/instance/configs/setup.json --dir /new/instance": (
        "placeholder paths of a move between two machines"
    ),
    '/abs/path/paulyops serve "$@"': "a line of the generated start script, not a command",
    "paulyops worker": (
        "needs CELERY_BROKER_URL and runs until stopped; tests/workers/test_celery.py runs it"
    ),
    # The agents group comes from cli/agents.py (the lifecycle work); cli/jobs.register adds
    # run and logs to it. Remove these two once it is merged (tests/cli/test_jobs_cli.py).
    "paulyops agents run ID --input FILE [--wait]": "synopsis of a command of the agents group",
    "paulyops agents logs ID [--limit N]": "synopsis of a command of the agents group",
    "paulyops logs --follow": "follows the log until Ctrl+C; tests/core/test_logfiles.py",
    "paulyops reset": (
        "asks, then wipes the shared instance the later examples use; "
        "tests/services/operations/test_lifecycle.py runs it"
    ),
    **{
        f"paulyops docker {action}": (
            "needs Docker Engine with the Compose plugin, which the build machines do not run; "
            "tests/services/deploy/test_containers.py checks the command lines"
        )
        for action in ("up", "down", "restart server", "logs server", "logs --follow server")
    },
}
# Commands that need an instance without any organization (run in a fresh root).
FRESH_ROOT = {
    "paulyops setup token": "issues a setup token only while no organization exists",
}
# Input files the examples read, all the spec the README's quick setup wrote.
SPEC_FILES = ("acme.yaml", "acme.json", "setup.json", "file.json")

COMMAND = re.compile(r"(?:(?<=[\s(])|^)(?:[\w.$/-]*/)?paulyops(?= +[a-z-])")
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)
SPAN = re.compile(r"`([^`\n]+(?:\n[^`\n]+)?)`")
PLACEHOLDER = re.compile(r"^(?:[A-Z][A-Z0-9_]*|<[^>]+>|\.\.\.|…)$")
SERVE_DEADLINE = 90.0
RUN_TIMEOUT = 180.0


@dataclass
class Shown:
    """One command as the docs show it, and everywhere it is shown."""

    text: str
    inline: bool
    where: list[str] = field(default_factory=list)


def _command_in(line: str) -> str | None:
    """Return the ``paulyops`` command in one shell line, without its comment."""
    match = COMMAND.search(line)
    if match is None:
        return None
    segment_start = line.rfind("&&", 0, match.start())
    start = 0 if segment_start < 0 else segment_start + 2
    # Environment assignments right before the command belong to it.
    before = line[start : match.start()].split()
    if before and not all(re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", word) for word in before):
        start = match.start()
    text = line[start:]
    text = re.split(r"\s+#\s", text, maxsplit=1)[0]
    return " ".join(text.replace("\\|", "|").split())


def shown_commands() -> list[Shown]:
    """Return every distinct command of README.md and docs/, in document order."""
    found: dict[str, Shown] = {}

    def add(text: str | None, inline: bool, where: str) -> None:
        if text is None:
            return
        entry = found.setdefault(text, Shown(text, inline))
        entry.inline = entry.inline and inline
        entry.where.append(where)

    for path in DOCS:
        source = path.read_text(encoding="utf-8")
        name = path.relative_to(REPO).as_posix()
        for block in FENCE.finditer(source):
            line_no = source.count("\n", 0, block.start()) + 1
            for offset, line in enumerate(block.group(1).splitlines(), start=1):
                add(_command_in(line), False, f"{name}:{line_no + offset}")
        prose = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), source)
        for span in SPAN.finditer(prose):
            line_no = prose.count("\n", 0, span.start()) + 1
            add(_command_in(" ".join(span.group(1).split())), True, f"{name}:{line_no}")
    return list(found.values())


def _words(text: str) -> list[str]:
    """Return the words after ``paulyops`` (shell-split, env assignments dropped)."""
    words = shlex.split(text.replace("|", " | "))
    index = next(i for i, word in enumerate(words) if word.endswith("paulyops"))
    return words[index + 1 :]


def is_synopsis(text: str) -> bool:
    """Whether ``text`` is a usage line with optional parts, alternatives or placeholders."""
    if any(mark in text for mark in ("[", " / ", " | ")):
        return True
    return any(PLACEHOLDER.match(word) or "..." in word for word in _words(text))


def _alternatives(text: str) -> list[list[str]]:
    """Expand ``paulyops g a / b X / c`` into the word lists of each alternative."""
    words = [w for w in _words(text) if w not in {"[", "]", "|"}]
    words = [w.strip("[]") for w in words if w.strip("[]")]
    runs: list[list[str]] = [[]]
    for word in words:
        if word == "/":
            runs.append([])
        else:
            runs[-1].append(word)
    first = runs[0]
    prefix = [w for w in first if not w.startswith("-")][:-1] if len(runs) > 1 else []
    return [first, *([*prefix[: len(prefix)], *run] for run in runs[1:])]


@dataclass
class Walk:
    """Where one alternative of a shown command leads in the CLI."""

    command: Any
    path: list[str]
    options: list[str]
    positionals: list[str]
    problems: list[str]


def _walk(words: list[str]) -> Walk:
    """Follow ``words`` through the CLI's command tree (Typer's vendored Click)."""
    command: Any = typer.main.get_command(app)
    walk = Walk(command, ["paulyops"], [], [], [])
    takes_value = False
    for word in words:
        if word.startswith(">"):
            break  # a shell redirection
        if takes_value:
            takes_value = False
            continue
        if word.startswith("-"):
            name = word.split("=", 1)[0]
            walk.options.append(name)
            param = next((p for p in walk.command.params if name in p.opts), None)
            takes_value = param is not None and not param.is_flag and "=" not in word
            continue
        subcommands = getattr(walk.command, "commands", None)
        if subcommands and not walk.positionals and not PLACEHOLDER.match(word):
            sub = subcommands.get(word)
            if sub is None:
                walk.problems.append(f"{' '.join(walk.path)} has no command {word!r}")
                return walk
            walk.command, walk.path = sub, [*walk.path, word]
        else:
            walk.positionals.append(word)
    return walk


def _needs_subcommand(walk: Walk) -> bool:
    """Whether the walk ends on a group that does nothing alone (``--version`` does)."""
    if not getattr(walk.command, "commands", None) or walk.command.invoke_without_command:
        return False
    named = set(walk.options)
    return not any(p.is_eager and named & set(p.opts) for p in walk.command.params)


def check_against_cli(text: str) -> list[str]:
    """Return what in ``text`` the CLI does not have (unknown commands or options)."""
    problems: list[str] = []
    for words in _alternatives(text):
        walk = _walk(words)
        if walk.problems:
            problems += walk.problems
            continue
        known = {opt for param in walk.command.params for opt in param.opts} | {"--help"}
        problems += [
            f"{' '.join(walk.path)} has no option {o}" for o in walk.options if o not in known
        ]
        if _needs_subcommand(walk):
            problems.append(f"{' '.join(walk.path)} needs a subcommand")
    return problems


def misses_required(text: str) -> bool:
    """Whether the command leaves out a required option or argument (a mere mention)."""
    walk = _walk(_words(text))
    if _needs_subcommand(walk):
        return True
    arguments = [p for p in walk.command.params if p.param_type_name == "argument"]
    if sum(1 for p in arguments if p.required) > len(walk.positionals):
        return True
    options = set(walk.options)
    return any(
        p.required and not options & set(p.opts)
        for p in walk.command.params
        if p.param_type_name == "option"
    )


SHOWN = shown_commands()


def test_the_docs_show_commands() -> None:
    """The extraction finds the README's quick setup and the commands of every guide."""
    texts = {shown.text for shown in SHOWN}
    assert any(t.startswith("paulyops setup --quick --org-name") for t in texts)
    assert "paulyops audit verify" in texts
    assert len(SHOWN) > 30
    stale = set(EXCEPTIONS) - texts
    assert not stale, f"exceptions no longer shown anywhere: {stale}"


def test_the_checker_finds_unknown_commands_and_options() -> None:
    """A renamed command or option in the docs is caught, also inside a synopsis."""
    assert check_against_cli("paulyops audit verify --org acme") == []
    assert check_against_cli("paulyops audit verfy") == ["paulyops audit has no command 'verfy'"]
    assert check_against_cli("paulyops health [--url URL] [--jsn]") == [
        "paulyops health has no option --jsn"
    ]
    assert check_against_cli("paulyops db upgrade / downgrade REV / curent") == [
        "paulyops db has no command 'curent'"
    ]
    assert check_against_cli("paulyops keys") == ["paulyops keys needs a subcommand"]


@pytest.mark.parametrize("shown", SHOWN, ids=[s.text[:60] for s in SHOWN])
def test_shown_command_exists_in_the_cli(shown: Shown) -> None:
    """Each shown command names commands and options the CLI has."""
    if shown.text in EXCEPTIONS:
        pytest.skip(EXCEPTIONS[shown.text])
    assert check_against_cli(shown.text) == [], shown.where


# --- running them ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env() -> dict[str, str]:
    """A newcomer's environment: no instance settings, the venv's bin first on PATH."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PAULYOPS_") and key not in {"DATABASE_URL", "REDIS_URL", "PORT"}
    }
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "200"
    return env


def _new_root(base: Path, name: str) -> Path:
    """An empty instance root with ``.venv`` pointing at this interpreter's environment."""
    root = base / name
    root.mkdir()
    (root / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    return root


def _run(text: str, root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # commands from our own docs, run in a throwaway root
        ["bash", "-c", text],
        cwd=root,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _serve(text: str, root: Path) -> str | None:
    """Start ``paulyops serve`` as written on a free port; return a problem or None."""
    port = _free_port()
    env_file = root / ".env.local"
    with env_file.open("a", encoding="utf-8") as out:
        out.write(f"\nPORT={port}\n")
    log = root / "serve.log"
    with log.open("w", encoding="utf-8") as sink:
        process = subprocess.Popen(  # our own command from the docs, on a free port
            ["bash", "-c", f"exec {text}"],
            cwd=root,
            env=_env(),
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + SERVE_DEADLINE
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return f"exited {process.returncode}:\n{log.read_text()[-2000:]}"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/livez", timeout=2).status_code == 200:
                    return None
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        return f"/api/livez did not answer within {SERVE_DEADLINE:.0f} s"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def roots(tmp_path: Path) -> Iterator[Path]:
    """A base folder for instance roots, removed afterwards."""
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


def _runnable() -> list[Shown]:
    return [
        shown
        for shown in SHOWN
        if shown.text not in EXCEPTIONS
        and not is_synopsis(shown.text)
        and not (shown.inline and misses_required(shown.text))
    ]


def test_runnable_commands_are_the_ones_expected() -> None:
    """The classification runs the examples and leaves only synopses and mentions out."""
    runnable = {shown.text for shown in _runnable()}
    assert "paulyops health --json" in runnable
    assert "paulyops setup --schema > setupspec.schema.json" in runnable
    assert "paulyops user create" not in runnable  # a mention: --email and --name are required
    assert not any(is_synopsis(text) for text in runnable)


@pytest.mark.slow
@pytest.mark.timeout(900)  # about 30 CLI starts, each a few seconds on a loaded machine
def test_every_shown_command_runs_as_written(roots: Path) -> None:
    """Each complete command of README.md and docs/ exits 0 in a new instance."""
    shared = _new_root(roots, "shared")
    spec_written = False
    failures: list[str] = []
    for shown in _runnable():
        root = (
            _new_root(roots, f"fresh-{len(failures)}-{id(shown)}")
            if (shown.text in FRESH_ROOT)
            else shared
        )
        if spec_written is False and (shared / "configs" / "setup.json").is_file():
            for name in SPEC_FILES:
                shutil.copy(shared / "configs" / "setup.json", shared / name)
            spec_written = True
        if _words(shown.text)[:1] == ["serve"]:
            problem = _serve(shown.text, root)
            if problem:
                failures.append(f"{shown.text}  ({', '.join(shown.where)}): {problem}")
            continue
        result = _run(shown.text, root)
        if result.returncode != 0:
            failures.append(
                f"{shown.text}  ({', '.join(shown.where)}): exit {result.returncode}\n"
                f"{(result.stdout + result.stderr)[-1500:]}"
            )
    assert not failures, "\n\n".join(failures)
