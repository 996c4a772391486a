"""``paulyops db``: schema migrations."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from paulyops.cli.context import CommandGroup, console, read_settings

if TYPE_CHECKING:
    from paulyops.core.db.engine import Database

app = typer.Typer(cls=CommandGroup, help="Database schema migrations.", no_args_is_help=True)


def _database() -> Database:
    from paulyops.core.db.engine import Database

    settings = read_settings(generate_secrets=False)
    db = Database(settings.effective_database_url)
    db.connect(attempts=3)
    return db


@app.command()
def upgrade(revision: str = typer.Argument("head", help="target revision")) -> None:
    """Migrate the database up to REVISION (default: the newest)."""
    from paulyops.core.db import migrate
    from paulyops.core.db.engine import mask_url

    db = _database()
    try:
        migrate.upgrade(db, revision)
        console.print(f"Database {mask_url(db.url)} is at {migrate.current_revision(db)}.")
    finally:
        db.close()


@app.command()
def downgrade(revision: str = typer.Argument(..., help="target revision, e.g. -1 or base")) -> None:
    """Migrate the database down to REVISION."""
    from paulyops.core.db import migrate

    db = _database()
    try:
        migrate.downgrade(db, revision)
        console.print(f"Database is at {migrate.current_revision(db) or 'base (empty)'}.")
    finally:
        db.close()


@app.command()
def current() -> None:
    """Show the database's revision and whether it is up to date."""
    from paulyops.core.db import migrate
    from paulyops.core.db.engine import mask_url

    db = _database()
    try:
        rev = migrate.current_revision(db)
        head = migrate.head_revision(db)
        state = "up to date" if rev == head else f"behind (newest is {head})"
        console.print(f"{mask_url(db.url)}: {rev or 'empty'} — {state}")
    finally:
        db.close()


@app.command()
def revision(
    message: str = typer.Option(..., "-m", "--message", help="what the migration does"),
    rev_id: str | None = typer.Option(None, "--rev-id", help="revision id, e.g. 0002"),
) -> None:
    """Write a new migration from the model changes (for PaulyOps developers)."""
    from paulyops.core.db import migrate

    db = _database()
    try:
        migrate.upgrade(db)
        path = migrate.revision(db, message, rev_id=rev_id)
        console.print(f"Wrote {path}")
    finally:
        db.close()
