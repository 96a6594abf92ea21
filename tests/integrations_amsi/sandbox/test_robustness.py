"""Hostile or broken input: a clear error, nothing written, and the server keeps serving."""

from __future__ import annotations

import httpx
import pytest

from integrations_amsi.sandbox.codes import ErrorCode

from .edex import code, payment_xml

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"


def envelope(op: str, xmldata: str, creds: dict[str, str]) -> str:
    c = creds
    return (
        f'<soap:Envelope xmlns:soap="{SOAP11}"><soap:Body><{op} xmlns="http://tempuri.org/">'
        f"<UserID>{c['UserID']}</UserID><Password>{c['Password']}</Password>"
        f"<PortfolioName>{c['PortfolioName']}</PortfolioName><preliminary>0</preliminary>"
        f"<XMLData>{xmldata}</XMLData></{op}></soap:Body></soap:Envelope>"
    )


def post(server, body: bytes | str, op: str = "AddPayment") -> httpx.Response:
    return httpx.post(
        server.ledger_url,
        content=body,
        headers={
            "Content-Type": "text/xml; charset=utf-8",
            "SOAPAction": f"http://tempuri.org/{op}",
        },
        timeout=30,
    )


def still_serving(server, control) -> None:
    assert control.health()["status"] == "ok"
    assert httpx.get(server.ledger_wsdl_url).status_code == 200


BOMB = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
)


@pytest.mark.parametrize(
    "body",
    [
        b"this is not xml",
        b"",
        b"<soap:Envelope xmlns:soap='http://schemas.xmlsoap.org/soap/envelope/'><soap:Body>",
        b"<Envelope><Body/></Envelope>",
        (
            BOMB + f'<soap:Envelope xmlns:soap="{SOAP11}"><soap:Body>&lol3;</soap:Body>'
            "</soap:Envelope>"
        ).encode(),
        (
            '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
            f'<soap:Envelope xmlns:soap="{SOAP11}">'
            "<soap:Body>&e;</soap:Body></soap:Envelope>"
        ).encode(),
    ],
)
def test_malformed_envelope_is_a_soap_fault_500(amsi_sandbox, sandbox_control, body):
    r = post(amsi_sandbox, body)
    assert r.status_code == 500
    assert b"<faultstring>Server was unable to read request" in r.content
    assert b"root:" not in r.content
    assert sandbox_control.ledger() == []
    still_serving(amsi_sandbox, sandbox_control)


def test_entity_bomb_inside_xmldata(amsi_sandbox, sandbox_control):
    inner = BOMB + "<Payments>&lol3;</Payments>"
    r = post(amsi_sandbox, envelope("AddPayment", f"<![CDATA[{inner}]]>", amsi_sandbox.credentials))
    assert r.status_code == 200
    assert b"&lt;ErrorCode&gt;104&lt;/ErrorCode&gt;" in r.content
    assert b"DOCTYPE" in r.content
    assert sandbox_control.ledger() == []


def test_fifty_megabyte_body_gets_413(amsi_sandbox, sandbox_control):
    big = b"<x>" + b"a" * (50 * 1024 * 1024) + b"</x>"
    r = post(amsi_sandbox, big)
    assert r.status_code == 413
    assert "over the" in r.text
    still_serving(amsi_sandbox, sandbox_control)


def test_wrong_types(amsi_sandbox, sandbox_control, edex):
    assert code(edex.pay(Amount="abc")) == ErrorCode.INVALID_AMOUNT
    r = post(
        amsi_sandbox,
        envelope("AddPayment", "", amsi_sandbox.credentials).replace(
            "<preliminary>0</preliminary>", "<preliminary>yes</preliminary>"
        ),
    )
    assert r.status_code == 200 and b"&lt;ErrorCode&gt;208" in r.content
    assert sandbox_control.ledger() == []
    r = sandbox_control.client.patch("/sandbox/leases/001/01/101/1", json={"CreditStatus": [1]})
    assert r.status_code == 400
    r = sandbox_control.client.put("/sandbox/properties/001/residents", content=b"<nope")
    assert r.status_code == 400 and "not well-formed" in r.json()["error"]
    r = sandbox_control.client.put("/sandbox/properties/001/units", content=BOMB.encode() + b"<a/>")
    assert r.status_code == 400 and "DOCTYPE" in r.json()["error"]
    assert len(sandbox_control.lease("001", "01", "101", "1")["attributes"]) > 5
    still_serving(amsi_sandbox, sandbox_control)


def test_password_is_never_logged(amsi_sandbox, edex, caplog):
    caplog.set_level("DEBUG")
    edex.pay()
    edex.write("AddPayment", payment_xml(), Password="wrong-secret")
    assert amsi_sandbox.password not in caplog.text and "wrong-secret" not in caplog.text
    assert amsi_sandbox.password not in repr(amsi_sandbox.sandbox)
