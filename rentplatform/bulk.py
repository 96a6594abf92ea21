"""Bulk inserts and updates without model instances, for the import's hot path
(docs/performance.md)."""

from __future__ import annotations

from django.db import connections, router

CHUNK = 500


# Field types whose Python values the database drivers take as they are.
_PLAIN_TYPES = {
    "AutoField",
    "BigAutoField",
    "BigIntegerField",
    "BooleanField",
    "CharField",
    "EmailField",
    "ForeignKey",
    "IntegerField",
    "OneToOneField",
    "PositiveIntegerField",
    "SlugField",
    "TextField",
}


def fast_insert(model, rows: list[dict], now, *, returning: bool = True) -> list[int]:
    """Insert rows (dicts of attnames) in multi-row INSERTs; return their new ids, in order.

    What bulk_create does, minus the model instances: every concrete column is written, those
    a row leaves out get the field's default (auto_now/auto_now_add fields get ``now``), and
    values are prepared by the field only where the type needs it (dates, decimals, JSON).
    Falls back to bulk_create where the database cannot return the ids of a multi-row insert.
    """
    if not rows:
        return []
    db = connections[router.db_for_write(model)]
    if returning and not db.features.can_return_rows_from_bulk_insert:
        objs = model.objects.bulk_create([model(**row) for row in rows])
        return [o.pk for o in objs]
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    given = rows[0].keys()
    columns, getters = [], []
    for f in fields:
        if f.attname in given:
            default = None
        elif getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
            default = now
        else:
            default = f.get_default()
        plain = f.get_internal_type() in _PLAIN_TYPES
        prepared_default = default if plain else f.get_db_prep_save(default, db)
        columns.append(db.ops.quote_name(f.column))
        getters.append((f.attname in given, f.attname, plain, f, prepared_default))
    values = []
    for row in rows:
        for present, attname, plain, f, prepared_default in getters:
            if not present:
                values.append(prepared_default)
            elif plain:
                values.append(row[attname])
            else:
                values.append(f.get_db_prep_save(row[attname], db))
    if db.vendor == "postgresql":
        return _copy_insert(db, model, columns, values, len(rows), returning=returning)
    width = len(columns)
    # SQLite declares its limit (PostgreSQL takes COPY: binding 10,000 placeholders a statement
    # in psycopg, client side, cost more than the writes).
    limit = db.features.max_query_params or 65535
    per_batch = max(1, min(CHUNK, limit // width))
    table = db.ops.quote_name(model._meta.db_table)
    pk = db.ops.quote_name(model._meta.pk.column)
    ids: list[int] = []
    with db.cursor() as cursor:
        for start in range(0, len(rows), per_batch):
            n = min(per_batch, len(rows) - start)
            placeholders = ", ".join(["(" + ", ".join(["%s"] * width) + ")"] * n)
            sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES {placeholders}"
            params = values[start * width : (start + n) * width]
            if returning:
                cursor.execute(sql + f" RETURNING {pk}", params)
                ids.extend(r[0] for r in cursor.fetchall())
            else:
                cursor.execute(sql, params)
    return ids


def _copy_insert(db, model, columns, values, count, *, returning) -> list[int]:
    """PostgreSQL: the rows through ``COPY ... FROM STDIN`` (psycopg's ``cursor.copy``).

    COPY returns no ids, so when they are wanted they are taken from the table's sequence
    first (``nextval`` once per row, one query) and written with the rows: the ids are the
    rows' own, in order, as a RETURNING would give them.
    """
    table = db.ops.quote_name(model._meta.db_table)
    width = len(columns)
    ids: list[int] = []
    with db.cursor() as cursor:
        if returning:
            pk = model._meta.pk.column
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
                [table, pk, count],
            )
            ids = [r[0] for r in cursor.fetchall()]
            columns = [db.ops.quote_name(pk), *columns]
        sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
        with cursor.cursor.copy(sql) as copy:
            for i in range(count):
                row = values[i * width : (i + 1) * width]
                copy.write_row([ids[i], *row] if returning else row)
    return ids


def fast_update(model, rows: list[dict], fields: list[str]) -> int:
    """Update rows (dicts of ``pk`` and the attnames in ``fields``) in one statement a chunk:
    ``WITH v(pk, ...) AS (VALUES ...) UPDATE table SET col = v.col ... FROM v WHERE pk = v.pk``.

    What bulk_update does without its CASE WHEN per row and field (compiling those cost more
    than the writes). Values are prepared as fast_insert prepares them; on PostgreSQL each is
    cast to its column's type (a VALUES list of quoted literals and NULLs is text). SQLite
    takes UPDATE ... FROM since 3.33. Returns the number of rows written.
    """
    if not rows:
        return 0
    db = connections[router.db_for_write(model)]
    meta = model._meta
    targets = [meta.get_field(name) for name in fields]
    plain = [f.get_internal_type() in _PLAIN_TYPES for f in targets]
    cast = db.vendor == "postgresql"
    names = ["pk", *(f"c{i}" for i in range(len(targets)))]
    sets = ", ".join(
        f"{db.ops.quote_name(f.column)} = "
        + (f"CAST(v.c{i} AS {f.db_type(db)})" if cast else f"v.c{i}")
        for i, f in enumerate(targets)
    )
    values = []
    for row in rows:
        values.append(row["pk"])
        for f, is_plain in zip(targets, plain, strict=True):
            value = row[f.attname]
            values.append(value if is_plain else f.get_db_prep_save(value, db))
    width = len(names)
    limit = db.features.max_query_params or 65535
    per_batch = max(1, min(CHUNK, limit // width))
    table = db.ops.quote_name(meta.db_table)
    pk = db.ops.quote_name(meta.pk.column)
    written = 0
    with db.cursor() as cursor:
        for start in range(0, len(rows), per_batch):
            n = min(per_batch, len(rows) - start)
            placeholders = ", ".join(["(" + ", ".join(["%s"] * width) + ")"] * n)
            cursor.execute(
                f"WITH v ({', '.join(names)}) AS (VALUES {placeholders}) "
                f"UPDATE {table} SET {sets} FROM v WHERE {table}.{pk} = v.pk",
                values[start * width : (start + n) * width],
            )
            written += cursor.rowcount
    return written


def refresh_statistics(*models) -> None:
    """PostgreSQL: ``ANALYZE`` the tables of ``models`` after a bulk load filled them.

    A table filled in one go has no planner statistics until autovacuum gets to it (a
    minute or more later): the next import's lookups of 500 keys were planned as if it were
    empty and read all its 100,000 rows each (30 ms a chunk, 6 s a resync). PostgreSQL's
    "Populating a Database" advice; in the caller's transaction (it counts that transaction's
    own rows). SQLite plans those lookups on the right index without statistics.
    """
    for model in models:
        db = connections[router.db_for_write(model)]
        if db.vendor != "postgresql":
            continue
        with db.cursor() as cursor:
            cursor.execute(f"ANALYZE {db.ops.quote_name(model._meta.db_table)}")
