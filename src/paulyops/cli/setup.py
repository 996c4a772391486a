"""``paulyops setup``: the terminal front door to onboarding.

Three ways in, one way through (DESIGN "One flow, four front doors"):

* the interactive wizard (a terminal, neither ``--quick`` nor ``--config``): the brief's
  eight steps, every question derived from the SetupSpec (labels, defaults, help texts,
  validation), with "← Back" on every step and a summary to confirm before anything is
  written;
* ``--quick``: every default, only the organization's name (and its owner);
* ``--config FILE``: a JSON or YAML SetupSpec, no prompts.

Each ends in :func:`~paulyops.services.onboarding.spec.parse_spec`, then
:func:`~paulyops.services.onboarding.provision.provision` and
:func:`~paulyops.services.onboarding.artifacts.write_artifacts`.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import typer
from rich.markup import escape
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from paulyops.cli.context import CommandGroup, console, err_console, open_instance, read_settings
from paulyops.core.errors import ConfigError, ConflictError, FieldError, SpecValidationError

if TYPE_CHECKING:
    from paulyops.core.settings import Settings
    from paulyops.services.onboarding.artifacts import ArtifactReport
    from paulyops.services.onboarding.form import FieldPlan, StepPlan
    from paulyops.services.onboarding.provision import ProvisionResult
    from paulyops.services.onboarding.spec import InstanceDefaults, SetupSpec, Step

app = typer.Typer(
    cls=CommandGroup,
    help="Set up an organization: interactive wizard, --quick or --config FILE.",
    invoke_without_command=True,
    no_args_is_help=False,
)

# The steps after the four answer steps (whose titles come from the form plan).
CLOSING_STEPS: Final = (
    "Configuration generation",
    "Database setup",
    "Service configuration",
    "Finalization",
)
QUICK_INDUSTRY: Final = "other"
EXIT_INTERRUPTED: Final = 130


def step_titles() -> tuple[str, ...]:
    """Return the titles of the eight steps: the four answer steps, then the closing ones."""
    from paulyops.services.onboarding.presentation import STEP_TEXTS

    return (*(text.title for text in STEP_TEXTS.values()), *CLOSING_STEPS)


def step_rule(number: int) -> None:
    """Print the progress line of step ``number`` (1-8)."""
    console.print()
    titles = step_titles()
    title = Text.from_markup(f"[bold]Step {number} of {len(titles)}[/] · {titles[number - 1]}")
    console.print(Rule(title))


def resolve_root(directory: Path | None) -> Path:
    """Return the instance root: ``--dir``, else ``PAULYOPS_HOME``, else the current directory."""
    if directory is None:
        directory = Path(os.environ.get("PAULYOPS_HOME") or ".")
    return directory.expanduser().resolve()


def _is_terminal() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


# --- the command ----------------------------------------------------------------------


@app.callback(invoke_without_command=True)
def setup(
    ctx: typer.Context,
    directory: Path | None = typer.Option(
        None, "--dir", help="Instance root (default: PAULYOPS_HOME or the current directory)."
    ),
    quick: bool = typer.Option(False, "--quick", help="Use every default; ask only the name."),
    org_name: str | None = typer.Option(None, "--org-name", help="The organization's name."),
    config: Path | None = typer.Option(
        None, "--config", help="Read every answer from a JSON or YAML SetupSpec file."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Show what would be created; write nothing."
    ),
    schema: bool = typer.Option(False, "--schema", help="Print the SetupSpec JSON Schema."),
    force: bool = typer.Option(
        False, "--force", help="Write into the root of a git checkout anyway."
    ),
    owner_email: str | None = typer.Option(None, "--owner-email", help="The owner's email."),
    owner_name: str | None = typer.Option(None, "--owner-name", help="The owner's full name."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Skip the wizard's final confirmation."),
) -> None:
    """Set up an organization and write the instance's configuration files."""
    if ctx.invoked_subcommand is not None:
        return
    from paulyops.services.onboarding.artifacts import check_root
    from paulyops.services.onboarding.spec import parse_spec, spec_json_schema
    from paulyops.services.onboarding.templates import settings_defaults

    if schema:
        typer.echo(json.dumps(spec_json_schema(), indent=2))
        return
    if quick and config is not None:
        raise typer.BadParameter("choose either --quick or --config, not both")
    root = resolve_root(directory)
    check_root(root, force=force)
    base = read_settings(root, generate_secrets=False)
    defaults = settings_defaults(base)
    owner = _owner_flags(owner_email, owner_name)
    env_values: dict[str, str] = {}
    interactive = False
    if config is not None:
        raw = load_config(config)
        spec = parse_spec(_with_flags(raw, org_name, owner), instance_defaults=defaults)
    elif quick:
        spec = _quick_spec(org_name, owner, defaults)
    else:
        if not _is_terminal():
            raise ConfigError(
                "the setup wizard needs a terminal; use --quick --org-name NAME "
                "--owner-email EMAIL --owner-name NAME, or --config FILE"
            )
        outcome = run_wizard(root, base, defaults, org_name=org_name, owner=owner, yes=yes)
        if outcome is None:
            console.print("Setup cancelled; nothing was written.")
            raise typer.Exit(EXIT_INTERRUPTED)
        spec, env_values = outcome.spec, outcome.env_values
        interactive = True
    if dry_run:
        print_plan(root, spec)
        return
    if spec.owner is None:
        raise SpecValidationError(
            "the organization needs an owner: pass --owner-email and --owner-name "
            '(or add "owner": {"email": ..., "name": ...} to the config file)',
            [FieldError("owner", "expected the owner's email and name")],
        )
    apply_setup(root, spec, force=force, env_values=env_values, wizard=interactive)


def _owner_flags(email: str | None, name: str | None) -> dict[str, str] | None:
    if email is None and name is None:
        return None
    if email is None or name is None:
        missing = "--owner-email" if email is None else "--owner-name"
        raise SpecValidationError(
            f"{missing} is missing: give the owner's email and name together",
            [FieldError("owner", f"expected {missing} too")],
        )
    return {"email": email, "name": name}


def _with_flags(
    raw: Mapping[str, object], org_name: str | None, owner: Mapping[str, str] | None
) -> dict[str, object]:
    out = dict(raw)
    if org_name is not None:
        org = out.get("organization")
        out["organization"] = {**(org if isinstance(org, Mapping) else {}), "name": org_name}
    if owner is not None:
        out["owner"] = dict(owner)
    return out


def load_config(path: Path) -> Mapping[str, object]:
    """Read a SetupSpec file: JSON (``.json``) or YAML (``.yaml``/``.yml``, no aliases).

    The file gets the API's caps: at most ``MAX_BODY_BYTES``, nested at most
    ``MAX_JSON_DEPTH`` deep, integers of a sane length; YAML aliases are refused (an
    alias bomb expands a few lines into billions of nodes).

    Raises:
        ConfigError: the file is missing, unreadable, too large, nested too deep, or not
            valid JSON/YAML.
        SpecValidationError: an integer too long (naming its field), or not one object.
    """
    from paulyops.core.security.jsonlimits import (
        MAX_BODY_BYTES,
        MAX_JSON_DEPTH,
        parse_json_document,
    )
    from paulyops.services.onboarding.templates import load_untrusted_yaml

    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_BODY_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror or err}") from None
    if len(raw) > MAX_BODY_BYTES:
        raise ConfigError(
            f"config file {path} is larger than {MAX_BODY_BYTES} bytes, the limit the API "
            "sets for a setup request"
        )
    if path.suffix.lower() in {".yaml", ".yml"}:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"cannot read config file {path}: not UTF-8 text") from None
        data = load_untrusted_yaml(text, source=str(path), max_depth=MAX_JSON_DEPTH)
    else:
        data = parse_json_document(raw, source=str(path), max_depth=MAX_JSON_DEPTH)
    if not isinstance(data, Mapping):
        raise SpecValidationError(
            f"{path} must hold one object with organization, storage, security and agents",
            [FieldError("", "expected an object")],
        )
    return data


def _quick_spec(
    org_name: str | None, owner: dict[str, str] | None, defaults: InstanceDefaults
) -> SetupSpec:
    from paulyops.services.onboarding.spec import parse_spec

    terminal = _is_terminal()
    if org_name is None:
        if not terminal:
            raise ConfigError("--quick without a terminal needs --org-name NAME")
        org_name = _ask_text("organization.name", defaults)
    if owner is None and terminal:
        owner = {
            "email": _ask_text("owner.email", defaults),
            "name": _ask_text("owner.name", defaults),
        }
    raw: dict[str, object] = {"organization": {"name": org_name, "industry": QUICK_INDUSTRY}}
    if owner is not None:
        raw["owner"] = owner
    return parse_spec(raw, instance_defaults=defaults)


def _ask_text(path: str, defaults: InstanceDefaults) -> str:
    """Ask one text question titled and validated by the spec's field at ``path``."""
    import questionary

    from paulyops.services.onboarding.form import plan_step
    from paulyops.services.onboarding.spec import step_of, validate_partial

    section, key = step_of(path), path.partition(".")[2]
    message = plan_step(section, {}).field(path).title

    def check(text: str) -> bool | str:
        draft: dict[str, object] = {section: {key: text}}
        found = validate_partial(draft, section, instance_defaults=defaults)
        errors = [e for e in found if e.field == path]
        return True if not errors else error_text(errors[0])

    answer = questionary.text(f"{message}:", validate=check).ask()
    if answer is None:
        raise typer.Exit(EXIT_INTERRUPTED)
    return str(answer).strip()


def error_text(error: FieldError) -> str:
    """Return a field error as one line, with the suggestion when there is one."""
    message = error.message
    suggestion = error.suggestion
    # A number (a preset's minimum) is already named in the message; a word is a typo fix.
    if suggestion and "did you mean" not in message and not suggestion.replace(".", "").isdigit():
        message += f" (did you mean {suggestion!r}?)"
    return message


# --- plan and apply ----------------------------------------------------------------------


def print_plan(root: Path, spec: SetupSpec) -> None:
    """Print what setup would create (``--dry-run``)."""
    from paulyops.services.onboarding.artifacts import planned_files
    from paulyops.services.onboarding.provision import describe

    plan = describe(spec)
    console.print(f"[bold]Dry run[/]: nothing is written. Instance root: {escape(str(root))}")
    table = Table(show_header=False, box=None, padding=(0, 2))
    org = plan["organization"]
    table.add_row("Organization", f"{escape(org['name'])} (slug {org['slug']})")
    table.add_row("Roles", ", ".join(plan["roles"]))
    for item in plan["storage"]:
        missing = f" — still needs {', '.join(item['missing'])}" if item["missing"] else ""
        table.add_row("Storage", f"{item['name']} ({item['provider']}){missing}")
    security = plan["security"]
    table.add_row(
        "Security",
        f"{security['rbac_model']} roles, audit "
        f"{'on' if security['audit_logging'] else 'reduced'}, "
        f"{security['audit_retention_days']} days, {security['encryption_level']} encryption",
    )
    table.add_row("Agents", ", ".join(plan["agents"]) or "none")
    table.add_row("Spec hash", plan["specHash"])
    console.print(table)
    console.print("\n[bold]Files[/]:")
    for name, status in planned_files(root):
        console.print(f"  {'would create' if status == 'created' else 'would update'}  {name}")


def apply_setup(
    root: Path,
    spec: SetupSpec,
    *,
    force: bool = False,
    env_values: Mapping[str, str] | None = None,
    wizard: bool = False,
) -> tuple[ProvisionResult, ArtifactReport]:
    """Generate secrets, migrate, provision and write the artifacts (steps 5-8)."""
    from paulyops.core.settings import ENV_FILE_NAME
    from paulyops.services.actor import CLI
    from paulyops.services.onboarding.artifacts import write_artifacts
    from paulyops.services.onboarding.provision import ProvisionContext, provision

    if wizard:
        console.print()
        console.print("Writing the configuration…")
    else:
        step_rule(5)
    settings = read_settings(root)
    if env_values:
        settings = _with_services(settings, env_values)
    console.print(f"  ✓ Secrets and settings in {escape(str(root / ENV_FILE_NAME))}")

    step_rule(6)
    with open_instance(settings) as instance:
        console.print(f"  ✓ Database schema up to date ({_database_label(settings)})")
        result = provision(instance.db, spec, ProvisionContext.for_settings(settings, actor=CLI))
    verb = "created" if result.created else "already set up; nothing changed"
    if not result.created and result.owner_password_link:
        verb += " (its owner never set a password: a new one-time link follows)"
    console.print(
        f"  ✓ Organization {escape(spec.organization.name)} {verb} ({result.organization_id})"
    )

    step_rule(7)
    report = write_artifacts(
        root, spec, result, settings=settings, force=force, env_values=env_values
    )
    for item in report.files:
        console.print(f"  {_mark(item.status)} {item.path} [dim]({item.status})[/]")
    console.print(
        "  ✓ Key-value store: "
        + ("Redis (REDIS_URL)" if settings.redis_url else "in-process (one server process)")
    )
    console.print("  ✓ Agent jobs: worker threads in the server process")

    step_rule(8)
    _finish(root, spec, result, report, wizard=wizard)
    return result, report


def _with_services(settings: Settings, values: Mapping[str, str]) -> Settings:
    update: dict[str, Any] = {}
    if values.get("DATABASE_URL"):
        update["database_url"] = values["DATABASE_URL"]
    if values.get("REDIS_URL"):
        update["redis_url"] = values["REDIS_URL"]
    return settings.model_copy(update=update)


def _database_label(settings: Settings) -> str:
    if settings.database_url:
        return "PostgreSQL from DATABASE_URL"
    return f"embedded SQLite at {escape(str(settings.data_dir / 'paulyops.db'))}"


def _mark(status: str) -> str:
    return {"created": "[green]+[/]", "updated": "[yellow]~[/]"}.get(status, "[dim]=[/]")


def _finish(
    root: Path,
    spec: SetupSpec,
    result: ProvisionResult,
    report: ArtifactReport,
    *,
    wizard: bool,
) -> None:
    console.print(f"[bold green]✓ {escape(result.message)}[/]")
    console.print(f"  Organization: {escape(spec.organization.name)} ({result.organization_id})")
    console.print("\n[bold]Next steps[/]")
    for number, step in enumerate(result.next_steps, 1):
        console.print(f"  {number}. {escape(step)}")
    console.print(f"  Start the server: {escape(str(root / 'start-paulyops.sh'))}")
    if result.owner_password_link:
        console.print(
            f"\n[bold]{escape(spec.owner.name if spec.owner else 'Owner')}[/]: set your "
            "password with this one-time link (valid 7 days):"
        )
        typer.echo(f"  {result.owner_password_link}")
    console.print(
        "\n[bold yellow]Keep a copy of .env.local somewhere safe:[/] losing ENCRYPTION_KEY "
        "loses every stored secret."
    )
    if report.generated_secrets and wizard:
        console.print(f"[dim]Generated: {', '.join(report.generated_secrets)}[/]")


# --- setup token -------------------------------------------------------------------------


@app.command("token")
def token(
    directory: Path | None = typer.Option(
        None, "--dir", help="Instance root (default: PAULYOPS_HOME or the current directory)."
    ),
) -> None:
    """Issue a new setup token (the old one stops working) while no organization exists."""
    from paulyops.services.actor import CLI
    from paulyops.services.auth import tokens
    from paulyops.services.onboarding.firstrun import ensure_setup_token, has_organization

    settings = read_settings(resolve_root(directory))
    with open_instance(settings) as instance:
        if has_organization(instance.db):
            raise ConflictError(
                "this instance is already set up (an organization exists): sign in "
                "instead, or create organizations as a platform admin"
            )
        secret = ensure_setup_token(instance.db, settings.data_dir, actor=CLI, force=True)
    if secret is None:  # pragma: no cover - an organization appeared meanwhile
        raise ConflictError("this instance was set up meanwhile; no token issued")
    err_console.print(
        f"New setup token (valid 24 hours; also in "
        f"{escape(str(settings.data_dir / tokens.SETUP_TOKEN_FILE))}). "
        f"Enter it at {settings.effective_public_url}:"
    )
    typer.echo(secret)


# --- service detection (used by the wizard) -----------------------------------------------


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    """Return whether something accepts TCP connections at ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def check_postgres(url: str) -> str | None:
    """Try ``url``; return None when it answers, else the reason (no password shown)."""
    import psycopg

    conninfo = url.replace("postgresql+psycopg://", "postgresql://", 1)
    try:
        with psycopg.connect(conninfo, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as err:
        text = str(err).strip()
        if "FATAL:" in text:
            text = text.rpartition("FATAL:")[2]
        return " ".join(text.split()) or type(err).__name__
    return None


def check_redis(url: str) -> str | None:
    """Try ``url``; return None when Redis answers PING, else the reason."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, ValueError) as err:
        return str(err) or type(err).__name__
    return None


def weak_secret_names(settings: Settings) -> list[str]:
    """Return the secrets setup will generate (missing or weak ones)."""
    from paulyops.core.settings import weak_secrets

    return weak_secrets(settings)


# --- the interactive wizard -----------------------------------------------------------------

BACK_VALUE: Final = "__back__"
BACK_LABEL: Final = "← Back"
SQLITE: Final = "sqlite"
POSTGRES_LOCAL: Final = "postgresql://postgres@127.0.0.1:5432/paulyops"
REDIS_LOCAL: Final = "redis://127.0.0.1:6379/0"
LOCALHOST: Final = "127.0.0.1"


class _Back(Exception):  # noqa: N818  # control flow, not an error
    """The admin asked to return to the previous step."""


class _Cancelled(Exception):  # noqa: N818  # control flow, not an error
    """The admin pressed Ctrl-C or chose Cancel."""


@dataclass
class WizardOutcome:
    """The confirmed spec and the services the admin chose (``.env.local`` values)."""

    spec: SetupSpec
    env_values: dict[str, str] = field(default_factory=dict)


def run_wizard(
    root: Path,
    settings: Settings,
    defaults: InstanceDefaults,
    *,
    org_name: str | None = None,
    owner: Mapping[str, str] | None = None,
    yes: bool = False,
    prompts: Any = None,
) -> WizardOutcome | None:
    """Ask the setup questions; return the confirmed answers, or None when cancelled.

    Args:
        prompts: the prompt layer (default: questionary).
    """
    wizard = Wizard(root, settings, defaults, org_name=org_name, owner=owner, prompts=prompts)
    try:
        return wizard.run(confirm=not yes)
    except _Cancelled:
        return None


class Wizard:
    """Steps 1-5 of the setup flow: questions derived from the SetupSpec, with Back."""

    def __init__(
        self,
        root: Path,
        settings: Settings,
        defaults: InstanceDefaults,
        *,
        org_name: str | None = None,
        owner: Mapping[str, str] | None = None,
        prompts: Any = None,
    ) -> None:
        # The prompt layer: questionary, or a stand-in with its interface (tests script it).
        self.prompts = prompts if prompts is not None else _questionary()
        self.root = root
        self.settings = settings
        self.defaults = defaults
        self.draft: dict[str, dict[str, Any]] = {
            "organization": {},
            "storage": {},
            "security": {},
            "agents": {},
        }
        if org_name:
            self.draft["organization"]["name"] = org_name
        self.owner: dict[str, Any] = dict(owner or {})
        self.env_values: dict[str, str] = {}
        self.services_asked = False
        self.steps: list[Callable[[], None]] = [
            self._organization,
            self._storage,
            self._security,
            self._agents,
            self._services,
        ]

    # --- flow ---------------------------------------------------------------------------
    def run(self, *, confirm: bool = True) -> WizardOutcome:
        """Walk the steps (Back returns one step, keeping answers), then confirm."""
        from paulyops.services.onboarding.spec import parse_spec

        console.print(
            "[bold]PaulyOps setup[/] — answer a few questions; nothing is written until you "
            "confirm the summary.\n[dim]Arrow keys and Enter to choose; type [bold]back[/] "
            "(or pick ← Back) to return to the previous step; Ctrl-C to cancel.[/]"
        )
        index = 0
        while True:
            while index < len(self.steps):
                step_rule(index + 1)
                try:
                    self.steps[index]()
                    index += 1
                except _Back:
                    index = max(0, index - 1)
            try:
                spec = parse_spec(self.wire(), instance_defaults=self.defaults)
            except SpecValidationError as err:
                console.print("[bold red]Some answers need another look:[/]")
                for item in err.errors:
                    console.print(f"  • {escape(item.field)}: {escape(error_text(item))}")
                index = _step_of(err.errors[0].field if err.errors else "organization")
                continue
            if not confirm:
                return WizardOutcome(spec, dict(self.env_values))
            self._summary(spec)
            answer = self._ask(
                self.prompts.select(
                    "Create the organization and write these files?",
                    choices=[
                        self.prompts.Choice("Yes, set it up", value="create"),
                        self.prompts.Choice(BACK_LABEL, value=BACK_VALUE),
                        self.prompts.Choice("Cancel (nothing is written)", value="cancel"),
                    ],
                )
            )
            if answer == "create":
                return WizardOutcome(spec, dict(self.env_values))
            if answer == BACK_VALUE:
                index = len(self.steps) - (1 if self.services_asked else 2)
                continue
            raise _Cancelled

    def wire(self) -> dict[str, object]:
        """Return the answers so far in wire form."""
        out: dict[str, object] = {
            name: {key: value for key, value in section.items() if value is not None}
            for name, section in self.draft.items()
        }
        if self.owner:
            out["owner"] = dict(self.owner)
        return out

    # --- steps --------------------------------------------------------------------------
    def _plan(self, step: Step) -> StepPlan:
        from paulyops.services.onboarding.form import plan_step

        return plan_step(step, self.wire(), instance_defaults=self.defaults)

    def _answer_step(self, step: Step, *, back: bool = True) -> None:
        """Ask every answer of ``step`` from its form plan, re-planned after each answer.

        An answer can change the plan of the next (the industry picks the template that
        suggests the compliance level), so each question reads a fresh plan.
        """
        answers = self.owner if step == "owner" else self.draft[step]
        plan = self._plan(step)
        if step == "security":
            self._print_preset(plan)
        for path in [item.path for item in plan.fields]:
            item = self._plan(step).field(path)
            value = self._ask_field(item, back=back)
            if value is None and item.optional:
                answers.pop(item.key, None)
            else:
                answers[item.key] = value

    def _ask_field(self, item: FieldPlan, *, back: bool) -> Any:
        section = item.path.partition(".")[0]
        own: Mapping[str, Any] = self.owner if section == "owner" else self.draft[section]
        if item.kind == "providers":
            return self._providers(item)
        if item.kind == "multi":
            return self._checkbox(item, checked=list(item.value or []))
        if item.kind == "bool":
            if item.locked and item.rules:
                level = f" (required by the {self._level()} preset)"
                shown = "on" if item.value else "off"
                console.print(f"  {escape(item.title)}: [bold]{shown}[/]{escape(level)}")
                return item.value
            return self._confirm(item.question, bool(item.value))
        if item.kind in {"radio", "select"}:
            note = f" ({item.note})" if item.note else ""
            return self._select(item, default=item.value, back=back, note=note)
        convert: Callable[[str], Any] = str
        if item.kind == "number":
            convert = int if item.is_integer else float
        return self._text(
            item.path,
            title=item.title,
            help_=item.description,
            default=own.get(item.key) if item.optional else item.value,
            convert=convert,
            optional=item.optional,
            back=back,
        )

    def _level(self) -> str:
        plan = self._plan("security")
        return plan.preset.level if plan.preset else ""

    def _organization(self) -> None:
        self._answer_step("organization", back=False)
        self._answer_step("owner", back=False)

    def _storage(self) -> None:
        self._answer_step("storage")

    def _providers(self, item: FieldPlan) -> list[dict[str, Any]]:
        storage = self.draft["storage"]
        current = [_provider_type(entry) for entry in item.value or []]
        picked = self._checkbox(item, checked=current, required=True)
        previous = {
            _provider_type(entry): entry
            for entry in storage.get("providers") or []
            if isinstance(entry, Mapping)
        }
        providers: list[dict[str, Any]] = [
            dict(previous.get(kind, {"type": kind})) for kind in picked
        ]
        storage["providers"] = providers
        cloud = [index for index, entry in enumerate(providers) if entry["type"] != "local"]
        if cloud and self._confirm(
            "Enter connection settings now? (credentials can also be added later)", False
        ):
            for index in cloud:
                self._provider_settings(index)
        return providers

    def _provider_settings(self, index: int) -> None:
        from paulyops.services.onboarding.form import provider_plans

        provider = self.draft["storage"]["providers"][index]
        plan = next(p for p in provider_plans() if p.type == provider["type"])
        console.print(f"[bold]{escape(plan.description or plan.type)}[/]")
        for setting in plan.settings:
            value = self._text(
                f"storage.providers.{index}.{setting.key}",
                title=setting.title,
                help_=setting.description,
                default=None if setting.secret else provider.get(setting.key),
                optional=True,
                secret=setting.secret,
            )
            if value is None:
                provider.pop(setting.key, None)
            else:
                provider[setting.key] = value

    def _print_preset(self, plan: StepPlan) -> None:
        preset, template = plan.preset, plan.template
        if preset is not None:
            table = Table(
                title=f"The {preset.level} preset ({', '.join(preset.frameworks)}) enforces",
                title_justify="left",
                show_header=True,
                header_style="bold",
            )
            table.add_column("Setting")
            table.add_column("Must be")
            table.add_column("Why")
            titles = {item.path: item.title for item in plan.fields}
            for rule in preset.enforced:
                expects = rule.expectation()
                if isinstance(rule.value, bool):
                    expects = "on" if rule.value else "off"
                title = titles.get(rule.field, rule.field.rpartition(".")[2])
                table.add_row(title, expects, rule.reason)
            console.print(table)
        if template is not None:
            from paulyops.services.onboarding.templates import DEFAULT_COMPLIANCE_LEVEL

            level = preset.level if preset is not None else DEFAULT_COMPLIANCE_LEVEL
            console.print(
                f"[dim]Defaults below come from the {template.industry} template and the "
                f"{level} preset.[/]"
            )

    def _security(self) -> None:
        self._answer_step("security")

    def _agents(self) -> None:
        self._answer_step("agents")

    def _services(self) -> None:
        from paulyops.core.settings import ENV_FILE_NAME

        self.services_asked = False
        console.print("Looking for services on this machine…")
        self._database()
        self._redis()
        weak = weak_secret_names(self.settings)
        if weak:
            console.print(f"  Secrets: {', '.join(weak)} will be generated into {ENV_FILE_NAME}")
        else:
            console.print(f"  Secrets: already in {ENV_FILE_NAME}; kept as they are")

    def _database(self) -> None:
        if self.settings.database_url:
            reason = check_postgres(self.settings.database_url)
            state = "reachable" if reason is None else f"[red]not reachable[/]: {escape(reason)}"
            console.print(f"  Database: PostgreSQL from DATABASE_URL — {state}")
            return
        if not port_open(LOCALHOST, 5432):
            console.print(
                "  Database: no PostgreSQL at 127.0.0.1:5432 — using the embedded SQLite "
                "database in the data folder"
            )
            self.env_values.pop("DATABASE_URL", None)
            return
        self.services_asked = True
        choice = self._ask(
            self.prompts.select(
                "Database: PostgreSQL answers at 127.0.0.1:5432. Which should PaulyOps use?",
                choices=[
                    self.prompts.Choice(
                        "Embedded SQLite in the data folder (one machine, zero setup)",
                        value=SQLITE,
                    ),
                    self.prompts.Choice("PostgreSQL at 127.0.0.1:5432", value="postgres"),
                    self.prompts.Choice(BACK_LABEL, value=BACK_VALUE),
                ],
                default="postgres" if "DATABASE_URL" in self.env_values else SQLITE,
            )
        )
        if choice == BACK_VALUE:
            raise _Back
        if choice == SQLITE:
            self.env_values.pop("DATABASE_URL", None)
            return

        def reachable(text: str) -> bool | str:
            if text.strip().lower() == "back":
                return True
            if not text.startswith(("postgresql://", "postgres://")):
                return "expected a postgresql:// URL"
            reason = check_postgres(text.strip())
            return True if reason is None else f"cannot connect: {reason}"

        url = self._ask(
            self.prompts.text(
                "PostgreSQL URL (the database must exist):",
                default=self.env_values.get("DATABASE_URL", POSTGRES_LOCAL),
                validate=reachable,
                instruction="(type back to go back)",
            )
        )
        if str(url).strip().lower() == "back":
            raise _Back
        self.env_values["DATABASE_URL"] = str(url).strip()

    def _redis(self) -> None:
        if self.settings.redis_url:
            reason = check_redis(self.settings.redis_url)
            state = "reachable" if reason is None else f"[red]not reachable[/]: {escape(reason)}"
            console.print(f"  Redis: REDIS_URL — {state}")
            return
        if not port_open(LOCALHOST, 6379) or check_redis(REDIS_LOCAL) is not None:
            console.print(
                "  Redis: none at 127.0.0.1:6379 — sessions, rate limits and CSRF tokens "
                "stay in-process (fine for one server process)"
            )
            self.env_values.pop("REDIS_URL", None)
            return
        self.services_asked = True
        choice = self._ask(
            self.prompts.select(
                "Redis answers at 127.0.0.1:6379. Use it for sessions, rate limits and CSRF?",
                choices=[
                    self.prompts.Choice(
                        "No, keep them in-process (one server process)", value="memory"
                    ),
                    self.prompts.Choice(f"Yes, use {REDIS_LOCAL}", value="redis"),
                    self.prompts.Choice(BACK_LABEL, value=BACK_VALUE),
                ],
                default="redis" if "REDIS_URL" in self.env_values else "memory",
            )
        )
        if choice == BACK_VALUE:
            raise _Back
        if choice == "redis":
            self.env_values["REDIS_URL"] = REDIS_LOCAL
        else:
            self.env_values.pop("REDIS_URL", None)

    def _summary(self, spec: SetupSpec) -> None:
        from paulyops.services.onboarding.artifacts import planned_files

        console.print()
        console.print(Rule("[bold]Summary[/] — please check before anything is written"))
        table = Table(show_header=False, box=None, padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        org = spec.organization
        rows = [
            ("Organization", f"{org.name}  (slug {spec.slug})"),
            ("Industry", org.industry.value),
            ("Compliance", f"{org.compliance_level.value} — {', '.join(spec.preset.frameworks)}"),
            ("Size", org.size.value),
            ("Time zone", org.timezone or "UTC"),
            ("Owner", f"{spec.owner.name} <{spec.owner.email}>" if spec.owner else "—"),
            ("Storage", "; ".join(_provider_summary(p) for p in spec.storage.providers)),
            (
                "Backups",
                f"{spec.storage.backup_strategy.value}; documents kept "
                f"{spec.storage.retention_days} days",
            ),
            ("Roles", spec.security.rbac_model.value),
            (
                "Audit log",
                f"{'on' if spec.security.audit_logging else 'reduced detail'}; kept "
                f"{spec.security.data_retention} days",
            ),
            ("Encryption", spec.security.encryption_level.value),
            ("Admin 2FA", "required" if spec.security.require_admin_2fa else "optional"),
            ("Agents", ", ".join(spec.agents.default_agents) or "none"),
            (
                "Routing",
                f"{'automatic' if spec.agents.auto_routing else 'manual'}; "
                f"confidence ≥ {spec.agents.confidence_threshold}",
            ),
            ("Monitoring", "on" if spec.agents.monitoring_enabled else "off"),
            (
                "Database",
                "PostgreSQL"
                if self.env_values.get("DATABASE_URL") or self.settings.database_url
                else "embedded SQLite",
            ),
            (
                "Redis",
                "yes"
                if self.env_values.get("REDIS_URL") or self.settings.redis_url
                else "no (in-process)",
            ),
        ]
        for name, value in rows:
            table.add_row(name, escape(value))
        console.print(table)
        files = ", ".join(
            f"{name}{'' if status == 'created' else ' (update)'}"
            for name, status in planned_files(self.root)
        )
        console.print(f"[dim]Files in {escape(str(self.root))}: {escape(files)}[/]")

    # --- questions ------------------------------------------------------------------------
    def _ask(self, question: Any) -> Any:
        answer = question.ask()
        if answer is None:
            raise _Cancelled
        return answer

    def _check(self, path: str, value: object) -> bool | str:
        """Validate ``value`` at ``path`` with the spec's rules for that step."""
        from paulyops.services.onboarding.spec import step_of, validate_partial

        wire = json.loads(json.dumps(self.wire(), default=str))
        _set_path(wire, path, value)
        step = step_of(path)
        errors = [
            error
            for error in validate_partial(wire, step, instance_defaults=self.defaults)
            if error.field == path or error.field.startswith(path + ".")
        ]
        return True if not errors else error_text(errors[0])

    def _text(
        self,
        path: str,
        *,
        default: object = None,
        convert: Callable[[str], Any] = str,
        optional: bool = False,
        back: bool = True,
        secret: bool = False,
        title: str,
        help_: str = "",
    ) -> Any:
        q = self.prompts

        def parse(text: str) -> Any:
            try:
                return convert(text)
            except ValueError:
                return text  # the spec's own message names what was expected

        def check(text: str) -> bool | str:
            text = text.strip()
            if back and text.lower() == "back":
                return True
            if optional and not text:
                return True
            return self._check(path, parse(text))

        self._help(help_)
        hints = [
            h for h in ("blank to skip" if optional else "", "back to go back" if back else "") if h
        ]
        prompt = q.password if secret else q.text
        answer = str(
            self._ask(
                prompt(
                    f"{title}:",
                    default="" if default is None else _text_value(default),
                    validate=check,
                    instruction=f"({'; '.join(hints)})" if hints else None,
                )
            )
        ).strip()
        if back and answer.lower() == "back":
            raise _Back
        if optional and not answer:
            return None
        return parse(answer)

    def _select(
        self, item: FieldPlan, *, default: object, back: bool = True, note: str = ""
    ) -> str:
        q = self.prompts
        self._help(item.description)
        items = [
            q.Choice(
                choice.label,
                value=choice.value,
                description=choice.description,
                disabled="not allowed by the preset" if choice.disabled else None,
            )
            for choice in item.choices
        ]
        if back:
            items.append(q.Choice(BACK_LABEL, value=BACK_VALUE))
        answer = self._ask(
            q.select(
                f"{item.title}{note}:",
                choices=items,
                default=default if default in item.enabled_values else None,
            )
        )
        if answer == BACK_VALUE:
            raise _Back
        return str(answer)

    def _checkbox(
        self, item: FieldPlan, *, checked: list[str], required: bool = False
    ) -> list[str]:
        from paulyops.services.onboarding.presentation import HINTS

        q = self.prompts
        hint = HINTS.get(item.path, item.description)
        self._help(f"{hint} ({item.note.capitalize()}.)" if item.note else hint)
        items = [
            q.Choice(
                choice.label,
                value=choice.value,
                checked=choice.value in checked,
                description=choice.description,
                disabled="not allowed by the preset" if choice.disabled else None,
            )
            for choice in item.choices
        ]
        items.append(q.Choice(BACK_LABEL, value=BACK_VALUE))

        def check(picked: list[str]) -> bool | str:
            if BACK_VALUE in picked or not required or picked:
                return True
            return "choose at least one (space to tick)"

        answer = self._ask(
            q.checkbox(
                f"{item.title}:",
                choices=items,
                validate=check,
                instruction="(space to tick, Enter when done)",
            )
        )
        if BACK_VALUE in answer:
            raise _Back
        return [str(value) for value in answer]

    def _confirm(self, message: str, default: bool) -> bool:
        return bool(self._ask(self.prompts.confirm(message, default=default)))

    def _help(self, text: str) -> None:
        if text:
            console.print(f"[dim]{escape(text)}[/]")


def _questionary() -> Any:
    import questionary

    return questionary


def _provider_summary(provider: Any) -> str:
    missing = provider.missing_settings()
    state = f"needs {', '.join(missing)} later" if missing else "ready"
    return f"{provider.name} ({provider.type}, {state})"


def _provider_type(item: object) -> str:
    if isinstance(item, Mapping):
        return str(item.get("type"))
    return str(item)


def _text_value(value: object) -> str:
    return value if isinstance(value, str) else str(value)


def _set_path(wire: dict[str, Any], path: str, value: object) -> None:
    parts: list[str | int] = [int(part) if part.isdigit() else part for part in path.split(".")]
    node: Any = wire
    for part in parts[:-1]:
        node = node.setdefault(part, {}) if isinstance(part, str) else node[part]
    node[parts[-1]] = value


def _step_of(path: str) -> int:
    from paulyops.services.onboarding.form import ANSWER_STEPS

    section = path.partition(".")[0]
    names = [str(step) for step in ANSWER_STEPS]
    return names.index(section) if section in names else 0


__all__ = [
    "CLOSING_STEPS",
    "app",
    "apply_setup",
    "check_postgres",
    "check_redis",
    "error_text",
    "load_config",
    "port_open",
    "print_plan",
    "resolve_root",
    "run_wizard",
    "step_rule",
    "step_titles",
]
