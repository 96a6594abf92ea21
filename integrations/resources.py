"""Lease links in and out as CSV (django-import-export), for every provider that links by hand.

The framework adds ``LeaseLinkResource`` to the host's Lease admin (``integrations.admin.
leases``), beside the host's own lease resource: its export and import pages then offer both.

Design notes:
- One row per platform lease: ``lease`` (the platform's lease number, the import key), the unit
  by its codes (``property``, ``building``, ``unit``; never database ids), ``system`` (the
  remote's name), ``remote_id`` (the link's composite, for AMSI eSite's Rent Roll ID
  PropertyId-BldgID-UnitID-ResiID; empty when not linked), ``residents``, ``status``,
  ``balance``, ``access`` and ``access_reason`` (the effective payment access).
- An import changes links only. Every column but ``remote_id`` is read-only: a status, balance
  or access typed into the file is ignored (those belong to the accounting system and arrive
  with its sync). The unit columns are compared with the lease's unit, and a row whose unit is
  not its lease's is refused (a sorted or shifted spreadsheet). An empty ``remote_id`` and a
  link that is already the one given are skipped: an import never unlinks.
- The rules are the link form's: each row goes through ``integrations.linking.link_lease``
  (the provider's ``lease_key`` parses what was typed, for AMSI a ResiID or this unit's full
  composite, a ResiID being unique only within a unit; a lease linked elsewhere and a remote
  lease linked to another lease are refused, including twice in one file).
- Verified with the remote once per import, not once per row: the first row of a connection
  reads the remote's list of current and notice leases (the provider's ``read_leases``, as a
  resync does: two streamed calls for AMSI) and every row's key must be in it, on the lease's
  unit. When the provider says that list was incomplete, a key missing from it is asked about
  alone (``verify_lease_key``). So a 500-row file costs two remote reads, not a thousand.
- The preview is django-import-export's dry run: the same code inside a transaction that is
  rolled back, so it shows exactly which rows would link and why others are refused (each
  refusal names the lease and what is wrong). After a confirmed import each connection that
  gained a link gets one full resync, once the import has committed, which brings in status,
  balance, access and residents for the new links.
- Formula cells are neutralised by the admin (``rentplatform.admin.SafeImportExportModelAdmin``
  wraps every export of the Lease admin, this resource included).
"""

from __future__ import annotations

import functools
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from import_export import resources
from import_export.fields import Field
from import_export.widgets import IntegerWidget

from integrations import linking
from integrations.exceptions import IntegrationError, LinkRefused, ProviderConfigurationError
from integrations.importing import Feed
from integrations.logging import mask
from integrations.models import Connection, SyncKind
from integrations.providers import registry
from integrations.records import BadRecord, LeaseRecord
from integrations.services import run_sync
from rentplatform.models import Lease

Key = tuple[str, ...]
UNIT_COLUMNS = ("property", "building", "unit")


class _ListingFeed(Feed):
    """The Feed a provider's ``read_leases`` expects, for a read that is not an import run
    (Feed is built by an Importer; this read has no run, no progress and writes nothing)."""

    def __init__(self, connection: Connection):  # no super().__init__: there is no Importer
        self.run = None
        self.connection = connection
        self.property = connection.property
        self.now = timezone.now()
        self.progress = lambda text: None
        self.reasons: list[str] = []

    def incomplete(self, reason: str) -> None:
        self.reasons.append(reason)

    def say(self, text: str) -> None:
        pass


class RemoteListing:
    """The leases one connection's remote lists as current or on notice, read once: each
    key with the (building, unit) the remote has it on."""

    def __init__(self, provider):
        feed = _ListingFeed(provider.connection)
        self.units: dict[Key, tuple[str, str]] = {}
        for item in provider.read_leases(feed):
            try:
                record = item if isinstance(item, LeaseRecord) else provider.lease_record(item)
            except BadRecord:
                continue  # the import reports those; here it is simply not a linkable lease
            self.units[tuple(record.key)] = (record.building, record.unit)
        self.incomplete = feed.reasons


def _refused(lease_pk: Any, text: str, column: str = "remote_id") -> ValidationError:
    return ValidationError({column: f"lease #{lease_pk}: {text}"})


def _unit_codes(lease: Lease) -> tuple[str, str, str]:
    unit = lease.unit
    return unit.building.property.code, unit.building.code, unit.code


class LeaseLinkResource(resources.ModelResource):
    lease = Field(attribute="id", column_name="lease", widget=IntegerWidget())
    property = Field(column_name="property", readonly=True)
    building = Field(column_name="building", readonly=True)
    unit = Field(column_name="unit", readonly=True)
    system = Field(column_name="system", readonly=True)
    remote_id = Field(column_name="remote_id")  # no attribute: it is never set on the lease
    residents = Field(column_name="residents", readonly=True)
    status = Field(attribute="status", column_name="status", readonly=True)
    balance = Field(attribute="balance", column_name="balance", readonly=True)
    access = Field(column_name="access", readonly=True)
    access_reason = Field(column_name="access_reason", readonly=True)

    class Meta:
        model = Lease
        name = "Lease links to the accounting system"
        fields = (
            "lease",
            "property",
            "building",
            "unit",
            "system",
            "remote_id",
            "residents",
            "status",
            "balance",
            "access",
            "access_reason",
        )
        import_id_fields = ("lease",)
        use_transactions = True  # the preview (dry run) is rolled back

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._exported: dict[int, tuple[str, str]] | None = None  # lease pk -> (system, id)
        self._systems: dict[int, str] | None = None  # property pk -> its connection's system
        self._listings: dict[int, RemoteListing | str] = {}  # connection pk -> list or error
        self._planned: dict[int, str] = {}  # lease pk -> what was typed, when it would link
        self._gained: set[int] = set()  # connections that gained a link

    # -- export ---------------------------------------------------------------------------------
    def get_queryset(self) -> QuerySet[Lease]:
        return Lease.objects.select_related("unit__building__property").prefetch_related(
            "residents"
        )

    def export(self, queryset=None, **kwargs):
        if queryset is None:
            queryset = self.get_queryset()
        ids = queryset.values("pk") if isinstance(queryset, QuerySet) else [x.pk for x in queryset]
        self._exported = {}
        for model, system in self._link_models():
            rows = model._default_manager.filter(lease__in=ids).values_list(
                "lease_id", *model.key_fields
            )
            self._exported.update({row[0]: (system, "-".join(row[1:])) for row in rows})
        return super().export(queryset=queryset, **kwargs)

    @staticmethod
    def _link_models() -> list[tuple[type, str]]:
        seen: dict[type, str] = {}
        for provider in registry.all_providers():
            if provider.link_model is not None:
                seen.setdefault(provider.link_model, provider.system_name)
        return list(seen.items())

    def _link_of(self, lease: Lease) -> tuple[str, str] | None:
        """(system, composite) of the lease's link: from the export's map, or asked (an
        import's preview shows the link before and after each row)."""
        if self._exported is not None:
            return self._exported.get(lease.pk)
        for model, system in self._link_models():
            link = model._default_manager.filter(lease_id=lease.pk).first()
            if link is not None:
                return system, link.composite
        return None

    def _system_of(self, lease: Lease) -> str:
        if self._systems is None:
            self._systems = {}
            for connection in Connection.objects.all():
                try:
                    provider = connection.get_provider()
                except ProviderConfigurationError:
                    continue
                self._systems[connection.property_id] = provider.system_name
        return self._systems.get(lease.unit.building.property_id, "")

    def dehydrate_property(self, lease: Lease) -> str:
        return lease.unit.building.property.code

    def dehydrate_building(self, lease: Lease) -> str:
        return lease.unit.building.code

    def dehydrate_unit(self, lease: Lease) -> str:
        return lease.unit.code

    def dehydrate_system(self, lease: Lease) -> str:
        link = self._link_of(lease)
        return link[0] if link else self._system_of(lease)

    def dehydrate_remote_id(self, lease: Lease) -> str:
        link = self._link_of(lease)
        return link[1] if link else ""

    def dehydrate_residents(self, lease: Lease) -> str:
        return "; ".join(str(r) for r in lease.residents.all())

    def dehydrate_access(self, lease: Lease) -> str:
        return str(lease.effective_access.label)

    def dehydrate_access_reason(self, lease: Lease) -> str:
        return lease.effective_access.reason

    # -- import ---------------------------------------------------------------------------------
    def before_import(self, dataset, **kwargs):
        missing = [c for c in ("lease", "remote_id") if c not in (dataset.headers or [])]
        if missing:
            raise ValueError(f"the file has no {' or '.join(missing)} column")

    def get_instance(self, instance_loader, row):
        value = str(row.get("lease") or "").strip()
        if not value.isdigit():
            raise ValidationError({"lease": f"{value!r} is not a platform lease number"})
        return super().get_instance(instance_loader, row)

    def init_instance(self, row=None):
        raise ValidationError(
            {
                "lease": f"there is no lease #{row.get('lease')}: an import links leases, it never "
                "creates them"
            }
        )

    def import_instance(self, instance: Lease, row, **kwargs):
        """Checks the row (no field of the lease is set: all but ``remote_id`` are
        read-only); what would link is kept for ``save_instance``."""
        lease = instance
        named = tuple(str(row.get(c) or "").strip() for c in UNIT_COLUMNS)
        actual = _unit_codes(lease)
        if any(n and n != a for n, a in zip(named, actual, strict=True)):
            raise _refused(
                lease.pk,
                f"the row names unit {'/'.join(named)} but the lease is on unit "
                f"{'/'.join(actual)} (rows shifted? correct the lease number or the unit)",
                column="unit",
            )
        typed = str(row.get("remote_id") or "").strip()
        self._planned.pop(lease.pk, None)
        if not typed:
            return  # skipped: an import never unlinks
        try:
            connection = linking.connection_for(lease)
            provider = connection.get_provider()
            key, _note = provider.lease_key(lease, typed)
        except LinkRefused as err:
            raise _refused(lease.pk, err.message) from err
        except (IntegrationError, ProviderConfigurationError) as err:
            raise _refused(lease.pk, f"the connection is not usable: {mask(str(err))}") from err
        current = self._link_of(lease)
        if current is not None and current[1] == "-".join(key):
            return  # already this link: skipped
        self._verify(provider, lease, key)
        self._planned[lease.pk] = typed

    def _verify(self, provider, lease: Lease, key: Key) -> None:
        connection = provider.connection
        system = provider.system_name
        composite = "-".join(key)
        listing = self._listings.get(connection.pk)
        if listing is None:
            try:
                listing = RemoteListing(provider)
            except IntegrationError as err:
                listing = f"could not read {system}'s leases: {mask(str(err))}"
            self._listings[connection.pk] = listing
        if isinstance(listing, str):
            raise _refused(lease.pk, f"{composite} not verified: {listing}")
        where = listing.units.get(tuple(key))
        unit = _unit_codes(lease)[1:]
        if where is None and listing.incomplete:
            try:  # the list was not read whole: ask about this one key
                provider.verify_lease_key(lease, key)
            except LinkRefused as err:
                raise _refused(lease.pk, err.message) from err
            except IntegrationError as err:
                raise _refused(lease.pk, f"could not verify {composite}: {mask(str(err))}") from err
        elif where is None:
            raise _refused(lease.pk, f"{system} has no current or notice lease {composite}")
        elif where != unit:
            raise _refused(
                lease.pk,
                f"{system} lease {composite} is on unit {'-'.join(where)}, not on the "
                f"lease's unit {'-'.join(unit)}",
            )

    def skip_row(self, instance, original, row, import_validation_errors=None):
        if import_validation_errors:
            return False  # reported, not skipped
        return instance.pk not in self._planned

    def save_instance(self, instance: Lease, is_create, row, **kwargs):
        """Links; the lease row itself is never saved (none of its fields are imported)."""
        user = kwargs.get("user")
        try:
            linking.link_lease(
                instance,
                self._planned[instance.pk],
                triggered_by=f"lease link import:{user or ''}",
                sync=False,
                verified=True,
            )
        except LinkRefused as err:
            raise _refused(instance.pk, err.message) from err
        self._gained.add(linking.connection_for(instance).pk)

    def after_import(self, dataset, result, **kwargs):
        if kwargs.get("dry_run", True) or not self._gained:
            return
        by = f"lease link import:{kwargs.get('user') or ''}"
        for pk in sorted(self._gained):
            transaction.on_commit(functools.partial(_resync, pk, by))


def _resync(connection_pk: int, triggered_by: str) -> None:
    """After an import has committed: status, balance, access and residents of the new links."""
    connection = Connection.objects.select_related("property").get(pk=connection_pk)
    run_sync(connection, SyncKind.FULL, triggered_by=triggered_by)
