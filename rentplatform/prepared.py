"""Querysets compiled once: the hot path's reads without compiling the same SQL per payment.

Django compiles a queryset's SQL every time it runs it. For the reads made for every payment
(the claim's posting with its connection, property, payment and batch; the lease and the open
batch a payment joins; the lease link and the eSite batch a posting lands in) the compiling
costs more than the database: the claim's six-table read took 2.9 ms on SQLite, of which
0.1 ms was SQLite's (docs/performance.md, "Querysets compiled once").

``prepared(build)`` compiles ``build(*placeholders)`` once per database connection (per
thread: a compiler is bound to its thread's connection) and, on each call, runs that SQL with
the call's values in the placeholders' places. The rows become model instances through the
queryset's own iterable (select_related, annotations, converters: Django's code, not a copy),
so what a call returns is what ``list(build(*values))`` would return.

Placeholders are values of the types the queries take (int: a primary or foreign key; str; a
date). A placeholder must reach the SQL parameters as itself or, for a date, as the backend
adapts it (SQLite: its ISO text); compiling says so when one does not. A query that locks rows
(``select_for_update``) must be called inside a transaction, as Django's own would insist.
"""

from __future__ import annotations

import datetime as dt
import inspect
import threading
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from django.db import connections, transaction
from django.db.models import QuerySet

NOT_IN_TRANSACTION = "select_for_update cannot be used outside of a transaction."
_INT = -1_999_999_001  # far below any key this platform writes
_DAY = dt.date(1111, 1, 1)


def _placeholder(kind: type, i: int) -> Any:
    if kind is int:
        return _INT - i
    if kind is str:
        return f"\x00placeholder {i}\x00"
    if kind is dt.date:
        return _DAY + dt.timedelta(days=i)
    raise TypeError(f"prepared queries take int, str or date values, not {kind.__name__}")


def _converters_once(get_converters: Callable) -> Callable:
    """A compiler's ``get_converters``, worked out once for the select list it is asked about
    each run (the compiled query's own columns, the same objects every time: ``as_sql`` is not
    run again) instead of per run (a quarter of the claim's 77-column read, 0.19 ms of 0.75 ms
    on SQLite). Asked about other expressions, it asks the compiler."""
    known: list = []  # [(the expressions, their converters)]

    def cached(expressions):
        for asked, converters in known:
            if len(asked) == len(expressions) and all(
                a is b for a, b in zip(asked, expressions, strict=True)
            ):
                return converters
        converters = get_converters(expressions)
        if len(known) < 4:
            known.append((list(expressions), converters))
        return converters

    return cached


class Prepared:
    """One queryset shape, compiled once per connection; call it with the values."""

    def __init__(self, build: Callable[..., QuerySet], *kinds: type):
        self._build = build
        # Default: every value a key (int).
        self._kinds = kinds or (int,) * len(inspect.signature(build).parameters)
        self._local = threading.local()

    def _compile(self, using: str):
        placeholders = [_placeholder(kind, i) for i, kind in enumerate(self._kinds)]
        queryset = self._build(*placeholders).using(using)
        compiler = queryset.query.get_compiler(using=using)
        locks = queryset.query.select_for_update
        if locks and not compiler.connection.in_atomic_block:
            raise transaction.TransactionManagementError(NOT_IN_TRANSACTION)
        sql, params = compiler.as_sql()
        slots = []  # (index in params, index in values, adapt)
        for index, param in enumerate(params):
            for i, value in enumerate(placeholders):
                if param == value:
                    slots.append((index, i, None))
                elif isinstance(value, dt.date) and param == str(value):
                    slots.append((index, i, str))
        missing = set(range(len(placeholders))) - {i for _, i, _ in slots}
        if missing:
            raise ValueError(f"prepared query: values {sorted(missing)} do not reach its SQL")
        current = {"sql": sql, "params": list(params)}
        # Every run of this queryset (and its clones) uses this compiler, which answers with
        # the SQL compiled above and the current call's parameters: no compiling again.
        compiler.as_sql = lambda *args, **kwargs: (current["sql"], tuple(current["params"]))
        compiler.get_converters = _converters_once(compiler.get_converters)
        queryset.query.get_compiler = lambda *args, **kwargs: compiler
        return compiler.connection, queryset, list(params), slots, current, locks

    def __call__(self, *values: Any, using: str = "default") -> list:
        per_thread = self._local.__dict__
        compiled = per_thread.get(using)
        connection = connections[using]
        if compiled is None or compiled[0] is not connection:
            compiled = per_thread[using] = self._compile(using)
        _, queryset, template, slots, current, locks = compiled
        if locks and not connection.in_atomic_block:
            raise transaction.TransactionManagementError(NOT_IN_TRANSACTION)
        params = list(template)
        for index, i, adapt in slots:
            params[index] = adapt(values[i]) if adapt else values[i]
        current["params"] = params
        return list(queryset.all())

    def first(self, *values: Any, using: str = "default"):
        rows = self(*values, using=using)
        return rows[0] if rows else None


# -- writes ------------------------------------------------------------------------------------
# The same for the hot path's writes: Django builds an UPDATE or INSERT through its query
# compiler each time (0.1 to 0.2 ms of Python for one row, more than SQLite's own work). These
# write one row with SQL built once per model and column list; every value goes through its
# field's ``pre_save`` and ``get_db_prep_save``, as ``Model.save`` does, so what is stored is
# what save would store. They skip ``Model.save`` itself (overrides and pre/post_save
# signals): callers use them only where no override or receiver applies (say so there).

_sql_cache: dict[tuple, str] = {}


def insert_fields(meta) -> list:
    """The columns an INSERT of a new row writes: all but the automatic key and generated ones."""
    return [
        f
        for f in meta.local_concrete_fields
        if f is not meta.auto_field and not getattr(f, "generated", False)
    ]


def insert_params(instance, connection) -> list:
    """An INSERT's values, each through its field's ``pre_save`` (defaults, auto_now) and
    ``get_db_prep_save``, as ``Model.save`` does."""
    return [
        f.get_db_prep_save(f.pre_save(instance, True), connection)
        for f in insert_fields(instance._meta)
    ]


def _update(instance, fields: list[str], where: dict, connection, using: str) -> tuple[str, list]:
    """``UPDATE ... SET fields WHERE pk AND each where field equals (None: IS NULL)``, its SQL
    built once per model, fields and condition shape, and its parameters."""
    meta = instance._meta
    key = (
        "update",
        using,
        meta.label,
        tuple(fields),
        tuple((k, v is None) for k, v in where.items()),
    )
    sql = _sql_cache.get(key)
    if sql is None:
        quote = connection.ops.quote_name
        sets = ", ".join(f"{quote(meta.get_field(name).column)} = %s" for name in fields)
        conditions = [f"{quote(meta.pk.column)} = %s"] + [
            f"{quote(meta.get_field(name).column)} " + ("IS NULL" if value is None else "= %s")
            for name, value in where.items()
        ]
        sql = _sql_cache[key] = (
            f"UPDATE {quote(meta.db_table)} SET {sets} WHERE {' AND '.join(conditions)}"
        )
    params = []
    for name in fields:
        field = meta.get_field(name)
        params.append(field.get_db_prep_save(field.pre_save(instance, False), connection))
    params.append(meta.pk.get_db_prep_value(instance.pk, connection))
    for name, value in where.items():
        if value is not None:
            params.append(meta.get_field(name).get_db_prep_value(value, connection))
    return sql, params


def _inserted(instance, pk, using: str):
    instance.pk = pk
    instance._state.adding = False
    instance._state.db = using
    return instance


def update_row(instance, fields: list[str], *, where: dict | None = None, using="default") -> int:
    """UPDATE the instance's row: ``fields`` (names) from the instance, on the condition that
    each ``where`` field equals its value (None: IS NULL). Returns the rows changed (0 or 1)."""
    connection = connections[using]
    sql, params = _update(instance, fields, where or {}, connection, using)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def insert_row(instance, *, using="default"):
    """INSERT the instance (a new one, with an automatic primary key) and set its key."""
    connection = connections[using]
    meta = instance._meta
    returning = connection.features.can_return_columns_from_insert
    key = ("insert", using, meta.label)
    sql = _sql_cache.get(key)
    if sql is None:
        quote = connection.ops.quote_name
        fields = insert_fields(meta)
        sql = (
            f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
            f"VALUES ({', '.join(['%s'] * len(fields))})"
        )
        if returning:
            sql += f" RETURNING {quote(meta.pk.column)}"
        _sql_cache[key] = sql
    with connection.cursor() as cursor:
        cursor.execute(sql, insert_params(instance, connection))
        pk = cursor.fetchone()[0] if returning else cursor.lastrowid
    return _inserted(instance, pk, using)


def update_then_insert(instance, fields: list[str], *, where: dict, new, using="default") -> bool:
    """``update_row(instance, fields, where=where)`` and, only if it changed the row, insert
    ``new`` (a new instance, as ``insert_row``), atomically: both or neither. Returns whether
    the row was changed (then ``new`` has its key).

    On PostgreSQL it is one statement, a data-modifying WITH (``WITH changed AS (UPDATE ...
    RETURNING 1) INSERT ... SELECT ... FROM changed``): one round trip and, outside a
    transaction, its own commit. Elsewhere the two statements run in one transaction. Inside
    a caller's transaction it runs in a savepoint, so that an error (a unique constraint the
    insert breaks) leaves the caller's transaction usable; the error is raised.
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        with transaction.atomic(using=using):
            if not update_row(instance, fields, where=where, using=using):
                return False
            insert_row(new, using=using)
        return True
    update_sql, params = _update(instance, fields, where, connection, using)
    new_meta = new._meta
    key = ("update_then_insert", update_sql, new_meta.label)
    sql = _sql_cache.get(key)
    if sql is None:
        quote = connection.ops.quote_name
        new_fields = insert_fields(new_meta)
        sql = _sql_cache[key] = (
            f"WITH changed AS ({update_sql} RETURNING 1) "
            f"INSERT INTO {quote(new_meta.db_table)} "
            f"({', '.join(quote(f.column) for f in new_fields)}) "
            f"SELECT {', '.join(['%s'] * len(new_fields))} FROM changed "
            f"RETURNING {quote(new_meta.pk.column)}"
        )
    params += insert_params(new, connection)
    guard = transaction.atomic(using=using) if connection.in_atomic_block else nullcontext()
    with guard, connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return False
    _inserted(new, row[0], using)
    return True


@dataclass
class Upsert:
    """A row to write as ``upsert_row`` would: inserted, or the row with the same ``unique``
    fields given the instance's ``update`` fields."""

    instance: Any
    unique: list[str]
    update: list[str]


def update_then_update(
    instance,
    fields: list[str],
    *,
    where: dict,
    other,
    other_fields: list[str],
    upsert: Upsert | None = None,
    using="default",
) -> bool:
    """``update_row(instance, fields, where=where)`` and, only if it changed the row,
    ``update_row(other, other_fields)`` and, with ``upsert``, ``upsert_row`` of that row: all
    or none. Returns whether the first row was changed (the second row, updated by its key,
    must then exist: an error says so).

    On PostgreSQL it is one statement (``WITH changed AS (UPDATE ... RETURNING 1), other AS
    (UPDATE ... WHERE ... AND EXISTS (SELECT 1 FROM changed) RETURNING 1)[, landed AS (INSERT
    ... SELECT ... WHERE EXISTS (SELECT 1 FROM changed) ON CONFLICT ... DO UPDATE ...)] SELECT
    ...``): one round trip, atomic by itself, so it may run outside a transaction, where it
    is its own commit (the outbox's finish of a posted payment: no BEGIN, no COMMIT). There a
    missing second row is still raised, but the first row's change is kept: call it so only
    where the second row cannot be missing. Elsewhere it runs in a transaction, its own if
    the caller has none; an error (the second row missing) then undoes all.
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        with transaction.atomic(using=using, savepoint=False):
            if not update_row(instance, fields, where=where, using=using):
                return False
            if not update_row(other, other_fields, using=using):
                _missing(instance, other)
            if upsert is not None:
                upsert_row(upsert.instance, unique=upsert.unique, update=upsert.update, using=using)
        return True
    first_sql, params = _update(instance, fields, where, connection, using)
    other_sql, other_params = _update(other, other_fields, {}, connection, using)
    params += other_params
    landed = ""
    if upsert is not None:
        into, values, conflict = _upsert_parts(upsert, connection, using)
        # Its VALUES become a SELECT that gives a row only if the first row changed.
        landed = (
            f", landed AS ({into} SELECT {values} WHERE EXISTS (SELECT 1 FROM changed) "
            f"{conflict} RETURNING {connection.ops.quote_name(upsert.instance._meta.pk.column)})"
        )
        params += insert_params(upsert.instance, connection)
    key = ("update_then_update", first_sql, other_sql, landed)
    sql = _sql_cache.get(key)
    if sql is None:
        sql = _sql_cache[key] = (
            f"WITH changed AS ({first_sql} RETURNING 1), "
            f"other AS ({other_sql} AND EXISTS (SELECT 1 FROM changed) RETURNING 1){landed} "
            "SELECT (SELECT count(*) FROM changed), (SELECT count(*) FROM other)"
            + (", (SELECT * FROM landed)" if upsert is not None else "")
        )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if not row[0]:
        return False
    if not row[1]:
        _missing(instance, other)
    if upsert is not None:
        _inserted(upsert.instance, row[2], using)
    return True


def _missing(instance, other):
    raise other._meta.model.DoesNotExist(
        f"{other._meta.label} {other.pk}: no such row to update with "
        f"{instance._meta.label} {instance.pk}"
    )


def _upsert_parts(upsert: Upsert, connection, using: str) -> tuple[str, str, str]:
    """``upsert_row``'s statement in parts, built once per model and fields: ``INSERT INTO
    table (columns)``, its values' placeholders, ``ON CONFLICT (...) DO UPDATE SET ...``."""
    meta = upsert.instance._meta
    key = ("upsert", using, meta.label, tuple(upsert.unique), tuple(upsert.update))
    parts = _sql_cache.get(key)
    if parts is None:
        quote = connection.ops.quote_name
        fields = insert_fields(meta)
        column = {
            name: quote(meta.get_field(name).column) for name in upsert.unique + upsert.update
        }
        sets = ", ".join(f"{column[name]} = EXCLUDED.{column[name]}" for name in upsert.update)
        parts = _sql_cache[key] = (
            f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)})",
            ", ".join(["%s"] * len(fields)),
            f"ON CONFLICT ({', '.join(column[name] for name in upsert.unique)}) "
            f"DO UPDATE SET {sets}",
        )
    return parts


def upsert_row(instance, *, unique: list[str], update: list[str], using="default"):
    """INSERT the instance or, when a row with the same ``unique`` fields (a unique constraint
    of theirs) exists, set that row's ``update`` fields to the instance's: one statement
    (``INSERT ... ON CONFLICT ... DO UPDATE ... RETURNING``, PostgreSQL and SQLite). Sets the
    instance's key to the row's, inserted or updated."""
    connection = connections[using]
    into, values, conflict = _upsert_parts(Upsert(instance, unique, update), connection, using)
    returning = connection.ops.quote_name(instance._meta.pk.column)
    with connection.cursor() as cursor:
        cursor.execute(
            f"{into} VALUES ({values}) {conflict} RETURNING {returning}",
            insert_params(instance, connection),
        )
        pk = cursor.fetchone()[0]
    return _inserted(instance, pk, using)
