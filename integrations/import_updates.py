"""Leases an import or resync finds changed (their digest moved): compared and written a chunk
at a time (``integrations.importing``'s ``Importer`` mixes this in)."""

from __future__ import annotations

from typing import Any

from integrations.records import LeaseRecord, OccupantRecord
from rentplatform.bulk import fast_update
from rentplatform.services import imports as host

# A changed lease: its link's id, its lease's id, whether the link is active, the record, its
# digest.
Changed = tuple[int, int, bool, LeaseRecord, str]


class _Writes:
    """What a chunk of changed leases writes in bulk once compared."""

    def __init__(self):
        self.leases: list = []
        self.residents: list = []
        self.occupants: dict[tuple[str, ...], list[dict]] = {}  # by the fields that moved
        self.responsible: list[tuple[int, int, bool]] = []


class ChangedLeases:
    """The Importer's writes for changed leases (it supplies links, occupant_links, run,
    system, now, access_changes and _link_row)."""

    def _update(self, changed: list[Changed]) -> None:
        """Leases whose digest changed, a chunk at a time: read in two queries (their leases,
        locked, and their occupants), compared in memory, written in bulk. Only an occupant
        added or removed costs statements of its own (rare: people move in and out)."""
        pks = [pk for pk, *_rest in changed]
        leases = host.leases_for_update(lease_id for _pk, lease_id, *_rest in changed)
        occupants: dict[int, dict[str, Any]] = {pk: {} for pk in pks}
        for occ in self.occupant_links.objects.filter(lease_link_id__in=pks).select_related(
            "resident"
        ):
            occupants[occ.lease_link_id][occ.remote_key] = occ
        w = _Writes()
        link_rows = []
        for pk, lease_id, active, rec, digest in changed:
            lease = leases[lease_id]
            changes = host.lease_changes(lease, rec.lease_values(lease.status))
            if host.access_changed(lease, rec.access, rec.access_reason, self.now):
                reason = f" ({rec.access_reason})" if rec.access_reason else ""
                changes.append(f"payment access -> {rec.access}{reason}")
                self.access_changes += 1
            if changes:
                w.leases.append(lease)
            changes += self._sync_occupants(pk, lease.pk, rec.occupants, occupants[pk], w)
            if not active and rec.payable:
                changes.append(f"listed again by {self.system}: reactivated")
            # Only a payable listing reactivates a link.
            link_rows.append(
                {"pk": pk, **self._link_row(rec, digest), "active": active or rec.payable}
            )
            self.run.updated += 1
            self.run.record_change(
                rec.label, "; ".join(changes) or f"{self.system} details updated"
            )
        host.save_leases(w.leases)
        host.save_residents(w.residents)
        for fields, rows in w.occupants.items():
            fast_update(self.occupant_links, rows, list(fields))
        host.set_responsible_many(w.responsible)
        fast_update(self.links, link_rows, [f for f in link_rows[0] if f != "pk"])

    def _sync_occupants(
        self, link_pk: int, lease_id: int, occupants: list[OccupantRecord], existing: dict, w
    ) -> list[str]:
        key_field = self.occupant_links.key_field
        changes = []
        wanted = {o.key: o for o in occupants}
        for key, occ in wanted.items():
            current = existing.get(key)
            if current is None:
                linked = [o.resident_id for o in existing.values()]
                resident = host.unlinked_member(
                    lease_id, linked, occ.email, occ.first_name, occ.last_name
                )
                if resident is not None:
                    # The tenant a person added by hand is this occupant: adopt, don't
                    # duplicate (their portal login stays with them).
                    host.set_responsible(lease_id, resident.pk, occ.responsible)
                    changes.append(f"occupant {key} matched to {resident} (added by hand)")
                else:
                    resident = host.add_resident(lease_id, occ.person, occ.responsible)
                    changes.append(f"occupant {key} added")
                self.occupant_links.objects.create(
                    lease_link_id=link_pk, resident=resident, **{key_field: key}, **occ.link_fields
                )
                continue
            if host.resident_changed(current.resident, occ.person):
                w.residents.append(current.resident)
                changes.append(f"occupant {key} details")
            moved = {k: v for k, v in occ.link_fields.items() if getattr(current, k) != v}
            if moved:
                w.occupants.setdefault(tuple(sorted(moved)), []).append({"pk": current.pk, **moved})
                w.responsible.append((lease_id, current.resident_id, occ.responsible))
                changes += [f"occupant {key} {name} -> {value}" for name, value in moved.items()]
        for key, gone in existing.items():
            if key not in wanted:
                host.remove_resident(lease_id, gone.resident_id)
                gone.delete()
                changes.append(f"occupant {key} no longer on the lease")
        return changes
