#!/usr/bin/env python
"""Django's command-line utility for administrative tasks.

One addition: a command that fails because the database was never migrated (or misses newer
migrations) ends with one sentence saying so and what to run, instead of a traceback ending in
"no such table". Any other database error, and this one with ``--traceback``, is raised as is.
"""

import os
import sys


def unmigrated_message() -> str:
    """The sentence for a database that lacks migrations, or "" when it has them all (then the
    error was something else and is raised as it came)."""
    from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
    from django.db.migrations.executor import MigrationExecutor

    connection = connections[DEFAULT_DB_ALIAS]
    try:
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError:  # the database cannot even be read: not the case this explains
        return ""
    if not pending:
        return ""
    name = connection.settings_dict.get("NAME")
    where = f"the database {name}" if connection.vendor == "sqlite" else "the database"
    never = not connection.introspection.table_names()
    return (
        f"{where} {'was never migrated' if never else 'misses migrations'} "
        f"({len(pending)} to apply): run `make demo` (it migrates and loads the demo) or "
        "`.venv/bin/python manage.py migrate` first"
    )


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rentplatform.settings")
    from django.core.management import execute_from_command_line
    from django.db import DatabaseError

    try:
        execute_from_command_line(sys.argv)
    except DatabaseError:
        message = "" if "--traceback" in sys.argv else unmigrated_message()
        if not message:
            raise
        sys.stderr.write(f"CommandError: {message[0].upper()}{message[1:]}.\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
