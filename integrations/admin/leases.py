"""The lease actions of the accounting integration, added to the host's Lease admin.

"Sync this lease from the accounting system now" and "Link to the accounting system's lease"
exist once, here, for every provider: each lease's property's connection says which provider
does the work (``services.run_sync`` and ``integrations.linking``); a provider contributes
hooks and texts (``link_label``, ``link_help``, ``system_name``), never an admin. The lease
links also go in and out as CSV (``integrations.resources.LeaseLinkResource``), offered beside
the host's own resources on the export and import pages when the host's admin is a
django-import-export one; importing links needs the same permission as the link action.

Design note: how the actions reach the host's Lease admin. The host knows nothing of the
integration (it only sends signals), so it cannot list these actions, and Django has no
per-model registry of actions to add to. The framework therefore extends whatever ModelAdmin
the host registered for Lease, once, in this module (``install``, called when the admin
modules are loaded): it subclasses that class with ``LeaseAccountingActions`` and registers
the subclass in its place. The host's admin stays whole (its actions, permissions, pages), a
host that registers another Lease admin gets the same actions, and no provider touches the
host's admin. This relies on ``rentplatform`` coming before ``integrations`` in
INSTALLED_APPS (autodiscover loads admin modules in that order); a host without a Lease admin
gets none.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from integrations import linking, services
from integrations.forms import LeaseLinkForm
from integrations.models import Connection, SyncKind
from integrations.resources import LeaseLinkResource
from rentplatform.models import Lease

from .base import run_level


class LeaseAccountingActions:
    """Mixed into the host's Lease admin by ``install``."""

    accounting_actions = ["sync_lease_now", "link_lease"]

    def has_run_sync_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("integrations.run_sync")

    def has_run_import_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("integrations.run_import")

    def get_import_resource_classes(self, request: HttpRequest) -> list[type]:
        classes = super().get_import_resource_classes(request)
        if self.has_run_import_permission(request):
            return classes
        return [c for c in classes if c is not LeaseLinkResource]

    @admin.action(
        description="Sync this lease from the accounting system now", permissions=["run_sync"]
    )
    def sync_lease_now(self, request: HttpRequest, queryset: QuerySet[Lease]) -> None:
        for lease in queryset.select_related("unit__building__property"):
            connection = Connection.objects.filter(property=lease.property, enabled=True).first()
            if connection is None:
                self.message_user(
                    request, f"{lease}: its property has no enabled connection", messages.ERROR
                )
                continue
            run = services.run_sync(
                connection, SyncKind.LEASE, lease_id=lease.pk, triggered_by=f"admin:{request.user}"
            )
            self.message_user(request, f"{lease}: {run.summary()}", run_level(run))

    @admin.action(description="Link to the accounting system's lease", permissions=["run_import"])
    def link_lease(self, request: HttpRequest, queryset: QuerySet[Lease]) -> HttpResponse | None:
        """Asks for the remote lease id on an intermediate page, verifies it, links, syncs."""
        leases = list(queryset.select_related("unit__building__property")[:2])
        if len(leases) != 1:
            self.message_user(request, "Select exactly one lease to link.", messages.ERROR)
            return None
        lease = leases[0]
        try:
            provider = linking.connection_for(lease).get_provider()
        except linking.LinkRefused as err:
            self.message_user(request, f"{lease}: {err.message}", messages.ERROR)
            return None
        form = LeaseLinkForm(provider, request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            try:
                result = linking.link_lease(
                    lease,
                    form.cleaned_data["remote_id"],
                    triggered_by=f"admin link:{request.user}",
                )
            except linking.LinkRefused as err:
                form.add_error("remote_id", err.message)
            else:
                level = run_level(result.run) if result.run else messages.SUCCESS
                self.message_user(request, result.message, level)
                return None
        context = {
            **self.admin_site.each_context(request),
            "title": f"Link to {provider.name} lease",
            "opts": self.model._meta,
            "form": form,
            "lease": lease,
            "provider": provider,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/integrations/link_lease.html", context)


def install(site: admin.AdminSite) -> None:
    """Register, for Lease, the host's admin class extended with the accounting actions."""
    if not site.is_registered(Lease):
        return
    host = type(site.get_model_admin(Lease))
    if issubclass(host, LeaseAccountingActions):
        return  # already extended (this module imported again)
    attrs = {
        "__module__": __name__,
        "__doc__": f"{host.__module__}.{host.__name__} with the accounting lease actions.",
        "actions": [*(host.actions or []), *LeaseAccountingActions.accounting_actions],
    }
    if hasattr(host, "get_import_resource_classes"):  # a django-import-export admin
        attrs["resource_classes"] = [*(host.resource_classes or []), LeaseLinkResource]
    extended = type(host.__name__, (LeaseAccountingActions, host), attrs)
    site.unregister(Lease)
    site.register(Lease, extended)


install(admin.site)
