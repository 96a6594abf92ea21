"""The sandbox's control API (reset the books, inject faults, read the ledger) is open only on
loopback. Anywhere else the sandbox refuses to start without a control token, and every control
request must then carry it (X-Sandbox-Token); the SOAP endpoints and the eSite pages stay open
(they have their own login)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from django.core.management import CommandError, call_command

from integrations_amsi.sandbox.process import start_process, stop_group
from integrations_amsi.sandbox.server import (
    ControlTokenRequired,
    Sandbox,
    is_loopback,
    make_server,
)
from integrations_amsi.sandbox.testing import SandboxControl, SandboxServer

TOKEN = "s3cret-control-token"
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("host", ["0.0.0.0", "", "192.0.2.10", "example.test"])
def test_make_server_refuses_beyond_loopback_without_a_token(tmp_path, host):
    sandbox = Sandbox(tmp_path / "state.sqlite3")
    try:
        with pytest.raises(ControlTokenRequired, match="control token") as err:
            make_server(sandbox, host, 0)
        assert "X-Sandbox-Token" in str(err.value) and "127.0.0.1" in str(err.value)
    finally:
        sandbox.store.close()


def test_make_server_on_every_address_with_a_token(tmp_path):
    sandbox = Sandbox(tmp_path / "state.sqlite3")
    httpd = make_server(sandbox, "0.0.0.0", 0, control_token=TOKEN)
    try:
        assert httpd.server_address[0] == "0.0.0.0"
        assert sandbox.control_token == TOKEN
    finally:
        httpd.server_close()
        sandbox.store.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_loopback_needs_no_token(host):
    assert is_loopback(host)


def test_sandbox_server_refuses_every_address_without_a_token(tmp_path):
    server = SandboxServer(tmp_path / "state.sqlite3", host="0.0.0.0")
    with pytest.raises(ControlTokenRequired):
        server.start()


def test_the_command_refuses_every_address_without_a_token(tmp_path, monkeypatch):
    monkeypatch.delenv("AMSI_SANDBOX_CONTROL_TOKEN", raising=False)
    state = tmp_path / "state.sqlite3"
    with pytest.raises(CommandError, match="--control-token") as err:
        call_command("amsi_sandbox", "--addr", "0.0.0.0:0", "--state", str(state))
    assert "control API" in str(err.value) and "X-Sandbox-Token" in str(err.value)
    assert not state.exists()  # said before anything was opened or seeded


def test_the_sandbox_serves_every_address_with_a_token(tmp_path):
    """The sandbox as its own process on 0.0.0.0 (what ``manage.py amsi_sandbox`` wraps), the
    token from the environment (kept out of the process list): control needs the header, SOAP
    does not."""
    log = tmp_path / "sandbox.log"
    started = start_process(
        tmp_path / "state.sqlite3", host="0.0.0.0", seed="demo", control_token=TOKEN, log=log
    )
    base = started.base_url
    try:
        assert TOKEN not in log.read_text()
        assert httpx.get(f"{base}/sandbox/health", timeout=10).status_code == 403
        ok = httpx.get(f"{base}/sandbox/health", headers={"X-Sandbox-Token": TOKEN}, timeout=10)
        assert ok.status_code == 200 and ok.json()["properties"] == 1
        wsdl = httpx.get(f"{base}/edexweb/esite/leasing.asmx?wsdl", timeout=10)
        assert wsdl.status_code == 200
    finally:
        stop_group(started.proc)


@pytest.fixture
def guarded(start_sandbox):
    return start_sandbox(seed="demo", control_token=TOKEN)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/sandbox/health", None),
        ("GET", "/sandbox/ledger", None),
        ("POST", "/sandbox/reset", {}),
        ("POST", "/sandbox/faults", {"mode": "http500", "operation": "*"}),
        ("DELETE", "/sandbox/faults", None),
        ("POST", "/sandbox/variants", {"duplicates": "accept"}),
        ("PATCH", "/sandbox/leases/001/01/101/1", {"BlockPaymentAccess": "Y"}),
    ],
)
@pytest.mark.parametrize(
    "headers", [{}, {"X-Sandbox-Token": "wrong"}, {"X-Sandbox-Token": ""}], ids=str
)
def test_control_requests_without_the_token_are_403(guarded, method, path, body, headers):
    response = httpx.request(method, guarded.base_url + path, json=body, headers=headers)
    assert response.status_code == 403
    error = response.json()["error"]
    assert "X-Sandbox-Token" in error
    assert ("needs" in error) if not headers else ("wrong" in error)
    # nothing changed
    control = guarded.control()
    try:
        assert control.faults() == []
        assert control.variants()["duplicates"] == "refuse"
        assert control.lease("001", "01", "101", "1")["attributes"]["BlockPaymentAccess"] != "Y"
        assert control.health()["properties"] == 1
    finally:
        control.close()


def test_control_with_the_token_works(guarded):
    control = SandboxControl(guarded.base_url, token=TOKEN)
    try:
        assert control.health()["status"] == "ok"
        control.add_fault("http500", "AddPayment")
        assert len(control.faults()) == 1
        assert control.set_variants(duplicates="accept")["duplicates"] == "accept"
        assert control.reset(seed="demo") == {"status": "reset"}
    finally:
        control.close()
    unauthorised = SandboxControl(guarded.base_url)
    try:
        with pytest.raises(httpx.HTTPStatusError) as err:
            unauthorised.health()
        assert err.value.response.status_code == 403
    finally:
        unauthorised.close()


def test_soap_and_pages_stay_open_with_a_token(guarded):
    """They have their own login (the eDex credentials), not the control token."""
    assert httpx.get(guarded.leasing_wsdl_url).status_code == 200
    assert httpx.get(guarded.base_url + "/edexweb/esite/cashbatches").status_code == 200
    envelope = (
        '<?xml version="1.0" encoding="utf-8"?><soap:Envelope '
        'xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
        '<GetPropertyList xmlns="http://tempuri.org/"><UserID>edex_demo</UserID>'
        "<Password>sandbox-secret</Password><PortfolioName>DEMO</PortfolioName>"
        "<XMLData></XMLData></GetPropertyList></soap:Body></soap:Envelope>"
    )
    reply = httpx.post(
        guarded.leasing_url,
        content=envelope,
        headers={
            "Content-Type": "text/xml; charset=utf-8",
            "SOAPAction": '"http://tempuri.org/GetPropertyList"',
        },
    )
    assert reply.status_code == 200 and b"Maple Court" in reply.content


def test_a_loopback_sandbox_without_a_token_keeps_its_control_api_open(amsi_sandbox):
    assert httpx.get(amsi_sandbox.base_url + "/sandbox/health").status_code == 200
