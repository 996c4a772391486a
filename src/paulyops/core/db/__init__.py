"""The database layer: engine, models, scoped access, migrations.

Interfaces (web, cli) never import SQLAlchemy or the models; where they pass a session
through to a service they type it as :data:`Session`, re-exported here.
"""

from sqlalchemy.orm import Session

__all__ = ["Session"]
