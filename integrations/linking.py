"""Link a platform lease to its lease in the accounting system, from the id a person typed.

Design notes:
- A tenant added or approved on the platform has no link to the remote's lease until a person
  says which one it is (the admin action "Link to the accounting system's lease" and
  ``POST /api/integrations/leases/<id>/link/``, both here). The framework owns the sequence;
  the lease's connection's provider fills two hooks: ``lease_key`` turns what was typed into
  the remote key (and refuses, in words a manager reads, what cannot be this lease's), and
  ``verify_lease_key`` asks the remote whether it lists that key. Nothing is saved unless the
  remote has it.
- The link row is the provider's ``link_model`` (a subclass of
  ``integrations.models.links.RemoteLeaseLink``), marked ``linked_by_hand``. A lease already
  linked to another remote lease, or a remote lease already linked to another platform lease,
  is refused; linking again to the same remote lease is harmless (verified, then synced).
- After linking, a one-lease sync brings in status, balance, payment access and occupants.
- A provider that cannot link by hand says so (``links_leases = False``): the action and the
  API then refuse with that sentence rather than fail.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import IntegrityError, transaction

from integrations.exceptions import IntegrationError, LinkRefused, ProviderConfigurationError
from integrations.logging import mask
from integrations.models import Connection, SyncKind, SyncRun
from integrations.services import run_sync
from rentplatform.models import Lease

__all__ = ["LinkRefused", "LinkResult", "connection_for", "link_lease"]


@dataclass
class LinkResult:
    lease_id: int
    remote_id: str  # the remote key as a person reads it (the link's ``composite``)
    system: str  # how messages name the remote system (the provider's ``system_name``)
    note: str = ""  # what was taken from the input, when it was not the bare id
    run: SyncRun | None = None  # the one-lease sync after linking

    @property
    def message(self) -> str:
        text = f"lease #{self.lease_id} linked to {self.system} lease {self.remote_id}"
        if self.note:
            text = f"{self.note}; {text}"
        if self.run is not None:
            text += f". Sync: {self.run.summary()}"
        return text


def connection_for(lease: Lease) -> Connection:
    """The lease's property's connection, when its provider links leases by hand."""
    connection = Connection.objects.filter(property_id=lease.unit.building.property_id).first()
    if connection is None:
        raise LinkRefused(f"property {lease.property.code} has no accounting connection")
    try:
        provider = connection.get_provider()
    except ProviderConfigurationError as err:
        raise LinkRefused(str(err)) from err
    if not provider.links_leases:
        raise LinkRefused(f"{provider.name} leases are not linked by hand")
    return connection


def link_lease(
    lease: Lease, typed: str, *, triggered_by: str = "", sync: bool = True, verified: bool = False
) -> LinkResult:
    """Verify what was typed with the remote for this lease, save the link, sync the lease.

    ``verified``: the caller has already seen the key in the remote's list (the lease-link CSV
    import reads that list once for all its rows, integrations.resources), so the remote is not
    asked again for this one key; every other rule applies as for a single link.
    """
    lease = Lease.objects.select_related("unit__building__property").get(pk=lease.pk)
    connection = connection_for(lease)
    provider = connection.get_provider()
    system = provider.system_name
    try:
        key, note = provider.lease_key(lease, typed)
    except (IntegrationError, ProviderConfigurationError) as err:
        raise LinkRefused(f"the {system} connection is not usable: {err}") from err
    links = provider.link_model._default_manager
    fields = dict(zip(provider.link_model.key_fields, key, strict=True))
    composite = "-".join(key)
    existing = links.filter(lease=lease).first()
    if existing is not None and existing.key != key:
        raise LinkRefused(
            f"lease #{lease.pk} is already linked to {system} lease {existing.composite}"
        )
    other = links.filter(connection=connection, **fields).exclude(lease=lease).first()
    if other is not None:
        raise LinkRefused(
            f"{system} lease {composite} is already linked to lease #{other.lease_id}"
        )
    try:
        if not verified:
            provider.verify_lease_key(lease, key)
    except IntegrationError as err:
        raise LinkRefused(f"could not verify {composite} with {system}: {mask(str(err))}") from err
    if existing is None:
        try:
            with transaction.atomic():
                links.create(connection=connection, lease=lease, linked_by_hand=True, **fields)
        except IntegrityError as err:  # a concurrent link of the same lease or key
            raise LinkRefused(f"{system} lease {composite} was linked meanwhile") from err
    run = None
    if sync:
        run = run_sync(connection, SyncKind.LEASE, lease_id=lease.pk, triggered_by=triggered_by)
    return LinkResult(lease_id=lease.pk, remote_id=composite, system=system, note=note, run=run)
