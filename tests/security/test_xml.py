"""XML from the other side is parsed without DTDs, entity expansion or unbounded size: on the
client (eDex replies, including the streamed residents reader) and on the sandbox (requests)."""

from __future__ import annotations

from xml.sax.saxutils import escape

import httpx
import pytest

from integrations.exceptions import RetryableError
from integrations_amsi import client as client_mod
from integrations_amsi import xmldocs
from integrations_amsi.client import _EnvelopeReader
from integrations_amsi.sandbox.testing import SandboxServer
from integrations_amsi.xmldocs import UnsafeXml, parse_document, parse_ledger_result

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
BOMB_DTD = (
    '<!DOCTYPE lolz [<!ENTITY lol "lol">'
    '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">'
    '<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">'
    '<!ENTITY lol9 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">]>'
)
XXE_DTD = '<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
LEDGER = "<Payments><Payment><ErrorCode>{body}</ErrorCode></Payment></Payments>"
LONG_COMMENT = "<!--" + "x" * 5000 + "-->"

HOSTILE_REPLIES = {
    "billion-laughs": BOMB_DTD + LEDGER.format(body="&lol9;"),
    "external-entity": XXE_DTD + LEDGER.format(body="&xxe;"),
    "doctype-after-4k-comment": LONG_COMMENT + BOMB_DTD + LEDGER.format(body="&lol9;"),
    "doctype-after-4k-whitespace": "<?xml version='1.0'?>\n"
    + " " * 5000
    + XXE_DTD
    + LEDGER.format(body="&xxe;"),
    "plain-doctype": '<!DOCTYPE Payments SYSTEM "http://evil.example/x.dtd">'
    + LEDGER.format(body="0"),
}


@pytest.mark.parametrize("document", HOSTILE_REPLIES.values(), ids=HOSTILE_REPLIES.keys())
def test_client_refuses_dtds_in_replies(document):
    """Without the DTD checks, these parse (entities dropped or, with resolve_entities,
    expanded); the DOCTYPE placed after the first 4 KiB slipped past the byte sniff alone."""
    with pytest.raises(UnsafeXml, match="DTD"):
        parse_document(document, what="AddPayment result")
    with pytest.raises(UnsafeXml, match="AddPayment result carries a DTD"):
        parse_ledger_result(document, what="AddPayment result")


def test_client_refuses_oversize_documents(monkeypatch):
    """Without the size check the parser would take any size (the limit is 512 MiB; lowered
    here so the test stays fast)."""
    monkeypatch.setattr(xmldocs, "MAX_DOCUMENT_BYTES", 4096)
    big = LEDGER.format(body="0" + " " * 5000)
    with pytest.raises(UnsafeXml, match="over the 4096 limit"):
        parse_ledger_result(big, what="AddPayment result")
    assert parse_ledger_result(LEDGER.format(body="0"), what="ok")[0].ok


def _envelope(result: str, *, prolog: str = "", raw: bool = False) -> bytes:
    body = result if raw else escape(result)
    return (
        f'{prolog}<soap:Envelope xmlns:soap="{SOAP11}"><soap:Body>'
        '<GetPropertyResidentsResponse xmlns="http://tempuri.org/">'
        f"<GetPropertyResidentsResult>{body}</GetPropertyResidentsResult>"
        "</GetPropertyResidentsResponse></soap:Body></soap:Envelope>"
    ).encode()


def _read(data: bytes) -> list[dict[str, str]]:
    reader = _EnvelopeReader("GetPropertyResidentsResult")
    leases = []
    for start in range(0, len(data), 1000):  # fed in chunks, as the stream arrives
        leases += [dict(el.attrib) for el in reader.feed(data[start : start + 1000])]
    leases += [dict(el.attrib) for el in reader.close()]
    return leases


LEASES = "<Leases><Lease ResiID='1'>&lol9;</Lease><Lease ResiID='2'/></Leases>"

STREAMED = {
    "bomb-in-envelope-prolog": _envelope(
        "&lol9;", prolog=BOMB_DTD.replace("lolz", "soap:Envelope"), raw=True
    ),
    "bomb-in-residents-document": _envelope(BOMB_DTD + LEASES),
    "xxe-in-residents-document": _envelope(XXE_DTD + LEASES.replace("&lol9;", "&xxe;")),
}


@pytest.mark.parametrize("data", STREAMED.values(), ids=STREAMED.keys())
def test_streamed_reader_refuses_dtds(data):
    """The residents list is stream-parsed by hand-built parsers; each refuses a DTD (without
    the sniff of the escaped document, the inner pull parser would accept it)."""
    with pytest.raises(UnsafeXml, match="DTD"):
        _read(data)


def test_streamed_reader_refuses_doctype_after_long_comment():
    data = _envelope("<!--" + "x" * 600 + "-->" + BOMB_DTD + LEASES)
    with pytest.raises(UnsafeXml, match="DTD"):
        _read(data)


def test_streamed_reader_accepts_a_plain_list():
    """The control case: the same reader yields each lease of a clean document."""
    assert [lease["ResiID"] for lease in _read(_envelope(LEASES.replace("&lol9;", "")))] == [
        "1",
        "2",
    ]


def test_streamed_residents_reply_over_the_limit_is_refused(world, monkeypatch):
    """A real GetPropertyResidents over loopback: past the byte limit the stream is cut and the
    read fails (the limit is lowered from 512 MiB so the demo list exceeds it)."""
    monkeypatch.setattr(client_mod, "MAX_DOCUMENT_BYTES", 2048)
    provider = world.connection.get_provider()
    query = xmldocs.edex(propertyid="001", leasestatus="C", includecontactdetails=1)
    with pytest.raises(RetryableError, match="over 2048 bytes refused"):
        list(provider.client.stream_leases("GetPropertyResidents", query))
    monkeypatch.setattr(client_mod, "MAX_DOCUMENT_BYTES", 512 * 1024 * 1024)
    assert list(provider.client.stream_leases("GetPropertyResidents", query))


# -- the sandbox -----
@pytest.fixture
def small_sandbox(start_sandbox):
    return start_sandbox(seed="demo", max_body=64 * 1024)


def _post(server: SandboxServer, body: bytes) -> httpx.Response:
    return httpx.post(
        server.ledger_url,
        content=body,
        headers={
            "Content-Type": "text/xml; charset=utf-8",
            "SOAPAction": "http://tempuri.org/AddPayment",
        },
        timeout=10,
    )


def test_sandbox_refuses_entity_bomb_and_oversize_bodies(small_sandbox):
    """Over real HTTP: an entity bomb is a SOAP fault (nothing expanded, nothing booked) and a
    body over ``max_body`` is a 413 before it is read; the server keeps serving."""
    control = small_sandbox.control()
    try:
        bomb = (
            BOMB_DTD.replace("lolz", "soap:Envelope")
            + f'<soap:Envelope xmlns:soap="{SOAP11}"><soap:Body>&lol9;</soap:Body>'
            "</soap:Envelope>"
        ).encode()
        response = _post(small_sandbox, bomb)
        assert response.status_code == 500
        assert b"Server was unable to read request" in response.content
        assert b"lollol" not in response.content
        big = b"<x>" + b"a" * (128 * 1024) + b"</x>"
        response = _post(small_sandbox, big)
        assert response.status_code == 413 and "over the" in response.text
        assert control.ledger() == []
        assert control.health()["status"] == "ok"
    finally:
        control.close()
