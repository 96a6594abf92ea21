"""Every admin action registered in the project sits behind its own permission: a staff user
holding everything else neither gets the action nor changes anything with a forged POST.

The table is built from ``admin.site._registry``, so an action added later is covered (and
fails here if it has no permission of its own)."""

from __future__ import annotations

from typing import Any

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.test import Client, RequestFactory
from django.urls import reverse

from integrations.models import Posting, PostingState
from rentplatform import services
from rentplatform.models import Lease, Payment
from tests.factories import UserFactory, lease_with_resident

SNAPSHOT_APPS = ("auth", "rentplatform", "integrations", "integrations_amsi", "django_q")


def _actions() -> list[Any]:
    rows = []
    for model, model_admin in admin.site._registry.items():
        for action in model_admin._get_base_actions():
            # Django 6.1 returns Action objects (unpacking them is deprecated); 5.2 tuples.
            func = getattr(action, "func", None) or action[0]
            name = getattr(action, "name", None) or action[1]
            perms = tuple(getattr(func, "allowed_permissions", ()))
            rows.append(pytest.param(model, name, perms, id=f"{model._meta.label}.{name}"))
    return sorted(rows, key=lambda r: r.id)


ACTIONS = _actions()


def test_every_action_names_a_permission():
    """An action without ``permissions=[...]`` is offered to every staff user with view access.
    django-q2's own resubmit names none; IntegrationsConfig.ready() requires "change" for it."""
    assert ACTIONS
    bare = [row.id for row in ACTIONS if not row.values[2]]
    assert bare == []


def _user(excluding: tuple[str, ...] = ()) -> Any:
    """Staff with every permission except those named like the action's (``run_sync``, or
    ``delete`` for all ``delete_*``)."""
    user = UserFactory(is_staff=True)
    perms = Permission.objects.all()
    for name in excluding:
        perms = perms.exclude(codename=name).exclude(codename__startswith=f"{name}_")
    user.user_permissions.set(perms)
    return type(user).objects.get(pk=user.pk)


def _snapshot() -> str:
    """Every row's values (not serialised JSON: Fernet tokens differ on each encryption)."""
    models = [m for label in SNAPSHOT_APPS for m in apps.get_app_config(label).get_models()]
    return repr([list(m._default_manager.order_by("pk").values()) for m in models])


@pytest.fixture
def admin_world(world, deliver):
    """Rows every action can act on: leases (one platform-blocked), a processing ACH payment,
    a settled card batch, a posting needing attention, the connection."""
    with deliver():
        card = world.pay("001-01-101-1", "20.00", "card")
        ach = world.pay("001-01-102-2", "21.00", "ach")
    services.settle_payment(card)
    lease = world.lease("001-01-103-3")
    services.block_lease(lease, "old reason")
    # A second provider's connection: the one connection admin serves both.
    from integrations.models import Connection
    from tests.factories import PropertyFactory

    Connection.objects.create(property=PropertyFactory(), provider="fake")
    Posting.objects.filter(payment=card).update(
        state=PostingState.NEEDS_ATTENTION, last_error="test"
    )
    # An unconfirmed posting, for "found" and "not there, post it".
    Posting.objects.filter(payment=ach).update(
        state=PostingState.UNCONFIRMED, outcome_unknown=True, last_error="reply lost"
    )
    # A failed and a successful django-q2 task, for the "resubmit" action of their admins (the
    # platform stores no successes itself: save_limit -1; an older install may hold some).
    from django.utils import timezone
    from django_q.models import Task

    for n, success in enumerate((False, True)):
        Task.objects.create(
            id=("f", "s")[n] * 32,
            name=f"{'successful' if success else 'failed'}-sweep",
            func="integrations.tasks.retry_sweep",
            started=timezone.now(),
            stopped=timezone.now(),
            success=success,
            attempt_count=1,
        )
    return world


def _selection(model: type, name: str = "") -> list[str]:
    if model is Posting and name in ("mark_found", "post_unconfirmed"):
        return [
            str(pk)
            for pk in Posting.objects.filter(state="unconfirmed").values_list("pk", flat=True)
        ]
    if model is Lease and Lease.objects.filter(platform_blocked=True).exists():
        return [str(Lease.objects.get(platform_blocked=True).pk)]
    if model is Payment and Payment.objects.filter(method="ach").exists():
        return [str(Payment.objects.get(method="ach").pk)]
    return [str(pk) for pk in model._default_manager.values_list("pk", flat=True)]


# Actions whose effect needs more than a forged POST can give (checked elsewhere): linking
# needs an unlinked lease and a ResiID that AMSI confirms for its unit; deleting is stopped by
# PROTECT foreign keys on most of these rows (Django's own delete_selected is tested upstream).
NO_POSITIVE_CHECK = {"link_lease", "delete_selected"}


@pytest.mark.parametrize("model,name,perms", ACTIONS)
def test_action_refused_without_its_permission(request, db, model, name, perms):
    """Without ``@admin.action(permissions=...)`` (or with a ``has_*_permission`` that ignores
    the user), the action would be listed and the forged POST would change rows."""
    model_admin = admin.site._registry[model]
    fake = RequestFactory().get("/")
    allowed, refused = _user(), _user(excluding=perms)
    fake.user = refused
    assert name not in model_admin.get_actions(fake)
    fake.user = allowed
    if name not in model_admin.get_actions(fake):
        return  # nobody may run it here (a read-only admin's delete_selected)
    # Rows to act on: the AMSI world where the action needs it, plain host rows otherwise
    # (starting a sandbox for every delete_selected would double this file's run time).
    if name == "delete_selected" and model._meta.app_label in ("auth", "django_q", "rentplatform"):
        lease, resident = lease_with_resident()
        services.accept_payment(lease, "5.00", "card", resident=resident)
    else:
        request.getfixturevalue("admin_world")
        if name == "send_again":  # a report is emailed (and sent again) once deposited
            services.deposit_batch(Payment.objects.get(method="card").batch)

    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    form = {
        "action": name,
        ACTION_CHECKBOX_NAME: _selection(model, name),
        "index": "0",
        "apply": "1",
        "post": "yes",  # delete_selected's confirmation
        "reason": "forged block",
        "remote_id": "3",  # link_lease's remote lease id (an AMSI ResiID here)
        "receipt": "4711",  # mark_found's receipt number
        "note": "forged note",  # resolve's and abandon's note
    }
    client = Client()
    client.force_login(refused)
    before = _snapshot()
    response = client.post(url, form)
    assert response.status_code in (200, 302)
    assert _snapshot() == before, f"{name} changed rows for a user without {perms}"

    if name in NO_POSITIVE_CHECK:
        return
    client.force_login(allowed)
    before = _snapshot()
    client.post(url, form)
    assert _snapshot() != before, f"{name} did nothing even with {perms}: the check is empty"
