"""``paulyops marketplace sources | catalog | publish``: TUF catalogs, both sides.

The instance side (``sources add|list|remove|repin``, ``catalog refresh``) keeps the
catalogs this instance reads packages from, in its database. The publisher side
(``catalog init|renew|rotate-root|yank|revoke``, ``publish``) writes a catalog folder that
any web server, bucket or USB stick can carry. :func:`register` adds these commands to
the ``marketplace`` group, beside the trust and search commands.
"""

from __future__ import annotations

import re
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from paulyops.cli.context import (
    CommandGroup,
    console,
    err_console,
    exit_code_of,
    open_instance,
    read_settings,
)
from paulyops.core.errors import ConfigError

sources_app = typer.Typer(
    cls=CommandGroup, help="Catalogs this instance reads packages from.", no_args_is_help=True
)
catalog_app = typer.Typer(
    cls=CommandGroup, help="Make, sign and refresh TUF catalogs.", no_args_is_help=True
)
KEYS_HELP = "the folder of the catalog's TUF role keys (default: <DIR>-keys beside it)"


def _default_name(location: str) -> str:
    tail = re.sub(r"^[a-z]+://", "", location.rstrip("/")).split("/")[-1] or "catalog"
    name = re.sub(r"[^a-z0-9-]+", "-", tail.lower()).strip("-")
    return name[:64] or "catalog"


@sources_app.command("add")
def sources_add(
    location: str = typer.Argument(..., metavar="URL|DIR", help="an http(s) URL or a folder"),
    root: Path | None = typer.Option(
        None, "--root", help="the catalog's root.json, obtained from its publisher out of band"
    ),
    fingerprint: str | None = typer.Option(
        None, "--fingerprint", help="the sha256 of the root, confirmed with the publisher"
    ),
    name: str | None = typer.Option(None, "--name", help="a short name (default: from URL|DIR)"),
) -> None:
    """Pin a catalog's root; without --root, show its fingerprint and require --fingerprint."""
    from paulyops.services.actor import CLI
    from paulyops.services.marketplace.catalogs import add_source

    data = None
    if root is not None:
        try:
            data = root.read_bytes()
        except OSError as err:
            raise ConfigError(f"--root {root}: cannot read it: {err.strerror}") from None
    settings = read_settings(generate_secrets=False)
    with open_instance(settings) as instance:
        view = add_source(
            instance.db,
            name or _default_name(location),
            location,
            CLI,
            root=data,
            fingerprint=fingerprint,
        )
    console.print(
        f"Catalog {escape(view.name)} ({escape(view.location)}) pinned to root "
        f"{view.root_sha256}; refresh it next (catalog refresh {view.name}).",
        highlight=False,
    )


@sources_app.command("list")
def sources_list() -> None:
    """List the catalogs, their trusted versions and last refresh."""
    from paulyops.services.marketplace.catalogs import list_sources

    settings = read_settings(generate_secrets=False)
    with open_instance(settings) as instance, instance.db.session() as session:
        views = list_sources(session)
    if not views:
        console.print("No catalog sources. Add one with `paulyops marketplace sources add`.")
        return
    table = Table(show_header=True, header_style="bold")
    for column in ("name", "location", "root", "versions", "refreshed"):
        table.add_column(column)
    for view in views:
        versions = " ".join(
            f"{role}={n}" + (" (expired, accepted)" if role in view.accepted_expired else "")
            for role, n in sorted(view.versions.items())
        )
        refreshed = (
            view.last_refreshed_at.isoformat(timespec="seconds")
            if view.last_refreshed_at
            else "never"
        )
        table.add_row(
            escape(view.name), escape(view.location), view.root_sha256[:16], versions, refreshed
        )
    console.print(table)


@sources_app.command("remove")
def sources_remove(name: str = typer.Argument(..., help="the source's name")) -> None:
    """Forget a catalog source and its metadata."""
    from paulyops.services.actor import CLI
    from paulyops.services.marketplace.catalogs import remove_source

    settings = read_settings(generate_secrets=False)
    with open_instance(settings) as instance:
        remove_source(instance.db, name, CLI)
    console.print(f"Catalog {escape(name)} removed.", highlight=False)


@sources_app.command("repin")
def sources_repin(
    name: str = typer.Argument(..., help="the source's name"),
    root: Path = typer.Option(..., "--root", help="the new root.json, obtained out of band"),
    accept_expired: bool = typer.Option(
        False,
        "--accept-expired",
        help="read the catalog now and accept exactly the expired metadata it serves (audited)",
    ),
) -> None:
    """Trust a new root and forget the versions seen so far (audited)."""
    from paulyops.services.actor import CLI
    from paulyops.services.marketplace.catalogs import repin_source

    try:
        data = root.read_bytes()
    except OSError as err:
        raise ConfigError(f"--root {root}: cannot read it: {err.strerror}") from None
    settings = read_settings(generate_secrets=False)
    with open_instance(settings) as instance:
        view = repin_source(instance.db, name, data, CLI, accept_expired=accept_expired)
    if not accept_expired:
        console.print(
            f"Catalog {escape(name)} repinned to root {view.root_sha256}; the next refresh "
            "accepts its current metadata.",
            highlight=False,
        )
        return
    console.print(
        f"Catalog {escape(name)} repinned to root {view.root_sha256} and refreshed: "
        + " ".join(f"{role}={n}" for role, n in sorted(view.versions.items()))
        + ".",
        highlight=False,
    )
    if view.accepted_expired:
        err_console.print(
            "[bold yellow]accepted expired metadata:[/] "
            + ", ".join(f"{role} v{n}" for role, n in sorted(view.accepted_expired.items()))
            + " (audited; newer expired metadata is refused again until the publisher "
            "re-signs it or you repin again).",
            highlight=False,
        )
    else:
        console.print("Nothing it serves is expired; nothing was accepted.", highlight=False)


@catalog_app.command("refresh")
def catalog_refresh(
    name: str | None = typer.Argument(None, help="one source (default: every source)"),
) -> None:
    """Fetch and verify the newest metadata of the catalogs."""
    from paulyops.services.actor import CLI
    from paulyops.services.marketplace.catalogs import (
        CatalogError,
        list_sources,
        refresh_catalog,
    )

    settings = read_settings(generate_secrets=False)
    failed = 0
    with open_instance(settings) as instance:
        if name is None:
            with instance.db.session() as session:
                names = [view.name for view in list_sources(session)]
        else:
            names = [name]
        for each in names:
            try:
                result = refresh_catalog(instance.db, each, CLI)
            except CatalogError as err:
                failed += 1
                err_console.print(f"[bold red]refused:[/] {escape(err.message)}", highlight=False)
                continue
            state = "updated" if result.changed else "unchanged"
            console.print(
                f"Catalog {escape(each)}: {state}, {len(result.listing.entries)} package "
                f"version(s), timestamp v{result.versions.get('timestamp')}.",
                highlight=False,
            )
            if result.accepted_expired:
                err_console.print(
                    "  [yellow]in use although expired (accepted by a repin):[/] "
                    + ", ".join(
                        f"{role} v{n}" for role, n in sorted(result.accepted_expired.items())
                    ),
                    highlight=False,
                )
            for reason in result.listing.rejected.values():
                err_console.print(f"  [yellow]rejected:[/] {escape(reason)}", highlight=False)
    if not names:
        console.print("No catalog sources. Add one with `paulyops marketplace sources add`.")
    if failed:
        raise typer.Exit(exit_code_of(CatalogError("", "", "")))


@catalog_app.command("init")
def catalog_init(
    directory: Path = typer.Argument(..., metavar="DIR", help="the folder to host"),
    keys: Path | None = typer.Option(None, "--keys", help=KEYS_HELP),
    root_keys: int = typer.Option(1, "--root-keys", min=1, max=16, help="how many root keys"),
    root_threshold: int = typer.Option(
        1, "--root-threshold", min=1, help="how many root keys must sign a new root"
    ),
) -> None:
    """Create an empty catalog and new keys for its TUF roles (not the authors' keys)."""
    from paulyops.services.marketplace.publish import init_catalog

    info = init_catalog(directory, keys, root_keys=root_keys, root_threshold=root_threshold)
    console.print(
        f"Catalog created in {escape(str(info.directory))}; its role keys are in "
        f"{escape(str(info.keys_dir))} (keep them private, never host them).\n"
        f"Give instances {escape(str(info.root_path))} (fingerprint {info.fingerprint}) "
        "out of band.",
        highlight=False,
    )


@catalog_app.command("renew")
def catalog_renew(
    directory: Path = typer.Argument(..., metavar="DIR", help="the catalog folder"),
    keys: Path | None = typer.Option(None, "--keys", help=KEYS_HELP),
) -> None:
    """Re-sign the catalog's metadata with fresh expiries (run it within every 7 days)."""
    from paulyops.services.marketplace.publish import renew

    version = renew(directory, keys)
    console.print(f"Catalog re-signed: timestamp v{version}.", highlight=False)


@catalog_app.command("rotate-root")
def catalog_rotate_root(
    directory: Path = typer.Argument(..., metavar="DIR", help="the catalog folder"),
    keys: Path | None = typer.Option(None, "--keys", help=KEYS_HELP),
    root_keys: int = typer.Option(1, "--root-keys", min=1, max=16, help="how many new root keys"),
    root_threshold: int = typer.Option(1, "--root-threshold", min=1, help="new root threshold"),
) -> None:
    """Replace the root keys; instances follow the signed chain of roots."""
    from paulyops.services.marketplace.publish import rotate_root

    info = rotate_root(directory, keys, new_keys=root_keys, threshold=root_threshold)
    console.print(
        f"New root {escape(str(info.root_path))} (fingerprint {info.fingerprint}).",
        highlight=False,
    )


@catalog_app.command("yank")
def catalog_yank(
    directory: Path = typer.Argument(..., metavar="DIR", help="the catalog folder"),
    agent_id: str = typer.Argument(..., metavar="ID", help="the agent id"),
    version: str = typer.Argument(..., metavar="VERSION", help="the version to yank"),
    reason: str = typer.Option("", "--reason", help="why, shown to instances"),
    keys: Path | None = typer.Option(None, "--keys", help=KEYS_HELP),
) -> None:
    """Mark a published version yanked: listed, but never newly installed."""
    from paulyops.services.marketplace.publish import yank_version

    yank_version(directory, agent_id, version, keys, reason=reason)
    console.print(f"Yanked {escape(agent_id)} {escape(version)}.", highlight=False)


@catalog_app.command("revoke")
def catalog_revoke(
    directory: Path = typer.Argument(..., metavar="DIR", help="the catalog folder"),
    key_id: str | None = typer.Option(None, "--key-id", help="an author key id to revoke"),
    version: str | None = typer.Option(
        None, "--version", metavar="ID==VERSION", help="one package version to revoke"
    ),
    keys: Path | None = typer.Option(None, "--keys", help=KEYS_HELP),
) -> None:
    """Revoke an author key or one package version, in the catalog's signed metadata."""
    from paulyops.services.marketplace.publish import revoke

    package = None
    if version is not None:
        agent_id, sep, number = version.partition("==")
        if not sep or not agent_id or not number:
            raise ConfigError(f"--version: expected ID==VERSION, got {version!r}")
        package = (agent_id, number)
    revoke(directory, keys, key_id=key_id, package=package)
    console.print("Revocation signed into the catalog.", highlight=False)


def publish(
    package: Path = typer.Argument(..., metavar="PKG", help="the signed .pauly file"),
    to: Path = typer.Option(..., "--to", metavar="DIR", help="the catalog folder"),
    keys: Path | None = typer.Option(None, "--keys", help=KEYS_HELP),
    trust: list[str] = typer.Option(
        [],
        "--trust",
        metavar="[PUBLISHER=]PUBKEY",
        help="check the package signature against this author key (repeatable)",
    ),
) -> None:
    """Add a signed package to a catalog under its publisher's delegation."""
    from paulyops.cli.package import _trusted
    from paulyops.services.marketplace.publish import publish_package

    if not package.is_file():
        raise ConfigError(f"{package}: no such file")
    done = publish_package(package, to, keys, trusted=_trusted(trust))
    if done.already_present:
        console.print(f"{escape(done.target)} is in the catalog already.", highlight=False)
        return
    extra = f" (new delegation {done.publisher}.*)" if done.created_delegation else ""
    console.print(
        f"Published {escape(done.agent_id)} {escape(done.version)} to {escape(str(to))}"
        f"{extra}: {done.length} bytes, sha256 {done.sha256}.",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add ``sources``, ``catalog`` and ``publish`` to the ``marketplace`` group ``app``."""
    app.add_typer(sources_app, name="sources")
    app.add_typer(catalog_app, name="catalog")
    app.command("publish")(publish)


__all__ = ["catalog_app", "publish", "register", "sources_app"]
