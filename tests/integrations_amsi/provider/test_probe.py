"""amsi_probe: a read-only probe of a live eSite, over real loopback HTTP against the sandbox.

Every test also checks that nothing in the Ledger service was called: the client's ledger
method and the Ledger WSDL are off limits, every ledger operation carries an always-firing
sandbox fault that must never fire, and the sandbox's books stay empty.
"""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from lxml import etree

from integrations.models import Connection
from integrations_amsi import client as client_module
from integrations_amsi.client import get_client
from integrations_amsi.conf import settings_for
from integrations_amsi.probe import FAIL, OK, SKIP, WARN, network_reason, probe
from integrations_amsi.sandbox.soap import SUPPORTED
from integrations_amsi.sandbox.testing import SandboxControl, SandboxServer
from integrations_amsi.sandbox.variants import VARIANTS

from .conftest import PASSWORD, connect

pytestmark = pytest.mark.django_db

WRONG = "wrong-pass-7319"
MERCHANT = "1001"


class Esite:
    """A sandbox eSite with the demo property 001 (ClientMerchantID 1001) and a ledger guard."""

    def __init__(self, tmp_path: Path, variants: dict[str, str] | None = None) -> None:
        self.server = SandboxServer(
            tmp_path / "esite.sqlite3", seed="demo", variants=variants or {}
        ).start()
        self.control: SandboxControl = self.server.control()
        self.control.put_property("001", "Maple Court", MERCHANT)
        self.guards = [
            self.control.add_fault("http500", operation, ratio=1.0)["id"]
            for operation in sorted(SUPPORTED["ledger"])
        ]

    def assert_no_ledger_call(self) -> None:
        fired = {
            f["operation"]: f["fired"] for f in self.control.faults() if f["id"] in self.guards
        }
        assert fired == dict.fromkeys(SUPPORTED["ledger"], 0)
        assert self.control.ledger() == []

    def close(self) -> None:
        self.control.close()
        self.server.stop()


@pytest.fixture
def no_ledger(monkeypatch) -> None:
    """Fail the test if the probe touches the client's Ledger side at all."""

    def ledger(*args, **kwargs):
        raise AssertionError("the probe called a Ledger operation")

    real_service = client_module.EdexClient._service

    def service(self, name: str):
        assert name != "Ledger", "the probe loaded the Ledger service"
        return real_service(self, name)

    monkeypatch.setattr(client_module.EdexClient, "ledger", ledger)
    monkeypatch.setattr(client_module.EdexClient, "_service", service)


@pytest.fixture
def esite(request, tmp_path: Path, no_ledger) -> Iterator[Esite]:
    world = Esite(tmp_path, getattr(request, "param", None))
    yield world
    world.assert_no_ledger_call()
    world.close()


def run_probe(*args: str) -> tuple[str, str]:
    """(stdout, the CommandError's message or "")."""
    out = io.StringIO()
    try:
        call_command("amsi_probe", *args, stdout=out)
    except CommandError as err:
        return out.getvalue(), str(err)
    return out.getvalue(), ""


def step_lines(text: str) -> dict[str, str]:
    """{"1. Leasing WSDL": "OK", ...}; the counts step has one line per list."""
    lines = {}
    for line in text.splitlines():
        status, _, rest = line.partition(" ")
        if status in (OK, WARN, FAIL, SKIP):
            lines[rest.strip().split(":", 1)[0]] = status
    return lines


def ad_hoc(server: SandboxServer, **extra: str) -> list[str]:
    values = {
        "url": server.base_url + "/edexweb/esite",
        "portfolio": "DEMO",
        "user": "edex_demo",
        "property_id": "001",
        "merchant_id": MERCHANT,
        **extra,
    }
    args: list[str] = []
    for key, value in values.items():
        args += [f"--{key.replace('_', '-')}", value]
    return args


# -- the good probe ----------------------------------------------------------------------------

_EVERY_VARIANT = [{name: value} for name, v in VARIANTS.items() for value in v.allowed]


@pytest.mark.parametrize(
    "esite", _EVERY_VARIANT, indirect=True, ids=lambda v: "{}={}".format(*next(iter(v.items())))
)
def test_the_probe_passes_against_every_variant(esite):
    """Every plausible eSite the sandbox offers (variants.py): the read-only probe passes and
    names each evidence row it could confirm."""
    connect(esite.server.base_url)
    text, error = run_probe("maple")
    assert error == "", text
    assert set(step_lines(text).values()) <= {OK, WARN}, text
    for row in ("GetPropertyList shape", "login error reply", "delta query"):
        assert row in text, row


@pytest.mark.parametrize(
    "esite",
    [
        {"property_list": shape, "empty_list": empty}
        for shape in ("attributes", "elements")
        for empty in ("error", "empty")
    ],
    indirect=True,
    ids=lambda v: f"{v['property_list']}-{v['empty_list']}",
)
def test_good_probe_reports_every_step_ok(esite, request):
    variants = request.node.callspec.params["esite"]
    connect(esite.server.base_url)
    # a property with no leases at all: its lists are empty, whichever way eSite says so
    esite.control.put_property("002", "Empty Lot", "2002")
    text, error = run_probe("maple")

    assert error == "", text
    assert step_lines(text) == {
        "1. Leasing WSDL": OK,
        "2. Login and portfolio": OK,
        "3. Property in GetPropertyList": OK,
        "4. ClientMerchantID": OK,
        "5. Units": OK,
        "5. Current residents (C)": OK,
        "5. Notice residents (N)": OK,
        "6. Delta query": OK,
    }
    assert "2 properties listed" in text
    assert "001 'Maple Court' is in GetPropertyList" in text
    assert "GetPropertyList says 1001, the connection has 1001: they match" in text
    assert "an integer, as production clients sent" in text
    assert "26 units (GetPropertyUnits, all statuses)" in text
    assert "23 leases (GetPropertyResidents leasestatus=C)" in text
    assert "1 lease (GetPropertyResidents leasestatus=N)" in text
    assert "status changes from" in text and "transactions from" in text
    # the evidence rows this eSite confirmed, by their stable names
    assert f"confirmed  GetPropertyList shape: {variants['property_list']}" in text
    assert "confirmed  ClientMerchantID type: GetPropertyList carries '1001' (an integer)" in text
    assert (
        "confirmed  lease status codes: leasestatus=C: 23 leases (occustatuscode C on 23)" in text
    )
    if variants["empty_list"] == "empty":
        assert "confirmed  delta query: answered for" in text
    else:
        # the seed has status changes but no ledger entry in the last days: the transactions
        # request answers an error document, which confirms nothing (read as no changes)
        assert "confirmed  delta query" not in text
        assert "not seen   delta query: answered an error document for " in text
        assert "(transactions: code 103, text No data found: no leases match)" in text
        assert "which confirms nothing; a list for status changes: " in text
    assert "not seen   login error reply: the login succeeded" in text
    # then what only a payment can confirm, and where the procedure is
    assert 'docs/amsi.md, "First payment on a live eSite"' in text
    assert "repeated ClientTransactionID" in text
    assert "Probe OK" in text and PASSWORD not in text


@pytest.mark.parametrize(
    "esite",
    [{"empty_list": "error"}, {"empty_list": "empty"}],
    indirect=True,
    ids=lambda v: "-".join(v.values()),
)
def test_empty_lists_are_reported_as_production_read_them(esite, request):
    empty = request.node.callspec.params["esite"]["empty_list"]
    esite.control.put_property("002", "Empty Lot", "2002")
    connect(esite.server.base_url, property_id="002", merchant_id="2002")
    text, error = run_probe("maple")

    lines = step_lines(text)
    assert lines["5. Notice residents (N)"] == OK
    assert lines["6. Delta query"] == OK
    if empty == "error":
        # units and current residents as an error document: WARN (production alerted on C)
        assert error == ""
        assert lines["5. Units"] == WARN and lines["5. Current residents (C)"] == WARN
        assert (
            "AMSI answered with error code 103: No data found: no units for property 002 "
            "(read as an empty list, as production read resident lists)" in text
        )
        # confirmed by the resident list (the row is about those), not by the units
        assert "confirmed  empty lists: GetPropertyResidents: error code 103" in text
        assert "empty lists: GetPropertyUnits" not in text
        # the delta query answered an error document: read as no changes, said to be our
        # reading, and it confirms nothing (production read error documents as empty lists
        # for resident lists only)
        assert (
            "AMSI answered with error code 103: No data found: no leases match "
            "(read as no changes: our reading, not seen in production for this call)" in text
        )
        assert "confirmed  delta query" not in text
        assert "not seen   delta query: answered an error document for " in text
        assert (
            "(status changes: code 103, text No data found: no leases match; "
            "transactions: code 103, text No data found: no leases match): read "
            "as no changes, which confirms nothing" in text
        )
    else:
        assert error == ""
        assert lines["5. Units"] == WARN and lines["5. Current residents (C)"] == WARN
        assert "0 units (GetPropertyUnits, all statuses)" in text
        assert "confirmed  empty lists: GetPropertyResidents: an empty list document" in text


def test_probe_without_a_saved_connection(esite, monkeypatch):
    monkeypatch.setenv("AMSI_PASSWORD", PASSWORD)
    text, error = run_probe("--json", *ad_hoc(esite.server))

    assert error == ""
    data = json.loads(text)
    assert data["ok"] is True and data["read_only"] is True and data["fix"] == ""
    assert [s["status"] for s in data["steps"]] == [OK] * 9  # two delta requests
    assert data["target"]["property_id"] == "001" and data["target"]["merchant_id"] == MERCHANT
    rows = {e["row"]: e for e in data["evidence"]}
    assert rows["GetPropertyList shape"] == {
        "row": "GetPropertyList shape",
        "status": "confirmed",
        "seen": "attributes (<Properties><Property PropertyId…>)",
    }
    assert data["first_payment_doc"] == 'docs/amsi.md, "First payment on a live eSite"'
    assert PASSWORD not in text
    assert not Connection.objects.exists()  # probing saves nothing


# -- failures, each with one sentence naming what to fix -----------------------------------------


@pytest.mark.parametrize(
    "esite",
    [{"login_error": "document"}, {"login_error": "fault"}],
    indirect=True,
    ids=lambda v: "-".join(v.values()),
)
def test_wrong_password_is_a_clear_failure(esite, monkeypatch, request):
    monkeypatch.setenv("AMSI_PASSWORD", WRONG)
    text, error = run_probe(*ad_hoc(esite.server))

    assert "FAIL 2. Login and portfolio: AMSI refused the user id or password" in text
    assert "Validation of user credentials failed." in text
    assert error.startswith("AMSI probe of the given settings failed: Fix the eDex UserID")
    assert "or the password" in error
    lines = step_lines(text)
    assert lines["1. Leasing WSDL"] == OK
    assert [lines[k] for k in lines if not k.startswith(("1.", "2."))] == [SKIP] * 4
    if request.node.callspec.params["esite"]["login_error"] == "document":
        assert "confirmed  login error reply: error code 1: Validation of user credentials" in text
    else:
        assert "confirmed  login error reply: Server was unable to process request." in text
    # the password is masked, never printed, also in JSON
    json_text, _ = run_probe("--json", *ad_hoc(esite.server))
    assert WRONG not in text and WRONG not in error and WRONG not in json_text
    assert json.loads(json_text)["steps"][1]["status"] == FAIL


def test_unknown_portfolio_is_a_clear_failure(esite):
    connect(esite.server.base_url, portfolio="NOPE")
    text, error = run_probe("maple")

    assert "FAIL 2. Login and portfolio: AMSI does not know the portfolio 'NOPE'" in text
    assert error == (
        "AMSI probe of maple failed: Set the PortfolioName to the one AMSI gave for this eSite "
        "(not 'NOPE')."
    )


def test_unknown_property_lists_the_ids(esite):
    esite.control.put_property("002", "Oak Row", "2002")
    connect(esite.server.base_url, property_id="01")
    text, error = run_probe("maple")

    assert (
        "FAIL 3. Property in GetPropertyList: property '01' is not in portfolio DEMO's "
        "GetPropertyList (it has: 001, 002); did you mean '001'? leading zeros matter" in text
    )
    assert error == (
        "AMSI probe of maple failed: Set the AMSI PropertyId to one of the ids GetPropertyList "
        "lists (001, 002), exactly as written (leading zeros matter)."
    )


def test_unreachable_url_names_the_reason(db, closed_port, no_ledger):
    connect(f"http://127.0.0.1:{closed_port}")
    text, error = run_probe("maple")

    assert (
        f"FAIL 1. Leasing WSDL: http://127.0.0.1:{closed_port}/edexweb/esite/leasing.asmx?wsdl: "
        "connection refused" in text
    )
    assert "SKIP 2. Login and portfolio: not run: AMSI is not reachable" in text
    assert error.startswith(
        f"AMSI probe of maple failed: AMSI is not reachable at http://127.0.0.1:{closed_port}"
        "/edexweb/esite (connection refused): check the eDex base URL"
    )
    assert "Error" not in text  # words, not exception class names


def test_a_silent_server_times_out_in_words(db, no_ledger):
    with socket.socket() as listener:  # accepts connections (backlog), never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        settings = settings_for(connect(f"http://127.0.0.1:{port}"))
        report = probe(settings, wsdl_timeout=0.3)
    assert report.steps[0].status == FAIL
    assert report.steps[0].detail.endswith(": timed out after 0.3 s")


def test_network_reasons_in_words():
    import httpx

    try:
        raise httpx.ConnectError("[Errno -2] Name or service not known")
    except httpx.ConnectError as err:
        assert network_reason(err) == "name not resolved"
    gai = socket.gaierror(-3, "Temporary failure in name resolution")
    wrapped = httpx.ConnectError("boom")
    wrapped.__cause__ = gai
    assert network_reason(wrapped) == "name not resolved"
    assert network_reason(httpx.ReadTimeout("x"), 10) == "timed out after 10 s"


def test_merchant_id_mismatch_and_non_integer(esite):
    connect(esite.server.base_url, merchant_id="2002")
    text, error = run_probe("maple")
    assert (
        "FAIL 4. ClientMerchantID: GetPropertyList says ClientMerchantID 1001 for 001, the "
        "connection has 2002: they differ" in text
    )
    assert error == (
        "AMSI probe of maple failed: Set the connection's ClientMerchantID to 1001 (what eSite "
        "has for property 001), or have eSite's setting corrected."
    )

    Connection.objects.all().delete()
    esite.control.put_property("001", "Maple Court", "M1001")
    connect(esite.server.base_url, merchant_id="M1001")
    text, error = run_probe("maple")
    assert error == ""
    assert (
        "WARN 4. ClientMerchantID: GetPropertyList says M1001, the connection has M1001: they "
        "match; not a positive integer of at most 9 digits: production clients sent an integer"
        in text
    )


def test_empty_property_list_cannot_confirm_and_goes_on(esite):
    """GetPropertyList with no <Property> (seen for some users): say so, count directly."""
    settings = settings_for(connect(esite.server.base_url))
    real = get_client(settings, key="probe")

    class EmptyList:
        def leasing_document(self, operation, xmldata):
            assert operation == "GetPropertyList"
            return etree.fromstring("<Properties/>")

        def stream_elements(self, operation, xmldata, element):
            return real.stream_elements(operation, xmldata, element)

    report = probe(settings, client=EmptyList())
    statuses = [(s.title, s.status) for s in report.steps]
    assert statuses[2] == ("Property in GetPropertyList", WARN)
    assert "cannot confirm '001' from the list" in report.steps[2].detail
    assert report.ok and [s.status for s in report.steps[4:]] == [OK] * 5


def test_unknown_property_found_by_the_counts(esite):
    """When the list cannot confirm it, the unit read names an unknown property."""
    settings = settings_for(connect(esite.server.base_url, property_id="999"))
    real = get_client(settings, key="probe")

    class EmptyList:
        def leasing_document(self, operation, xmldata):
            return etree.fromstring("<Properties/>")

        def stream_elements(self, operation, xmldata, element):
            return real.stream_elements(operation, xmldata, element)

    report = probe(settings, client=EmptyList())
    assert not report.ok
    assert report.steps[4].status == FAIL
    assert "AMSI refused property '999' with error code 102" in report.steps[4].detail
    assert "what a real eSite means by it is not known" in report.steps[4].detail
    assert report.fix.startswith("Check the AMSI PropertyId against eSite's property id")
    assert "(not '999')" in report.fix


def test_usage_errors(db):
    with pytest.raises(CommandError, match="has no AMSI connection"):
        call_command("amsi_probe", "nowhere", stdout=io.StringIO())
    with pytest.raises(CommandError, match="also needs --portfolio"):
        call_command("amsi_probe", "--url", "http://127.0.0.1:1/x", stdout=io.StringIO())
    with pytest.raises(CommandError, match="give a property code"):
        call_command("amsi_probe", stdout=io.StringIO())
