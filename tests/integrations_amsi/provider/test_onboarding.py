"""Onboarding that catches mistakes (integrations_amsi.onboarding): amsi_connect and the
connection form against the sandbox over loopback HTTP: the ClientMerchantID checked where
eSite shows one and a caveat where it does not, failures in words (an HTTP status, a network
reason), one connection per AMSI property unless a reason is given, connections created
disabled, --help naming the password variable and every default, a second import a resync."""

from __future__ import annotations

import io
import re

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from integrations.models import Connection, SyncKind, SyncRun
from integrations_amsi.forms import AmsiConnectionForm
from rentplatform.models import Property
from tests.integrations_amsi.provider.test_commands import connect_args

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _password(monkeypatch):
    monkeypatch.setenv("AMSI_PASSWORD", "sandbox-secret")


def connect(server, code: str = "maple", *extra: str, **options: str) -> str:
    args = connect_args(server, **options)
    args[0] = code
    out = io.StringIO()
    call_command("amsi_connect", *args, *extra, stdout=out)
    return out.getvalue()


def test_a_merchant_id_esite_shows_is_compared(amsi_sandbox):
    text = connect(amsi_sandbox)
    assert "ClientMerchantID 1001 matches what eSite's GetPropertyList shows" in text
    assert "Caveat" not in text
    with pytest.raises(CommandError, match="wrong ClientMerchantID: eSite's .* shows 1001") as e:
        connect(amsi_sandbox, merchant_id="77")
    assert "Set it to 1001" in str(e.value)


def test_where_esite_shows_no_merchant_id_ok_comes_with_a_caveat(amsi_sandbox, control):
    control.put_property("003", "Birch", "")  # GetPropertyList lists no merchant id for it
    text = connect(amsi_sandbox, property_id="003", merchant_id="77")
    assert "Connection OK" in text
    caveat = next(line for line in text.splitlines() if line.startswith("Caveat"))
    assert "ClientMerchantID 77 NOT checked" in caveat and "First payment" in caveat
    assert "NOT checked" in Connection.objects.get().last_test_message


def test_failures_name_the_network_reason_or_the_http_status(amsi_sandbox, closed_port):
    class Closed:
        base_url = f"http://127.0.0.1:{closed_port}"

    class WrongPath:
        base_url = amsi_sandbox.base_url + "/nothing"

    with pytest.raises(CommandError) as refused:
        connect(Closed)
    assert "connection refused" in str(refused.value)
    with pytest.raises(CommandError) as missing:
        connect(WrongPath, "elm", portfolio="OTHER")
    assert "HTTP 404" in str(missing.value) and "…/edexweb/esite" in str(missing.value)
    for err in (refused.value, missing.value):
        assert not re.search(r"\b(Connect|HTTP|Connection)Error\b", str(err))
    # Both saved (to be fixed), disabled since new, and marked failing.
    assert set(Connection.objects.values_list("enabled", "last_test_ok")) == {(False, False)}


def test_a_second_connection_to_the_same_amsi_property_needs_a_reason(amsi_sandbox):
    connect(amsi_sandbox)
    with pytest.raises(CommandError, match="already connected to Maple Court") as info:
        connect(amsi_sandbox, "elm", portfolio="demo")  # the portfolio without case
    assert "--reason TEXT" in str(info.value)
    assert not Property.objects.filter(code="elm").exists()
    text = connect(amsi_sandbox, "elm", "--reason", "the same building sold in two parts")
    assert "reason recorded: the same building sold in two parts" in text
    elm = Connection.objects.get(property__code="elm")
    assert elm.settings["shared_property_reason"] == "the same building sold in two parts"
    connect(amsi_sandbox)  # updating maple, which was first, needs no reason
    elm.refresh_from_db()
    connect(amsi_sandbox, "elm")  # nor does updating elm: its reason was given and is kept
    elm.refresh_from_db()
    assert elm.settings["shared_property_reason"] == "the same building sold in two parts"


def test_disabled_and_new_connections(amsi_sandbox, control):
    text = connect(amsi_sandbox, "maple", "--disabled")
    conn = Connection.objects.get()
    assert not conn.enabled and conn.last_test_ok is True
    assert "nothing syncs or posts until it is enabled" in text
    connect(amsi_sandbox)  # an update keeps the state the manager chose
    assert not Connection.objects.get().enabled
    control.put_property("002", "Oak", "1002")
    connect(amsi_sandbox, "oak", property_id="002", merchant_id="1002")
    assert Connection.objects.get(property__code="oak").enabled  # new, check passed


def test_help_names_the_password_variable_and_every_default(capsys):
    with pytest.raises(SystemExit):
        call_command("amsi_connect", "--help")
    text = " ".join(capsys.readouterr().out.split())
    assert "AMSI_PASSWORD" in text
    for default in ("default 22:00", "default 20", "America/New_York", "named by its code"):
        assert default in text, default
    assert "default: the --user UserID" in text and "--disabled" in text and "--reason" in text


def test_a_second_import_is_a_full_resync(amsi_connection):
    out = io.StringIO()
    call_command("amsi_import", "maple", stdout=out)
    assert "Importing" in out.getvalue() and "Initial import" in out.getvalue()
    out = io.StringIO()
    call_command("amsi_import", "maple", "--dry-run", stdout=out)
    call_command("amsi_import", "maple", stdout=out)
    assert "Resyncing (full resync)" in out.getvalue() and "Full resync" in out.getvalue()
    assert "import" not in out.getvalue().lower().replace("amsi_import", "")
    kinds = list(SyncRun.objects.order_by("pk").values_list("kind", flat=True))
    assert kinds == [SyncKind.IMPORT, SyncKind.FULL, SyncKind.FULL]


# -- the connection form ---------------------------------------------------------------------
def form_data(server, prop: Property, **fields: str) -> dict[str, str]:
    return {
        "property": str(prop.pk),
        "url": server.base_url + "/edexweb/esite",
        "portfolio": "DEMO",
        "user_id": "edex_demo",
        "password": "sandbox-secret",
        "property_id": "001",
        "merchant_id": "1001",
        "close_cutoff": "22:00",
        "time_zone": "America/Chicago",
        "timeout": "5",
        "check_esite": "on",
        **fields,
    }


@pytest.fixture
def prop() -> Property:
    return Property.objects.create(code="maple", name="Maple Court", time_zone="UTC")


def test_form_checks_against_esite_and_names_the_field(amsi_sandbox, prop, closed_port):
    cases = [
        ({"merchant_id": "77"}, "merchant_id", "shows 1001"),
        ({"password": "wrong"}, "password", "bad login"),
        ({"portfolio": "NOPE"}, "portfolio", "unknown portfolio"),
        ({"property_id": "999"}, "property_id", "unknown property"),
        ({"url": f"http://127.0.0.1:{closed_port}/edexweb/esite"}, "url", "connection refused"),
    ]
    for change, field, words in cases:
        form = AmsiConnectionForm(data=form_data(amsi_sandbox, prop, **change))
        assert not form.is_valid()
        assert words in " ".join(form.errors[field]), (change, form.errors)
    form = AmsiConnectionForm(data=form_data(amsi_sandbox, prop))
    assert form.is_valid(), form.errors
    conn = form.save()
    assert conn.last_test_ok is True and "matches" in conn.last_test_message
    assert not form.notes
    # unticked, nothing is asked (settings eSite cannot be reached for yet)
    data = form_data(amsi_sandbox, prop, merchant_id="77")
    data.pop("check_esite")
    assert AmsiConnectionForm(data=data, instance=conn).is_valid()


def test_form_refuses_a_second_connection_without_a_reason(amsi_sandbox, amsi_connection):
    elm = Property.objects.create(code="elm", name="Elm", time_zone="UTC")
    form = AmsiConnectionForm(data=form_data(amsi_sandbox, elm, check_esite=""))
    assert not form.is_valid()
    assert "already connected to Maple Court" in form.errors["property_id"][0]
    reason = "two owners, one AMSI property"
    form = AmsiConnectionForm(data=form_data(amsi_sandbox, elm, shared_reason=reason))
    assert form.is_valid(), form.errors
    assert form.save().settings["shared_property_reason"] == reason


def test_admin_add_page_layout_and_the_caveat_message(amsi_sandbox, control, admin_client, prop):
    url = reverse("admin:integrations_connection_add") + "?provider=amsi"
    page = admin_client.get(url).content.decode()
    labels = re.findall(r"<label[^>]*for=\"id_[^\"]+\"[^>]*>([^<]+)</label>", page)
    assert labels and len(labels) == len(set(labels)), labels
    (url_input,) = re.findall(r'<input[^>]*name="url"[^>]*>', page)
    assert 'class="vLargeTextField"' in url_input
    assert not re.search(r'name="enabled"[^>]*checked', page)  # new: disabled
    headings = re.findall(r"<h2[^>]*>([^<]+)</h2>", page)
    for section in ("Platform property", "eDex web services", "Property in AMSI", "Batches"):
        assert section in headings, headings
    control.put_property("003", "Birch", "")
    data = form_data(amsi_sandbox, prop, property_id="003")
    response = admin_client.post(url, data, follow=True)
    assert response.status_code == 200
    messages = [str(m) for m in response.context["messages"]]
    assert any("Connection OK, but ClientMerchantID 1001 NOT checked" in m for m in messages)
    assert "NOT checked" in Connection.objects.get().last_test_message
    assert not Connection.objects.get().enabled
