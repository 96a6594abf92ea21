"""Import and resync a property's units, leases and occupants from AMSI.

Design notes:
- One transaction per run: a reply that breaks off half way (timeout, reset, malformed XML)
  rolls everything back, so nothing is half-imported and the next run starts clean. A dry run is
  the same run, rolled back at the end: it counts and describes exactly what a real run would.
- Records are parsed before anything is written; a bad record is reported with its ids
  (Property-Building-Unit-ResiID) and skipped, the rest import.
- Leases are processed in chunks with bulk writes; an unchanged lease (same content hash) is not
  written at all, so an unchanged re-import writes nothing but its SyncRun row.
- A lease AMSI no longer lists (full import only) is marked inactive, never deleted.
- An eDex error document answering a list read (code 103 "no data", or any code but a login
  refusal or an unknown property) is an empty list, as production clients read it. It is never
  taken for "no current leases": then nothing is deactivated and the run says why.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Iterator

from django.db import transaction
from django.utils import timezone

from integrations.exceptions import IntegrationError, RetryableError
from integrations.models import SyncKind, SyncRun
from integrations.services import last_delta_end
from rentplatform.models import (
    Building,
    Lease,
    LeaseResident,
    LeaseStatus,
    Resident,
    Unit,
)

from .bulk import CHUNK, fast_insert
from .client import EdexClient
from .conf import AmsiSettings
from .errors import is_error_document
from .mapping import (
    BadRecord,
    LeaseRecord,
    OccupantRecord,
    UnitRecord,
    lease_record,
    unit_record,
)
from .models import AmsiLeaseLink, AmsiOccupantLink
from .queries import DELTA_OPERATION, delta_queries, residents_query, units_query

log = logging.getLogger(__name__)

LEASE_STATUSES = ("C", "N")  # current and notice: eSite is asked once per status


class _Rollback(Exception):
    pass


class Importer:
    def __init__(
        self,
        connection,
        run: SyncRun,
        client: EdexClient,
        settings: AmsiSettings,
        progress: Callable[[str], None] | None = None,
    ):
        self.connection = connection
        self.prop = connection.property
        self.run = run
        self.client = client
        self.settings = settings
        self.progress = progress or (lambda text: None)
        self.now = timezone.now()
        self._units: dict[tuple[str, str], int] = {}
        self._buildings: dict[str, int] = {}
        self.seen_links: set[int] = set()
        self.units_created = 0
        self.units_updated = 0
        self.processed = 0
        self.current_refused: IntegrationError | None = None  # C list: an error document
        self.notes: list[str] = []

    # -- entry points --------------------------------------------------------------------------
    def execute(self, *, lease_id: int | None = None, since: dt.datetime | None = None) -> None:
        self.run.window_end = self.now
        try:
            with transaction.atomic():
                self._load_caches()
                kind = self.run.kind
                if kind in (SyncKind.IMPORT, SyncKind.FULL):
                    self._sync_units()
                    self._process(self._all_leases())
                    if self.current_refused is not None:
                        self._refused_note("no lease was marked inactive")
                    elif not self.seen_links and self._has_active_links():
                        self._nothing_listed_note()
                    else:
                        self._deactivate_unseen()
                elif kind == SyncKind.DELTA:
                    self._process(self._changed_leases(since))
                elif kind == SyncKind.LEASE:
                    self._sync_one(lease_id)
                else:
                    raise ValueError(f"unknown sync kind {kind!r}")
                self._finish_message()
                if self.run.dry_run:
                    raise _Rollback
        except _Rollback:
            pass

    # -- reads ---------------------------------------------------------------------------------
    def _stream_units(self) -> Iterator:
        query = units_query(self.settings.property_id)
        yield from self._stream("GetPropertyUnits", query, element="Unit")

    def _stream(self, operation: str, xmldata: str, element: str = "Lease", status: str = ""):
        try:
            yield from self.client.stream_elements(operation, xmldata, element)
        except IntegrationError as err:
            if isinstance(err, RetryableError) or not is_error_document(err):
                raise  # login refused, unknown property, transport, "try again": run fails
            # Production (RentTrack) read an error document on a list as an empty list: an
            # alert for current residents, info for the other statuses.
            log.log(
                logging.WARNING if status == "C" else logging.INFO,
                "AMSI answered %s%s for property %s with an error document (code %s: %s); "
                "read as an empty list",
                operation,
                f" (leasestatus {status})" if status else "",
                self.settings.property_id,
                err.code,
                _description(err),
            )
            if status == "C":
                self.current_refused = err

    def _all_leases(self) -> Iterator:
        for status in LEASE_STATUSES:
            query = residents_query(self.settings.property_id, status)
            yield from self._stream("GetPropertyResidents", query, status=status)

    def _changed_leases(self, since: dt.datetime | None) -> Iterator:
        # eDex takes days, not times: ask from the day before the last sync to the day after
        # today (margin for clock differences: eSite stamps changes in its server's local time);
        # unchanged leases are skipped by their content hash anyway. The requests:
        # queries.delta_queries (what production clients sent).
        tz = self.prop.tz
        start = (since or self.now - dt.timedelta(days=1)).astimezone(tz).date()
        start -= dt.timedelta(days=1)
        end = self.now.astimezone(tz).date() + dt.timedelta(days=1)
        self.run.message = f"changes from {start:%m/%d/%Y} to {end:%m/%d/%Y}"
        for _what, query in delta_queries(self.settings.property_id, start, end):
            yield from self._stream(DELTA_OPERATION, query)

    def _sync_one(self, lease_id: int | None) -> None:
        link = AmsiLeaseLink.objects.filter(connection=self.connection, lease_id=lease_id).first()
        if link is None:
            raise BadRecord(f"lease {lease_id}", "is not linked to an AMSI lease (no ResiID)")
        found = None
        for el in self._all_leases():
            if (
                el.get("BldgID", "").strip() == link.bldg_id
                and el.get("UnitID", "").strip() == link.unit_id
                and el.get("ResiID", "").strip() == link.resi_id
            ):
                found = el
                break
        if found is not None:
            self._process([found])
        elif self.current_refused is not None:
            self._refused_note(f"lease {link.composite} was not marked inactive")
        else:
            self._deactivate([link])

    def _refused_note(self, kept: str) -> None:
        """The current list came back as an error document: say so where a person looks.

        The run is "finished with errors" (partial), not failed. A failed run would roll back the
        one transaction, losing the valid units and notice-list updates read in the same run;
        what it must not do, taking the error for "no current leases", is already prevented.
        """
        err = self.current_refused
        text = (
            f"AMSI answered the current-residents list with an error (code {err.code}: "
            f"{_description(err)}); {kept}. Check the property in eSite, then resync."
        )
        self.run.record_error(f"property {self.settings.property_id}", text)
        self.notes.append(text)
        # The current leases were not read: the next delta starts where the last good run ended.
        self.run.window_end = last_delta_end(self.connection) or self.run.window_end

    def _has_active_links(self) -> bool:
        return AmsiLeaseLink.objects.filter(connection=self.connection, active=True).exists()

    def _nothing_listed_note(self) -> None:
        """Neither the current nor the notice list held a single lease, while leases are
        linked: more likely a wrong property or a permission than a property emptied overnight.
        RentTrack's production client aborted here; this run deactivates nothing and says so."""
        text = (
            "AMSI listed no current and no notice lease for this property, while leases are "
            "linked to it; no lease was marked inactive. If the property really is empty, "
            "mark its leases inactive by hand; otherwise check the property in eSite, then "
            "resync."
        )
        self.run.record_error(f"property {self.settings.property_id}", text)
        self.notes.append(text)

    # -- units ---------------------------------------------------------------------------------
    def _load_caches(self) -> None:
        for b in Building.objects.filter(property=self.prop).values("pk", "code"):
            self._buildings[b["code"]] = b["pk"]
        for u in Unit.objects.filter(building__property=self.prop).values(
            "pk", "code", "building__code"
        ):
            self._units[(u["building__code"], u["code"])] = u["pk"]

    def _building(self, code: str) -> int:
        if code not in self._buildings:
            b = Building.objects.create(property=self.prop, code=code, name=f"Building {code}")
            self._buildings[code] = b.pk
        return self._buildings[code]

    def _unit(self, bldg: str, unit: str) -> int:
        key = (bldg, unit)
        if key not in self._units:
            u = Unit.objects.create(building_id=self._building(bldg), code=unit)
            self._units[key] = u.pk
            self.units_created += 1
        return self._units[key]

    def _sync_units(self) -> None:
        # Streamed like the resident lists: a 100,000-unit reply is one text node over
        # libxml2's 10 MB limit for a parsed tree.
        root = self._stream_units()
        existing = {
            (u["building__code"], u["code"]): u
            for u in Unit.objects.filter(building__property=self.prop).values(
                "pk", "code", "building__code", "unit_type", "address"
            )
        }
        # Collected first and written in bulk: one INSERT per row cost 15 s for 11,000 units.
        new: dict[tuple[str, str], UnitRecord] = {}
        changed: list[Unit] = []
        for el in root:
            try:
                rec = unit_record(el)
            except BadRecord as err:
                self.run.record_error(err.record, err.message)
                continue
            key = (rec.bldg_id, rec.unit_id)
            unit = existing.get(key)
            if unit is None:
                new.setdefault(key, rec)
            elif (unit["unit_type"], unit["address"]) != (rec.unit_type, rec.address):
                unit["unit_type"], unit["address"] = rec.unit_type, rec.address
                changed.append(Unit(pk=unit["pk"], unit_type=rec.unit_type, address=rec.address))
        missing = sorted({bldg for bldg, _unit in new} - set(self._buildings))
        if missing:
            for b in Building.objects.bulk_create(
                [Building(property=self.prop, code=c, name=f"Building {c}") for c in missing]
            ):
                self._buildings[b.code] = b.pk
        unit_ids = fast_insert(
            Unit,
            [
                {
                    "building_id": self._buildings[rec.bldg_id],
                    "code": rec.unit_id,
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
            Unit.objects.bulk_update(changed, ["unit_type", "address"], batch_size=CHUNK)
            self.units_updated += len(changed)

    # -- leases ----------------------------------------------------------------------------------
    def _records(self, elements: Iterable) -> Iterator[LeaseRecord]:
        for el in elements:
            try:
                rec = lease_record(el)
            except BadRecord as err:
                self.run.record_error(err.record, err.message)
                continue
            if rec.property_id != self.settings.property_id:
                self.run.record_error(
                    rec.composite, f"belongs to property {rec.property_id}, not this connection's"
                )
                continue
            yield rec

    def _process(self, elements: Iterable) -> None:
        chunk: list[LeaseRecord] = []
        seen_keys: set[tuple] = set()
        for rec in self._records(elements):
            if rec.key in seen_keys:
                continue  # listed under two statuses: once is enough
            seen_keys.add(rec.key)
            chunk.append(rec)
            if len(chunk) >= CHUNK:
                self._process_chunk(chunk)
                chunk = []
        if chunk:
            self._process_chunk(chunk)

    def _process_chunk(self, records: list[LeaseRecord]) -> None:
        resi_ids = {r.resi_id for r in records}
        # Compare on a few columns first; whole links (raw JSON, lease) are loaded only for
        # the leases that changed, so an unchanged re-import builds no model instances.
        known = {
            (row[1], row[2], row[3], row[4]): (row[0], row[5], row[6])
            for row in AmsiLeaseLink.objects.filter(
                connection=self.connection, resi_id__in=resi_ids
            ).values_list(
                "pk", "property_id", "bldg_id", "unit_id", "resi_id", "content_hash", "active"
            )
        }
        new: list[tuple[LeaseRecord, str]] = []
        changed: list[tuple[int, LeaseRecord, str]] = []
        for rec in records:
            digest = rec.digest()
            row = known.get(rec.key)
            if row is None:
                new.append((rec, digest))
                continue
            pk, content_hash, active = row
            self.seen_links.add(pk)
            if content_hash == digest and (active or not rec.payable):
                self.run.unchanged += 1
                continue
            changed.append((pk, rec, digest))
        if changed:
            links = AmsiLeaseLink.objects.select_related("lease").in_bulk(
                [pk for pk, _rec, _digest in changed]
            )
            for pk, rec, digest in changed:
                self._update(links[pk], rec, digest)
        if new:
            self._create(new)
        self.processed += len(records)
        if self.processed % 5000 < len(records):
            self.progress(f"{self.processed} leases read")

    def _create(self, new: list[tuple[LeaseRecord, str]]) -> None:
        # Rows go in through fast_insert (plain tuples, no model instances): Django's
        # bulk_create spent ~70% of a 10,000-lease import building and preparing objects.
        lease_rows = []
        for rec, _digest in new:
            access, reason = rec.access()
            lease_rows.append(
                {
                    "unit_id": self._unit(rec.bldg_id, rec.unit_id),
                    "status": rec.lease_status or LeaseStatus.ACTIVE,
                    "start_date": rec.start_date,
                    "end_date": rec.end_date,
                    "balance": rec.balance,
                    "accounting_access": access,
                    "accounting_access_reason": reason,
                    "accounting_access_since": self.now if access != "allowed" else None,
                }
            )
        lease_ids = fast_insert(Lease, lease_rows, self.now)
        link_ids = fast_insert(
            AmsiLeaseLink,
            [
                {
                    "connection_id": self.connection.pk,
                    "lease_id": lease_id,
                    "property_id": rec.property_id,
                    "bldg_id": rec.bldg_id,
                    "unit_id": rec.unit_id,
                    "resi_id": rec.resi_id,
                    "credit_status": rec.credit_status,
                    "block_payment_access": rec.block_payment_access,
                    "block_all_access": rec.block_all_access,
                    "external_reference": rec.external_reference,
                    "raw": rec.raw,
                    "content_hash": digest,
                    "last_synced_at": self.now,
                }
                for lease_id, (rec, digest) in zip(lease_ids, new, strict=True)
            ],
            self.now,
        )
        self.seen_links.update(link_ids)
        people = [
            (lease_id, link_id, occ)
            for lease_id, link_id, (rec, _digest) in zip(lease_ids, link_ids, new, strict=True)
            for occ in rec.occupants
        ]
        resident_ids = fast_insert(
            Resident,
            [
                {
                    "first_name": occ.first_name,
                    "last_name": occ.last_name,
                    "email": occ.email,
                    "phone": occ.phone,
                }
                for _lease, _link, occ in people
            ],
            self.now,
        )
        fast_insert(
            LeaseResident,
            [
                {"lease_id": lease_id, "resident_id": rid, "responsible": occ.responsible}
                for (lease_id, _link, occ), rid in zip(people, resident_ids, strict=True)
            ],
            self.now,
            returning=False,
        )
        fast_insert(
            AmsiOccupantLink,
            [
                {
                    "lease_link_id": link_id,
                    "resident_id": rid,
                    "occu_seq_no": occ.seq,
                    "responsible_flag": occ.responsible_flag,
                }
                for (_lease, link_id, occ), rid in zip(people, resident_ids, strict=True)
            ],
            self.now,
            returning=False,
        )
        self.run.created += len(new)
        for rec, _ in new[: max(0, 500 - len(self.run.changes))]:
            self.run.record_change(rec.composite, "new lease")

    def _update(self, link: AmsiLeaseLink, rec: LeaseRecord, digest: str) -> None:
        from rentplatform.services import set_accounting_access

        lease = link.lease
        changes = []
        fields = {
            "status": rec.lease_status or lease.status,  # another AMSI status: left as it is
            "start_date": rec.start_date,
            "end_date": rec.end_date,
            "balance": rec.balance,
        }
        for name, value in fields.items():
            if getattr(lease, name) != value:
                changes.append(f"{name} {getattr(lease, name)} -> {value}")
                setattr(lease, name, value)
        if changes:
            lease.save(update_fields=[*fields, "updated_at"])
        access, reason = rec.access()
        if set_accounting_access(lease, access, reason, now=self.now):
            changes.append(f"payment access -> {access}" + (f" ({reason})" if reason else ""))
        changes += self._sync_occupants(link, rec.occupants)
        if not link.active and rec.payable:
            changes.append("listed again by AMSI: reactivated")
        link.credit_status = rec.credit_status
        link.block_payment_access = rec.block_payment_access
        link.block_all_access = rec.block_all_access
        link.external_reference = rec.external_reference
        link.raw = rec.raw
        link.content_hash = digest
        link.active = link.active or rec.payable  # only the C and N lists reactivate a link
        link.last_synced_at = self.now
        link.save()
        self.run.updated += 1
        self.run.record_change(rec.composite, "; ".join(changes) or "AMSI details updated")

    @staticmethod
    def _hand_added_match(link: AmsiLeaseLink, occ: OccupantRecord) -> Resident | None:
        """A member of the lease with no AMSI occupant yet, by email, else by full name."""
        unlinked = Resident.objects.filter(memberships__lease_id=link.lease_id).exclude(
            amsi_occupancies__lease_link=link
        )
        if occ.email:
            match = unlinked.filter(email__iexact=occ.email).first()
            if match:
                return match
        if occ.first_name and occ.last_name:
            return unlinked.filter(
                first_name__iexact=occ.first_name, last_name__iexact=occ.last_name
            ).first()
        return None

    def _sync_occupants(self, link: AmsiLeaseLink, occupants: list[OccupantRecord]) -> list[str]:
        changes = []
        existing = {o.occu_seq_no: o for o in link.occupants.select_related("resident")}
        wanted = {o.seq: o for o in occupants}
        for seq, occ in wanted.items():
            current = existing.get(seq)
            if current is None:
                resident = self._hand_added_match(link, occ)
                if resident is not None:
                    # The tenant a person added by hand is this occupant: adopt, don't
                    # duplicate (their portal login stays with them).
                    LeaseResident.objects.filter(lease_id=link.lease_id, resident=resident).update(
                        responsible=occ.responsible
                    )
                    changes.append(f"occupant {seq} matched to {resident} (added by hand)")
                else:
                    resident = Resident.objects.create(
                        first_name=occ.first_name,
                        last_name=occ.last_name,
                        email=occ.email,
                        phone=occ.phone,
                    )
                    LeaseResident.objects.create(
                        lease_id=link.lease_id, resident=resident, responsible=occ.responsible
                    )
                    changes.append(f"occupant {seq} added")
                AmsiOccupantLink.objects.create(
                    lease_link=link,
                    resident=resident,
                    occu_seq_no=seq,
                    responsible_flag=occ.responsible_flag,
                )
                continue
            r = current.resident
            new_values = (occ.first_name, occ.last_name, occ.email, occ.phone)
            if (r.first_name, r.last_name, r.email, r.phone) != new_values:
                r.first_name, r.last_name, r.email, r.phone = new_values
                r.save(update_fields=["first_name", "last_name", "email", "phone"])
                changes.append(f"occupant {seq} details")
            if current.responsible_flag != occ.responsible_flag:
                current.responsible_flag = occ.responsible_flag
                current.save(update_fields=["responsible_flag"])
                LeaseResident.objects.filter(lease_id=link.lease_id, resident=r).update(
                    responsible=occ.responsible
                )
                changes.append(f"occupant {seq} responsible -> {occ.responsible_flag}")
        for seq, gone in existing.items():
            if seq not in wanted:
                LeaseResident.objects.filter(
                    lease_id=link.lease_id, resident=gone.resident
                ).delete()
                gone.delete()
                changes.append(f"occupant {seq} no longer on the lease")
        return changes

    # -- disappearance ---------------------------------------------------------------------------
    def _deactivate_unseen(self) -> None:
        unseen = (
            AmsiLeaseLink.objects.filter(connection=self.connection, active=True).exclude(
                pk__in=self.seen_links
            )
            if len(self.seen_links) < 900
            else None
        )
        if unseen is None:
            # Large portfolios: compare in Python rather than send 100,000 ids to the database.
            # Ids only: building 100,000 model instances to find a handful cost seconds.
            unseen_ids = [
                pk
                for pk in AmsiLeaseLink.objects.filter(
                    connection=self.connection, active=True
                ).values_list("pk", flat=True)
                if pk not in self.seen_links
            ]
            unseen = [
                link
                for start in range(0, len(unseen_ids), 500)
                for link in AmsiLeaseLink.objects.filter(
                    pk__in=unseen_ids[start : start + 500]
                ).only("pk", "lease_id", "property_id", "bldg_id", "unit_id", "resi_id")
            ]
        self._deactivate(list(unseen))

    def _deactivate(self, links: list[AmsiLeaseLink]) -> None:
        for link in links:
            Lease.objects.filter(pk=link.lease_id).exclude(status=LeaseStatus.INACTIVE).update(
                status=LeaseStatus.INACTIVE, updated_at=self.now
            )
            AmsiLeaseLink.objects.filter(pk=link.pk).update(active=False, last_synced_at=self.now)
            self.run.deactivated += 1
            self.run.record_change(link.composite, "no longer listed by AMSI: marked inactive")

    def _finish_message(self) -> None:
        parts = [self.run.message] if self.run.message else []
        if self.units_created or self.units_updated:
            parts.append(f"units: {self.units_created} new, {self.units_updated} updated")
        self.run.message = "; ".join(parts + self.notes)


def _description(err: IntegrationError) -> str:
    """eSite's ErrorDescription (error_for puts it after the message's prefix)."""
    return getattr(err, "description", "") or err.message.split(": ", 1)[-1]
