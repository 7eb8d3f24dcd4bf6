"""The database: schema, migrations, connections and locks."""

from jobs.database.engine import Database

__all__ = ["Database"]
