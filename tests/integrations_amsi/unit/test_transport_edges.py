"""Every way an eDex call can fail, sorted by what it means for the books.

"Failed before sending" (refused connection, DNS failure, connect timeout): nothing reached
eSite, so it is retryable, even for a write. "May have been received" (read timeout, reset
mid-call, a reply cut off mid-body, a body that does not decode, HTTP 5xx, a reply nobody can
read): a write's outcome is unknown (AmbiguousOutcome), a read is retryable. No exception of the
HTTP stack or of zeep's reply processing escapes as a crash.

Over real loopback HTTP: the sandbox (``cut_body`` fault) and, for replies the sandbox has no
mode for (a body that does not decode, a broken chunk), a raw server that serves the sandbox's
WSDLs and answers each POST with fixed bytes.
"""

from __future__ import annotations

import datetime as dt
import socket
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import urllib3.connection
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError

from integrations.exceptions import (
    AmbiguousOutcome,
    ConnectionTestFailed,
    IntegrationError,
    RetryableError,
)
from integrations_amsi.client import EdexClient
from integrations_amsi.sandbox.testing import SandboxServer
from integrations_amsi.xmldocs import PaymentDoc, edex
from tests.integrations_amsi.world import sandbox_settings


def payment(txn: str = "500000001") -> str:
    return PaymentDoc(
        property_id="001",
        bldg_id="01",
        unit_id="101",
        resi_id="1",
        merchant_id="1001",
        transaction_id=txn,
        transaction_date=dt.date(2026, 11, 26),
        amount=Decimal("125.00"),
        jnl_no="100000001",
        description="Rent",
        payment_type="P",
    ).xml()


def add_payment(client: EdexClient, txn: str = "500000001"):
    return client.ledger("AddPayment", payment(txn), record="k1")


RESIDENTS = edex(propertyid="001", leasestatus="C")


@pytest.fixture
def sandbox(amsi_sandbox: SandboxServer) -> Iterator[SandboxServer]:
    yield amsi_sandbox


@pytest.fixture
def control(sandbox):
    c = sandbox.control()
    yield c
    c.close()


@pytest.fixture
def client(sandbox) -> EdexClient:
    return EdexClient(sandbox_settings(sandbox.base_url))


def entries(control) -> list[dict]:
    return [e for b in control.ledger() for e in b["entries"]]


# -- a reply cut off mid-body (the sandbox's cut_body: the call ran, then half the reply) --------


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_write_whose_reply_is_cut_mid_body_is_an_unknown_outcome(client, control, chunked):
    control.add_fault("cut_body", "AddPayment", chunked=chunked)
    with pytest.raises(AmbiguousOutcome, match="cut off"):
        add_payment(client)
    # the write landed before the reply was cut: exactly why the outcome is "unknown"
    assert [e["client_transaction_id"] for e in entries(control)] == ["500000001"]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_read_whose_reply_is_cut_mid_body_is_retryable(client, control, chunked):
    control.add_fault("cut_body", "GetPropertyList", chunked=chunked)
    with pytest.raises(RetryableError, match="cut off") as err:
        client.leasing_document("GetPropertyList", "")
    assert not isinstance(err.value, AmbiguousOutcome)
    assert client.leasing_document("GetPropertyList", "") is not None  # next call is fine


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_streamed_read_whose_reply_is_cut_is_retryable(client, control, chunked):
    control.add_fault("cut_body", "GetPropertyResidents", chunked=chunked)
    with pytest.raises(RetryableError, match="cut off"):
        list(client.stream_leases("GetPropertyResidents", RESIDENTS))
    assert list(client.stream_leases("GetPropertyResidents", RESIDENTS))


def test_connection_test_with_a_cut_reply_says_unreachable(client, control):
    control.add_fault("cut_body", "GetPropertyList")
    with pytest.raises(ConnectionTestFailed, match="unreachable: .*cut off"):
        client.test()


# -- failed before sending: retryable, even for a write -------------------------------------------


def _refuse_connections_with(monkeypatch, make_error) -> None:
    """Every new connection fails as urllib3 reports it (the WSDL is already loaded)."""

    def new_conn(self):
        raise make_error(self)

    monkeypatch.setattr(urllib3.connection.HTTPConnection, "_new_conn", new_conn)


def _fresh_connections(client: EdexClient) -> None:
    client._service("Ledger")  # WSDL loaded while the network works
    client._service("Leasing")
    client._session.close()  # drop kept-alive connections: the next call must connect


def test_connect_timeout_on_a_write_is_retryable_not_unknown(client, control, monkeypatch):
    """requests.ConnectTimeout is also a requests.Timeout: it used to be read as "no reply",
    an unknown outcome, though no byte of the request had left."""
    _fresh_connections(client)
    _refuse_connections_with(
        monkeypatch, lambda conn: ConnectTimeoutError(conn, "Connection to host timed out.")
    )
    with pytest.raises(RetryableError, match="cannot connect") as err:
        add_payment(client)
    assert not isinstance(err.value, AmbiguousOutcome)
    monkeypatch.undo()
    assert add_payment(client)[0].ok
    assert len(entries(control)) == 1


def test_dns_failure_on_a_write_is_retryable_not_unknown(client, monkeypatch):
    _fresh_connections(client)
    _refuse_connections_with(
        monkeypatch,
        lambda conn: NameResolutionError(
            conn.host, conn, socket.gaierror(-2, "Name or service not known")
        ),
    )
    with pytest.raises(RetryableError, match="cannot connect") as err:
        add_payment(client)
    assert not isinstance(err.value, AmbiguousOutcome)


def test_refused_connection_on_a_write_is_retryable(sandbox, control):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = EdexClient(sandbox_settings(sandbox.base_url))
    client._service("Ledger")
    client._services["Ledger"] = client._zeep["Ledger"].create_service(
        "{http://tempuri.org/}LedgerSoap", f"http://127.0.0.1:{port}/edexweb/esite/ledger.asmx"
    )
    with pytest.raises(RetryableError, match="cannot connect") as err:
        add_payment(client)
    assert not isinstance(err.value, AmbiguousOutcome)


def test_streamed_read_that_cannot_connect_says_so(sandbox):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = EdexClient(sandbox_settings(f"http://127.0.0.1:{port}"))
    client._services["Leasing"] = True  # never used: the envelope comes from the loaded WSDL
    loaded = EdexClient(sandbox_settings(sandbox.base_url))
    loaded._service("Leasing")
    client._zeep["Leasing"] = loaded._zeep["Leasing"]
    with pytest.raises(RetryableError, match="cannot connect"):
        list(client.stream_leases("GetPropertyResidents", RESIDENTS))


def test_read_timeout_on_a_write_is_an_unknown_outcome(sandbox, control):
    client = EdexClient(sandbox_settings(sandbox.base_url, timeout=0.5))
    control.add_fault("latency", "AddPayment", seconds=1.5)
    with pytest.raises(AmbiguousOutcome, match="no reply within 0.5 s"):
        add_payment(client)


# -- replies the sandbox cannot send: a raw server ---------------------------------------------


class RawEdex(ThreadingHTTPServer):
    """Serves the sandbox's WSDLs; answers every POST with ``reply`` (raw bytes), then closes."""

    daemon_threads = True

    def __init__(self, sandbox: SandboxServer) -> None:
        self.sandbox = sandbox
        self.reply = b""
        self.posts = 0
        super().__init__(("127.0.0.1", 0), _RawHandler)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _RawHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: RawEdex

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        upstream = httpx.get(self.server.sandbox.base_url + self.path, timeout=10)
        self.send_response(upstream.status_code)
        self.send_header("Content-Type", upstream.headers.get("Content-Type", "text/xml"))
        self.send_header("Content-Length", str(len(upstream.content)))
        self.end_headers()
        self.wfile.write(upstream.content)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.posts += 1
        self.close_connection = True
        self.wfile.write(self.server.reply)
        self.wfile.flush()


@pytest.fixture
def raw(sandbox) -> Iterator[RawEdex]:
    server = RawEdex(sandbox)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _reply(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    head = [f"HTTP/1.1 {status}", "Content-Type: text/xml; charset=utf-8", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


NOT_GZIP = b"this is not gzip data, whatever the header says" * 4
RAW_REPLIES = {
    # requests: ContentDecodingError; httpx: DecodingError
    "undecodable-body": _reply(
        NOT_GZIP, "Content-Encoding: gzip", f"Content-Length: {len(NOT_GZIP)}"
    ),
    # requests: ChunkedEncodingError (invalid chunk length); httpx: RemoteProtocolError
    "broken-chunk": _reply(b"zz\r\n<soap:Envelope", "Transfer-Encoding: chunked"),
    # a short read: IncompleteRead inside requests' ChunkedEncodingError
    "short-read": _reply(b"<soap:Envelope xmlns:soap=", "Content-Length: 5000"),
    # a status line that is not HTTP
    "garbage-status": b"SMTP ready\r\n\r\n",
}


@pytest.mark.parametrize("name", RAW_REPLIES, ids=RAW_REPLIES.keys())
def test_a_write_with_an_unreadable_reply_is_an_unknown_outcome_never_a_crash(raw, name):
    raw.reply = RAW_REPLIES[name]
    client = EdexClient(sandbox_settings(raw.base_url))
    with pytest.raises(AmbiguousOutcome):
        add_payment(client)
    assert raw.posts == 1


@pytest.mark.parametrize("name", RAW_REPLIES, ids=RAW_REPLIES.keys())
def test_a_read_with_an_unreadable_reply_is_retryable_never_a_crash(raw, name):
    raw.reply = RAW_REPLIES[name]
    client = EdexClient(sandbox_settings(raw.base_url))
    with pytest.raises(RetryableError) as err:
        client.leasing_document("GetPropertyList", "")
    assert not isinstance(err.value, AmbiguousOutcome)


@pytest.mark.parametrize("name", RAW_REPLIES, ids=RAW_REPLIES.keys())
def test_a_streamed_read_with_an_unreadable_reply_is_retryable_never_a_crash(raw, name):
    raw.reply = RAW_REPLIES[name]
    client = EdexClient(sandbox_settings(raw.base_url))
    with pytest.raises(RetryableError) as err:
        list(client.stream_leases("GetPropertyResidents", RESIDENTS))
    assert not isinstance(err.value, AmbiguousOutcome)


# -- after the reply arrived: zeep's own processing ------------------------------------------------


def test_any_exception_processing_a_received_reply_is_an_unknown_outcome(client, monkeypatch):
    """A bug in zeep reading a reply it was given (it has crashed with AttributeError and
    TypeError on odd replies) comes after the write was sent: unknown, not "crashed"."""
    from zeep.wsdl.bindings.soap import SoapBinding

    def broken(self, client, operation, response):
        raise AttributeError("'NoneType' object has no attribute 'find'")

    monkeypatch.setattr(SoapBinding, "process_reply", broken)
    with pytest.raises(AmbiguousOutcome, match="AttributeError"):
        add_payment(client)
    with pytest.raises(RetryableError, match="AttributeError") as err:
        client.leasing_document("GetPropertyList", "")
    assert not isinstance(err.value, AmbiguousOutcome)


def test_a_bug_before_sending_is_not_hidden_as_an_unknown_outcome(client, control, monkeypatch):
    """Nothing was sent, so nothing is unknown: a bug building the request stays a bug (the
    outbox records it with its traceback) and the ledger is untouched."""
    from zeep.wsdl.bindings.soap import SoapBinding

    def broken(self, *args, **kwargs):
        raise TypeError("cannot serialize")

    client._service("Ledger")
    monkeypatch.setattr(SoapBinding, "_create", broken)
    with pytest.raises(TypeError, match="cannot serialize") as err:
        add_payment(client)
    assert not isinstance(err.value, IntegrationError)
    assert entries(control) == []
