"""The bad-input catalogue: hostile or malformed input at every door (portal, API, admin forms,
management commands, eDex replies). Each case expects a clear error that names the field or
record, and no change to the rows that matter (row counts before and after)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from lxml import etree

from integrations.models import Connection, Posting, SyncRun
from integrations_amsi.forms import AmsiConnectionForm
from integrations_amsi.mapping import lease_record
from integrations_amsi.models import AmsiLeaseLink
from integrations_amsi.xmldocs import parse_document, parse_ledger_result
from rentplatform.models import Lease, Payment, Property, Reversal, Unit
from rentplatform.services import accept_payment
from tests.factories import UserFactory, lease_with_resident, staff_user

pytestmark = pytest.mark.django_db

COMPOSITE = "001-01-101-21"
SQL = "1; DROP TABLE payments"
ARABIC = "١٢٣"  # Arabic-Indic digits: Decimal() reads them as 123
LONG = "9" * 5000


@dataclass
class Ctx:
    """What a case acts on: a resident's lease (host cases) or the AMSI world (amsi cases)."""

    lease: Lease
    resident_client: Client
    staff_client: Client
    payment: Payment
    world: Any = None
    unlinked: Lease | None = None


def _host_ctx() -> Ctx:
    lease, resident = lease_with_resident()
    payment = accept_payment(lease, "10.00", "card", resident=resident)
    resident_client, staff_client = Client(), Client()
    resident_client.force_login(resident.user)
    staff_client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return Ctx(lease, resident_client, staff_client, payment)


def _amsi_ctx(world: Any) -> Ctx:
    ctx = _host_ctx()
    ctx.world = world
    unit = Unit.objects.get(building__property=world.property, building__code="01", code="101")
    ctx.unlinked = Lease.objects.create(unit=unit, status="active")
    ctx.staff_client.force_login(staff_user("integrations.run_import", "integrations.run_sync"))
    return ctx


def _counts() -> dict[str, int]:
    models = (Payment, Reversal, Posting, Lease, Connection, SyncRun, AmsiLeaseLink, Property)
    return {m.__name__: m.objects.count() for m in models}


# -- how each door reports an error -----
def _json_error(response) -> str:
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])
    return json.dumps(response.json(), ensure_ascii=False)


def portal_pay(amount: str, method: str = "card") -> Callable[[Ctx], str]:
    def run(ctx: Ctx) -> str:
        url = reverse("portal:pay", args=[ctx.lease.pk])
        response = ctx.resident_client.post(url, {"amount": amount, "method": method})
        assert response.status_code == 200, "the form was accepted"
        return json.dumps(response.context["form"].errors, ensure_ascii=False)

    return run


def api_pay(body: Any, raw: str | None = None) -> Callable[[Ctx], str]:
    def run(ctx: Ctx) -> str:
        url = reverse("api:lease-payments", args=[ctx.lease.pk])
        data = raw if raw is not None else json.dumps(body)
        return _json_error(ctx.resident_client.post(url, data, content_type="application/json"))

    return run


def api_void(public_id: str) -> Callable[[Ctx], str]:
    def run(ctx: Ctx) -> str:
        url = reverse("api:payment-void", args=[public_id])
        return _json_error(ctx.resident_client.post(url))

    return run


def amsi_link(resi_id: Any) -> Callable[[Ctx], str]:
    def run(ctx: Ctx) -> str:
        url = f"/api/amsi/leases/{ctx.unlinked.pk}/link/"
        body = json.dumps({"resi_id": resi_id})
        return _json_error(ctx.staff_client.post(url, body, content_type="application/json"))

    return run


def sync_api(body: Any) -> Callable[[Ctx], str]:
    def run(ctx: Ctx) -> str:
        staff = Client()
        staff.force_login(staff_user("integrations.run_sync"))
        url = "/api/integrations/sync/"
        return _json_error(staff.post(url, json.dumps(body), content_type="application/json"))

    return run


def property_add(**fields: str) -> Callable[[Ctx], str]:
    def run(ctx: Ctx) -> str:
        data = {
            "code": "newprop",
            "name": "New",
            "time_zone": "America/Chicago",
            "manager_emails": "m@example.test",
            **fields,
        }
        response = ctx.staff_client.post(reverse("admin:rentplatform_property_add"), data)
        assert response.status_code == 200, "the add form was accepted"
        return json.dumps(response.context["adminform"].form.errors, ensure_ascii=False)

    return run


def amsi_form(**fields: str) -> Callable[[Ctx], str]:
    def run(ctx: Ctx) -> str:
        data = {
            "property": str(ctx.lease.property.pk),
            "enabled": "on",
            "url": "http://127.0.0.1:9/edexweb/esite",
            "portfolio": "DEMO",
            "user_id": "u",
            "password": "pw-123456",
            "property_id": "001",
            "merchant_id": "1",
            "close_cutoff": "22:00",
            "time_zone": "America/Chicago",
            "timeout": "10",
            **fields,
        }
        form = AmsiConnectionForm(data=data)
        assert not form.is_valid(), "the connection form was accepted"
        return json.dumps(form.errors, ensure_ascii=False)

    return run


def command(name: str, *args: str) -> Callable[[Ctx], str]:
    def run(ctx: Ctx) -> str:
        argv = [a.format(lease=ctx.lease.pk, prop=ctx.lease.property.code) for a in args]
        with pytest.raises(CommandError) as info:
            call_command(name, *argv, stdout=StringIO(), stderr=StringIO())
        return str(info.value)

    return run


def reply(parse: Callable[[str], Any], document: str) -> Callable[[Ctx], str]:
    def run(ctx: Ctx) -> str:
        with pytest.raises(ValueError) as info:
            parse(document)
        return str(info.value)

    return run


def _lease() -> Callable[[str], Any]:
    return lambda doc: lease_record(parse_document(doc, what="residents"))


LEASE_OK = {
    "PropertyId": "001",
    "BldgID": "01",
    "UnitID": "101",
    "ResiID": "1",
    "EndBalance": "10.00",
    "leasebegindate": "01/01/2026",
}


def lease_doc(**attrs: str) -> str:
    el = etree.Element("Lease", {**LEASE_OK, **attrs})
    return etree.tostring(el, encoding="unicode")


def ledger_reply(body: str) -> Callable[[str], Any]:
    return lambda doc: parse_ledger_result(doc, what="AddPayment result")


@dataclass
class Case:
    id: str
    run: Callable[[Ctx], str]
    expect: str  # a substring (case-insensitive) the error must contain
    kind: str = "host"  # "amsi": needs the sandbox world
    marks: list[Any] = field(default_factory=list)


CASES = [
    # portal pay form
    Case("portal-empty-amount", portal_pay(""), "amount"),
    Case("portal-three-places", portal_pay("10.005"), "more than two decimal places"),
    Case("portal-negative-zero", portal_pay("-0.00"), "greater than zero"),
    Case("portal-nan", portal_pay("NaN"), "not a finite number"),
    Case("portal-infinity", portal_pay("Infinity"), "not a finite number"),
    Case("portal-arabic-digits", portal_pay(ARABIC), "digits 0-9"),
    Case("portal-huge", portal_pay("100000000000"), "limit"),
    Case("portal-sql", portal_pay(SQL), "at most 20 characters"),
    Case("portal-sql-short", portal_pay("1 OR 1=1"), "not a number"),
    Case("portal-long", portal_pay(LONG), "at most 20 characters"),
    Case("portal-bad-method", portal_pay("10.00", "bitcoin"), "method"),
    # API payments
    Case("api-float", api_pay({"amount": 10.5, "method": "card"}), "floats lose cents"),
    Case("api-three-places", api_pay({"amount": "10.005", "method": "card"}), "two decimal"),
    Case("api-negative-zero", api_pay({"amount": "-0.00", "method": "card"}), "greater than zero"),
    Case("api-nan-string", api_pay({"amount": "NaN", "method": "card"}), "amount"),
    # DRF's strict JSON parser refuses the body before any field is read.
    Case("api-nan-literal", api_pay(None, raw='{"amount": NaN, "method": "card"}'), "'NaN'"),
    Case(
        "api-infinity-literal",
        api_pay(None, raw='{"amount": Infinity, "method": "card"}'),
        "'Infinity'",
    ),
    Case("api-arabic-digits", api_pay({"amount": ARABIC, "method": "card"}), "amount"),
    Case("api-huge-int", api_pay({"amount": 10**30, "method": "card"}), "amount"),
    Case("api-sql", api_pay({"amount": SQL, "method": "card"}), "amount"),
    Case("api-empty", api_pay({"amount": "", "method": ""}), "amount"),
    Case("api-unknown-field", api_pay({"amount": "1.00", "method": "card", "lease": 1}), "lease"),
    Case(
        "api-long-key",
        api_pay({"amount": "1.00", "method": "card", "idempotency_key": "k" * 200}),
        "idempotency_key",
    ),
    Case("api-not-json", api_pay(None, raw="amount=10"), "JSON"),
    # API void
    Case("void-sql-id", api_void(SQL), "payment"),
    Case("void-unicode-id", api_void("ⅰⅱⅲ"), "payment"),
    # AMSI link endpoint
    Case("link-composite-other-unit", amsi_link("001-01-102-2"), "ResiID", kind="amsi"),
    Case("link-sql", amsi_link(SQL), "ResiID", kind="amsi"),
    Case("link-arabic-digits", amsi_link(ARABIC), "ResiID", kind="amsi"),
    Case("link-empty", amsi_link(""), "resi_id", kind="amsi"),
    Case("link-long", amsi_link("1" * 200), "resi_id", kind="amsi"),
    Case("link-number-not-string", amsi_link(["21"]), "resi_id", kind="amsi"),
    # sync endpoint
    Case("sync-composite-lease", sync_api({"lease": COMPOSITE}), "lease"),
    Case("sync-negative-lease", sync_api({"lease": -1}), "lease"),
    Case("sync-float-lease", sync_api({"lease": 10.5}), "lease"),
    Case("sync-long-property", sync_api({"property": "p" * 100}), "property"),
    Case("sync-empty", sync_api({}), "property"),
    # admin forms
    Case("property-bad-time-zone", property_add(time_zone="Mars/Olympus"), "time_zone"),
    Case("property-path-time-zone", property_add(time_zone="../../etc/localtime"), "time_zone"),
    Case("property-empty-time-zone", property_add(time_zone=""), "time_zone"),
    Case("property-bad-emails", property_add(manager_emails="not-an-email"), "manager_emails"),
    Case(
        "property-sql-emails", property_add(manager_emails=f"a@b.example, {SQL}"), "manager_emails"
    ),
    Case("amsi-form-nan-timeout", amsi_form(timeout="NaN"), "timeout"),
    Case("amsi-form-bad-url", amsi_form(url="javascript:alert(1)"), "url"),
    Case("amsi-form-bad-cutoff", amsi_form(close_cutoff="25:99"), "close_cutoff"),
    # management commands
    Case(
        "processor-three-places",
        command("processor", "pay", "--lease", "{lease}", "--amount", "10.005", "--method", "card"),
        "decimal places",
    ),
    Case(
        "processor-nan",
        command("processor", "pay", "--lease", "{lease}", "--amount", "NaN", "--method", "card"),
        "amount",
    ),
    Case(
        "processor-negative-zero",
        command("processor", "pay", "--lease", "{lease}", "--amount", "-0.00", "--method", "card"),
        "greater than zero",
    ),
    Case(
        "processor-arabic",
        command("processor", "pay", "--lease", "{lease}", "--amount", ARABIC, "--method", "card"),
        "amount",
    ),
    Case(
        "processor-no-lease",
        command("processor", "pay", "--lease", "999999", "--amount", "1.00", "--method", "card"),
        "lease",
    ),
    Case(
        "processor-composite-lease",
        command("processor", "pay", "--lease", COMPOSITE, "--amount", "1.00", "--method", "card"),
        "--lease",
    ),
    Case(
        "amsi-connect-bad-zone",
        command(
            "amsi_connect",
            "{prop}",
            "--url",
            "http://127.0.0.1:9/edexweb/esite",
            "--portfolio",
            "P",
            "--user",
            "u",
            "--property-id",
            "001",
            "--merchant-id",
            "7",
            "--time-zone",
            "Mars/Olympus",
        ),
        "time zone",
    ),
    Case(
        "amsi-connect-nan-timeout",
        command(
            "amsi_connect",
            "{prop}",
            "--url",
            "http://127.0.0.1:9/edexweb/esite",
            "--portfolio",
            "P",
            "--user",
            "u",
            "--property-id",
            "001",
            "--merchant-id",
            "7",
            "--timeout",
            "nan",
        ),
        "timeout",
    ),
    Case("sync-command-composite", command("integrations_sync", "--lease", COMPOSITE), "--lease"),
    Case(
        "sync-command-missing-lease",
        command("integrations_sync", "--lease", "999999"),
        "lease 999999",
    ),
    Case("reconcile-month-13", command("integrations_reconcile", "--month", "2026-13"), "month"),
    Case(
        "reconcile-month-words", command("integrations_reconcile", "--month", "last month"), "month"
    ),
    Case(
        "reconcile-month-fullwidth",
        command("integrations_reconcile", "--month", "２０２６-０１"),
        "month",
    ),
    # eDex replies
    Case(
        "reply-no-error-code",
        reply(ledger_reply(""), "<Payments><Payment/></Payments>"),
        "ErrorCode",
    ),
    Case("reply-not-xml", reply(ledger_reply(""), "Server Error"), "AddPayment result"),
    Case("reply-empty", reply(ledger_reply(""), ""), "AddPayment result"),
    Case("lease-missing-resi-id", reply(_lease(), lease_doc(ResiID="")), "lease without ResiID"),
    Case(
        "lease-bad-date", reply(_lease(), lease_doc(leasebegindate="02/30/2026")), "leasebegindate"
    ),
    Case("lease-words-date", reply(_lease(), lease_doc(leaseenddate="next year")), "leaseenddate"),
    Case("lease-huge-balance", reply(_lease(), lease_doc(EndBalance="1e400")), "EndBalance"),
    Case("lease-nan-balance", reply(_lease(), lease_doc(EndBalance="NaN")), "EndBalance"),
    Case(
        "lease-arabic-balance",
        reply(_lease(), lease_doc(EndBalance=ARABIC)),
        "EndBalance",
    ),
    Case("lease-sql-balance", reply(_lease(), lease_doc(EndBalance=SQL)), "001-01-101-1"),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_bad_input_is_refused_clearly_and_changes_nothing(case: Case, request):
    ctx = _amsi_ctx(request.getfixturevalue("world")) if case.kind == "amsi" else _host_ctx()
    before = _counts()
    message = case.run(ctx)
    assert case.expect.lower() in message.lower(), message
    assert _counts() == before
