"""Import and resync a property's units, leases and residents from an accounting system.

The provider reads its system and maps each record (``integrations.records``); this module does
the rest, the same for every provider:

- One transaction per run: a reply that breaks off half way (timeout, reset, malformed data)
  rolls everything back, so nothing is half-imported and the next run starts clean. A dry run
  is the same run, rolled back at the end: it counts and describes exactly what a real run
  would.
- A record the provider cannot map (``BadRecord``) is reported with its name and skipped; the
  rest import.
- Leases are compared and written in chunks, with bulk writes through
  ``rentplatform.services.imports``; an unchanged lease (same digest) is not written at all, so
  an unchanged resync writes nothing but its SyncRun row.
- A lease the remote no longer lists (full import only) is marked inactive, never deleted; a
  lease it lists again as payable is reactivated.
- Deactivation is refused when it could be wrong: when the provider says the list of current
  leases was not read completely (``Feed.incomplete``), and when the remote listed no lease at
  all while leases are linked (more likely a wrong property or a permission than a property
  emptied overnight). The run then says so and what to do.

The provider's hooks (``AccountingProvider``): ``link_model`` / ``occupant_model``,
``read_units``, ``read_leases``, ``read_changed_leases``, ``read_lease``, ``unit_record``,
``lease_record``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from integrations.exceptions import PermanentError
from integrations.import_updates import Changed, ChangedLeases
from integrations.models import Connection, SyncKind, SyncRun, SyncStatus
from integrations.records import BadRecord, LeaseRecord, OccupantRecord
from rentplatform.bulk import CHUNK, fast_insert, refresh_statistics
from rentplatform.models import LeaseStatus
from rentplatform.services import imports as host

if TYPE_CHECKING:
    from integrations.providers.base import AccountingProvider

# Above this many links seen, unseen links are found in Python rather than by sending every id
# seen to the database.
_IN_CLAUSE_LIMIT = 900


# A run that linked this many leases refreshes the planner's statistics of the link tables, so
# the next run's lookups are planned for the rows it made.
_ANALYZE_AFTER = 1000


class _Rollback(Exception):
    pass


class Feed:
    """What a provider's read hooks get: the run, the time, and a way to say a list was not
    read completely."""

    def __init__(self, importer: Importer):
        self._importer = importer
        self.run: SyncRun = importer.run
        self.connection = importer.connection
        self.property = importer.prop
        self.now: dt.datetime = importer.now
        self.progress: Callable[[str], None] = importer.progress

    def incomplete(self, reason: str) -> None:
        """The list of current leases was not read completely (an error answer read as an
        empty list, say): nothing will be marked inactive. ``reason`` says what the remote
        answered, in words a person can act on."""
        self._importer.incomplete.append(reason)

    def say(self, text: str, *, last: bool = False) -> None:
        """A line for the run's message: first (e.g. the window a delta covered) or, with
        ``last``, after the others (e.g. how a reply was read)."""
        if last:
            self._importer.notes.append(text)
        else:
            self._importer.notes.insert(0, text)


class Importer(ChangedLeases):
    def __init__(
        self,
        provider: AccountingProvider,
        run: SyncRun,
        progress: Callable[[str], None] | None = None,
    ):
        self.provider = provider
        self.connection = provider.connection
        self.prop = self.connection.property
        self.links = provider.link_model
        self.occupant_links = provider.occupant_model
        self.run = run
        self.progress = progress or (lambda text: None)
        self.now = timezone.now()
        self.system = provider.system_name
        # The property's units and buildings by code: all of them once the units are read (full
        # import), else only those new leases were placed on (a delta or "sync now" reads one
        # lease or a few: loading 100,000 units for them cost more than their writes).
        self._units: dict[tuple[str, str], int] = {}
        self._buildings: dict[str, int] = {}
        self._all_units = False
        self.seen_links: set[int] = set()
        self._none_linked = False
        self.units_created = 0
        self.units_updated = 0
        self.processed = 0
        self.incomplete: list[str] = []
        self.notes: list[str] = []
        self.access_changes = 0  # changed leases whose payment access changed with them
        self.feed = Feed(self)

    # -- entry point ---------------------------------------------------------------------------
    def execute(self, *, lease_id: int | None = None, since: dt.datetime | None = None) -> None:
        self.run.window_end = self.now
        try:
            with transaction.atomic():
                _one_import_at_a_time(self.connection)
                kind = self.run.kind
                if kind in (SyncKind.IMPORT, SyncKind.FULL):
                    self._sync_units(self.provider.read_units(self.feed))
                    self._process(self.provider.read_leases(self.feed))
                    if self.incomplete:
                        self._incomplete_note("no lease was marked inactive")
                    elif not self.seen_links and self._has_active_links():
                        self._nothing_listed_note()
                    else:
                        self._deactivate_unseen()
                    if kind == SyncKind.FULL:
                        self._missed_by_delta_note()
                elif kind == SyncKind.DELTA:
                    self._process(self.provider.read_changed_leases(self.feed, since))
                elif kind == SyncKind.LEASE:
                    self._sync_one(lease_id)
                else:
                    raise ValueError(f"unknown sync kind {kind!r}")
                self._finish_message()
                if self.run.dry_run:
                    raise _Rollback
                if self.run.created >= _ANALYZE_AFTER:
                    refresh_statistics(self.links, self.occupant_links)
        except _Rollback:
            pass

    def _sync_one(self, lease_id: int | None) -> None:
        link = self.links.objects.filter(connection=self.connection, lease_id=lease_id).first()
        if link is None:
            raise BadRecord(f"lease {lease_id}", f"is not linked to a lease in {self.system}")
        found = self.provider.read_lease(self.feed, link)
        if found is not None:
            self._process([found])
        elif self.incomplete:
            self._incomplete_note(f"lease {link.composite} was not marked inactive")
        else:
            self._deactivate([link])

    # -- notes a person reads ------------------------------------------------------------------
    def _incomplete_note(self, kept: str) -> None:
        """The current list was not read completely: say so where a person looks.

        The run is "finished with errors" (partial), not failed. A failed run would roll back the
        one transaction, losing the valid units and other lists read in the same run; what it
        must not do, taking the gap for "no current leases", is already prevented.
        """
        for reason in self.incomplete:
            text = f"{reason}; {kept}. Check the property in {self.system}, then resync."
            self.run.record_error(self.provider.property_label(), text)
            self.notes.append(text)
        # The current leases were not read: the next delta starts where the last good run ended.
        self.run.window_end = last_delta_end(self.connection) or self.run.window_end

    def _has_active_links(self) -> bool:
        return self.links.objects.filter(connection=self.connection, active=True).exists()

    def _nothing_listed_note(self) -> None:
        """No lease listed at all while leases are linked: deactivate nothing and say why (a
        production AMSI client aborted here)."""
        text = (
            f"{self.system} listed no lease for this property, while leases are linked to "
            "it; no lease was marked inactive. If the property really is "
            f"empty, mark its leases inactive by hand; otherwise check the property in "
            f"{self.system}, then resync."
        )
        self.run.record_error(self.provider.property_label(), text)
        self.notes.append(text)

    def _missed_by_delta_note(self) -> None:
        """A full resync that finds leases changed although delta resyncs ran since the last
        full read says how many (and how many in payment access): the delta resyncs did not
        bring those changes. What the remote's delta query counts as a change may not be known
        (AMSI: docs/amsi-evidence.md, note 4); this is where a person sees that it missed
        some. A change made after the last delta is expected here and counted too."""
        if not self.run.updated:
            return
        done = [SyncStatus.SUCCEEDED, SyncStatus.PARTIAL]
        runs = SyncRun.objects.filter(
            connection=self.connection, status__in=done, dry_run=False
        ).exclude(pk=self.run.pk)
        last_full = (
            runs.filter(kind__in=[SyncKind.FULL, SyncKind.IMPORT]).order_by("-started_at").first()
        )
        if last_full is None:
            return
        last_delta = (
            runs.filter(kind=SyncKind.DELTA, started_at__gt=last_full.started_at)
            .order_by("-started_at")
            .first()
        )
        if last_delta is None:
            return  # no delta ran since: finding changes is what a full resync is for
        self.notes.append(
            missed_by_delta(
                self.run.updated,
                self.access_changes,
                self.system,
                timezone.localtime(last_delta.window_end or last_delta.started_at, self.prop.tz),
            )
        )

    def _finish_message(self) -> None:
        parts = [self.run.message] if self.run.message else []
        if self.units_created or self.units_updated:
            parts.append(f"units: {self.units_created} new, {self.units_updated} updated")
        self.run.message = "; ".join(parts + self.notes)

    # -- units ---------------------------------------------------------------------------------
    def _look_up_units(self, keys: set[tuple[str, str]]) -> None:
        """Bring the units (and their buildings) of ``keys`` not known yet into the caches."""
        missing = {key for key in keys if key not in self._units}
        if self._all_units or not missing:
            return
        self._units.update(host.unit_ids(self.prop, missing))
        buildings = {building for building, _unit in missing} - set(self._buildings)
        self._buildings.update(host.building_ids(self.prop, buildings))

    def _building(self, code: str) -> int:
        if code not in self._buildings:
            self._buildings[code] = host.create_building(self.prop, code)
        return self._buildings[code]

    def _unit(self, building: str, unit: str) -> int:
        key = (building, unit)
        if key not in self._units:
            self._units[key] = host.create_unit(self._building(building), unit)
            self.units_created += 1
        return self._units[key]

    def _sync_units(self, items: Iterable[Any]) -> None:
        # Collected first and written in bulk: one INSERT per row cost 15 s for 11,000 units.
        existing = host.units_by_code(self.prop)
        self._buildings = host.building_ids(self.prop)
        self._units = {key: unit["pk"] for key, unit in existing.items()}
        self._all_units = True
        new = {}
        changed: list[tuple[int, str, str]] = []
        for item in items:
            try:
                rec = self.provider.unit_record(item)
            except BadRecord as err:
                self.run.record_error(err.record, err.message)
                continue
            unit = existing.get(rec.key)
            if unit is None:
                new.setdefault(rec.key, rec)
            elif (unit["unit_type"], unit["address"]) != (rec.unit_type, rec.address):
                unit["unit_type"], unit["address"] = rec.unit_type, rec.address
                changed.append((unit["pk"], rec.unit_type, rec.address))
        missing = sorted({building for building, _unit in new} - set(self._buildings))
        if missing:
            self._buildings.update(host.create_buildings(self.prop, missing))
        unit_ids = host.create_units(
            [
                {
                    "building_id": self._buildings[rec.building],
                    "code": rec.unit,
                    "unit_type": rec.unit_type,
                    "address": rec.address,
                }
                for rec in new.values()
            ],
            self.now,
        )
        for key, unit_id in zip(new, unit_ids, strict=True):
            self._units[key] = unit_id
            self.run.record_change(f"unit {key[0]}-{key[1]}", "new unit")
        self.units_created += len(unit_ids)
        if changed:
            host.update_units(changed)
            self.units_updated += len(changed)

    # -- leases ----------------------------------------------------------------------------------
    def _records(self, items: Iterable[Any]) -> Iterator[LeaseRecord]:
        for item in items:
            if isinstance(item, LeaseRecord):
                yield item
                continue
            try:
                yield self.provider.lease_record(item)
            except BadRecord as err:
                self.run.record_error(err.record, err.message)

    def _process(self, items: Iterable[Any]) -> None:
        chunk: list[LeaseRecord] = []
        seen_keys: set[tuple] = set()
        # A first import (no lease linked yet) has nothing to compare with: no chunk asks.
        self._none_linked = not self.links.objects.filter(connection=self.connection).exists()
        for rec in self._records(items):
            if rec.key in seen_keys:
                continue  # listed twice (under two statuses, say): once is enough
            seen_keys.add(rec.key)
            chunk.append(rec)
            if len(chunk) >= CHUNK:
                self._process_chunk(chunk)
                chunk = []
        if chunk:
            self._process_chunk(chunk)

    def _known(self, records: list[LeaseRecord]) -> dict[tuple, tuple]:
        """The links of ``records`` already made: key -> (pk, lease_id, active, digest).

        Compared on a few columns; whole links (raw JSON, lease) are loaded only for the leases
        that changed, so an unchanged resync builds no model instances. (A record listed twice
        in one run is skipped before this, so links made earlier in the run are never asked.)
        """
        if self._none_linked:
            return {}
        key_fields = self.links.key_fields
        lookup = {f"{key_fields[-1]}__in": {r.key[-1] for r in records}}
        return {
            row[4:]: row[:4]
            for row in self.links.objects.filter(connection=self.connection, **lookup).values_list(
                "pk", "lease_id", "active", "content_hash", *key_fields
            )
        }

    def _process_chunk(self, records: list[LeaseRecord]) -> None:
        known = self._known(records)
        new: list[tuple[LeaseRecord, str]] = []
        changed: list[Changed] = []
        for rec in records:
            digest = rec.digest()
            row = known.get(rec.key)
            if row is None:
                new.append((rec, digest))
                continue
            pk, lease_id, active, content_hash = row
            self.seen_links.add(pk)
            if content_hash == digest and (active or not rec.payable):
                self.run.unchanged += 1
                continue
            changed.append((pk, lease_id, active, rec, digest))
        if changed:
            self._update(changed)
        if new:
            self._create(new)
        self.processed += len(records)
        if self.processed % 5000 < len(records):
            self.progress(f"{self.processed} leases read")

    def _link_row(self, rec: LeaseRecord, digest: str) -> dict:
        return {
            **dict(zip(self.links.key_fields, rec.key, strict=True)),
            **rec.link_fields,
            "raw": rec.raw,
            "content_hash": digest,
            "last_synced_at": self.now,
        }

    def _create(self, new: list[tuple[LeaseRecord, str]]) -> None:
        # Rows go in through fast_insert (plain tuples, no model instances): Django's
        # bulk_create spent ~70% of a 10,000-lease import building and preparing objects.
        self._look_up_units({(rec.building, rec.unit) for rec, _digest in new})
        lease_ids = host.create_leases(
            [
                {
                    "unit_id": self._unit(rec.building, rec.unit),
                    **rec.lease_values(LeaseStatus.ACTIVE),
                    "access": rec.access,
                    "access_reason": rec.access_reason,
                }
                for rec, _digest in new
            ],
            self.now,
        )
        link_ids = fast_insert(
            self.links,
            [
                {"connection_id": self.connection.pk, "lease_id": lease_id, **self._link_row(*n)}
                for lease_id, n in zip(lease_ids, new, strict=True)
            ],
            self.now,
        )
        self.seen_links.update(link_ids)
        people = [
            (lease_id, link_id, occ)
            for lease_id, link_id, (rec, _digest) in zip(lease_ids, link_ids, new, strict=True)
            for occ in rec.occupants
        ]
        resident_ids = host.create_residents([occ.person for _l, _k, occ in people], self.now)
        host.add_memberships(
            [
                (lease_id, rid, occ.responsible)
                for (lease_id, _link, occ), rid in zip(people, resident_ids, strict=True)
            ],
            self.now,
        )
        fast_insert(
            self.occupant_links,
            [
                self._occupant_row(link_id, rid, occ)
                for (_lease, link_id, occ), rid in zip(people, resident_ids, strict=True)
            ],
            self.now,
            returning=False,
        )
        self.run.created += len(new)
        for rec, _ in new[: max(0, 500 - len(self.run.changes))]:
            self.run.record_change(rec.label, "new lease")

    def _occupant_row(self, link_id: int, resident_id: int, occ: OccupantRecord) -> dict:
        return {
            "lease_link_id": link_id,
            "resident_id": resident_id,
            self.occupant_links.key_field: occ.key,
            **occ.link_fields,
        }

    # -- disappearance ---------------------------------------------------------------------------
    def _deactivate_unseen(self) -> None:
        active = self.links.objects.filter(connection=self.connection, active=True)
        if len(self.seen_links) < _IN_CLAUSE_LIMIT:
            unseen = list(active.exclude(pk__in=self.seen_links))
        else:
            # Large portfolios: ids only (building 100,000 model instances to find a handful
            # cost seconds), compared in Python, then the few unseen links loaded in slices.
            ids = [pk for pk in active.values_list("pk", flat=True) if pk not in self.seen_links]
            unseen = [
                link
                for start in range(0, len(ids), 500)
                for link in self.links.objects.filter(pk__in=ids[start : start + 500]).only(
                    "pk", "lease_id", *self.links.key_fields
                )
            ]
        self._deactivate(unseen)

    def _deactivate(self, links: list) -> None:
        for link in links:
            host.deactivate_lease(link.lease_id, self.now)
            self.links.objects.filter(pk=link.pk).update(active=False, last_synced_at=self.now)
            self.run.deactivated += 1
            self.run.record_change(
                link.composite, f"no longer listed by {self.system}: marked inactive"
            )


def missed_by_delta(changed: int, access: int, system: str, last_delta: dt.datetime) -> str:
    """The full resync's line for leases changed that no delta resync brought."""
    leases = "1 lease" if changed == 1 else f"{changed} leases"
    of_them = f", {access} of them in payment access" if access else ""
    return (
        f"{leases} had changed in {system} without a delta resync bringing the change"
        f"{of_them}, though delta resyncs ran since the last full read (the last at "
        f"{last_delta:%H:%M}): {system}'s delta query may not list every change, so such a "
        f"change waits for the full resync; one made after {last_delta:%H:%M} is expected here"
    )


def last_delta_end(connection: Connection) -> dt.datetime | None:
    """Where the next delta resync starts: the end of the last import or resync that read
    the remote (a dry run does not count)."""
    last = (
        SyncRun.objects.filter(
            connection=connection,
            kind__in=[SyncKind.DELTA, SyncKind.FULL, SyncKind.IMPORT],
            status__in=[SyncStatus.SUCCEEDED, SyncStatus.PARTIAL],
            dry_run=False,
        )
        .order_by("-started_at")
        .first()
    )
    if last is None:
        return None
    return last.window_end or last.started_at


# pg_advisory_xact_lock's first key: this lock's namespace (the second is the connection id).
_IMPORT_LOCK = 0x494D5054  # "IMPT"


def _one_import_at_a_time(connection: Connection) -> None:
    """Imports and resyncs of one connection run one after the other (PostgreSQL: an advisory
    lock held until the transaction ends; a second run waits for the first and then sees its
    links, instead of creating them again and failing on their unique key). Nothing else
    waits: payments, postings and the connection's own row are not locked. SQLite runs one
    write transaction at a time anyway."""
    db = transaction.get_connection()
    if db.vendor != "postgresql":
        return
    with db.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_IMPORT_LOCK, connection.pk])


def run_import(
    provider: AccountingProvider,
    run: SyncRun,
    *,
    lease_id: int | None = None,
    since: dt.datetime | None = None,
    progress: Callable[[str], None] | None = None,
) -> None:
    """Import or resync into the host for ``run`` (its kind and dry_run say which).

    A record that stops the whole run (the lease asked for is not linked) is a PermanentError
    naming it; on any failure the counts are reset, since everything was rolled back.
    """
    try:
        Importer(provider, run, progress).execute(lease_id=lease_id, since=since)
    except BadRecord as err:
        _reset_counts(run)
        raise PermanentError(err.message, provider=provider.id, record=err.record) from None
    except BaseException:
        _reset_counts(run)
        raise


def _reset_counts(run: SyncRun) -> None:
    run.created = run.updated = run.unchanged = run.deactivated = 0
    run.changes = []
