"""A reply is never read past a limit, whatever eSite (or anything in its place) sends.

Replies read whole (every call but the streamed resident lists) stop at the connection's
``max_reply_bytes`` (default 64 MiB); a Content-Length over it is refused before the body is
read. The streamed resident lists have their own cap (xmldocs.MAX_DOCUMENT_BYTES, 512 MiB).
Measured over real loopback HTTP against the sandbox's ``huge_reply`` fault, which streams a
well-formed reply of any size without building it.
"""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from integrations.exceptions import AmbiguousOutcome, RetryableError
from integrations_amsi import client as client_mod
from integrations_amsi import transport as transport_mod
from integrations_amsi.client import EdexClient
from integrations_amsi.conf import DEFAULT_MAX_REPLY_BYTES, settings_for
from integrations_amsi.sandbox.testing import SandboxServer
from integrations_amsi.xmldocs import edex
from tests.integrations_amsi.world import sandbox_settings

MiB = 1024 * 1024
HUGE = 200 * 1000 * 1000  # 200 MB
BODY = pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])


@pytest.fixture
def sandbox(amsi_sandbox):
    control = amsi_sandbox.control()
    yield amsi_sandbox, control
    control.close()


def edex_client(server: SandboxServer, **extra) -> EdexClient:
    return EdexClient(sandbox_settings(server.base_url, timeout=10.0, **extra))


def peak_growth(call) -> tuple[int, BaseException | None]:
    """Peak bytes allocated by Python while ``call`` runs (tracemalloc), and what it raised."""
    gc.collect()
    tracemalloc.start()
    raised = None
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        try:
            call()
        except BaseException as err:  # noqa: BLE001
            raised = err
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - base, raised


@BODY
def test_a_200_mb_property_list_costs_no_more_than_the_limit(sandbox, chunked):
    server, control = sandbox
    client = edex_client(server)
    client._service("Leasing")  # the WSDL is not what is measured
    control.add_fault("huge_reply", "GetPropertyList", size=HUGE, chunked=chunked)
    growth, raised = peak_growth(lambda: client.leasing_document("GetPropertyList", ""))
    assert growth < DEFAULT_MAX_REPLY_BYTES + 8 * MiB, growth  # the limit, not the reply
    assert growth < HUGE / 2, growth
    assert isinstance(raised, RetryableError), raised
    assert not isinstance(raised, AmbiguousOutcome)
    assert f"over the {DEFAULT_MAX_REPLY_BYTES} byte limit" in str(raised)
    if not chunked:
        # the Content-Length says it all: refused before a byte of the body is read
        assert "Content-Length" in str(raised)
        assert growth < 2 * MiB, growth
    # the connection is fine for the next call
    assert client.leasing_document("GetPropertyList", "") is not None


@BODY
def test_the_limit_is_the_connections_setting(sandbox, chunked):
    server, control = sandbox
    client = edex_client(server, max_reply_bytes=256 * 1024)
    client._service("Leasing")
    assert client.leasing_document("GetPropertyList", "") is not None  # a normal reply fits
    control.add_fault("huge_reply", "GetPropertyList", size=20 * MiB, chunked=chunked)
    growth, raised = peak_growth(lambda: client.leasing_document("GetPropertyList", ""))
    assert growth < 2 * MiB, growth
    assert isinstance(raised, RetryableError), raised
    assert "over the 262144 byte limit" in str(raised)


def test_a_huge_reply_to_a_write_is_an_unknown_outcome(sandbox):
    """Refused unread, but the request had been sent: the write may have landed."""
    from tests.integrations_amsi.unit.test_transport_edges import payment

    server, control = sandbox
    client = edex_client(server, max_reply_bytes=MiB)
    control.add_fault("huge_reply", "AddPayment", size=50 * MiB, chunked=True)
    with pytest.raises(AmbiguousOutcome, match="over the 1048576 byte limit"):
        client.ledger("AddPayment", payment(), record="k1")


def test_a_reply_just_under_the_limit_is_read(sandbox):
    server, control = sandbox
    client = edex_client(server, max_reply_bytes=2 * MiB)
    control.add_fault("huge_reply", "GetPropertyList", size=2 * MiB - 1024)
    root = client.leasing_document("GetPropertyList", "")
    assert root.tag == "Properties" and len(root) > 10_000


def test_max_reply_bytes_is_read_from_the_connection():
    class Conn:
        settings = {"url": "http://x", "portfolio": "P", "user_id": "u", "property_id": "1"}
        credentials = {"password": "pw"}
        property = None

    assert settings_for(Conn).max_reply_bytes == DEFAULT_MAX_REPLY_BYTES
    Conn.settings = {**Conn.settings, "max_reply_bytes": "1048576"}
    assert settings_for(Conn).max_reply_bytes == MiB
    Conn.settings = {**Conn.settings, "max_reply_bytes": "-5"}
    assert settings_for(Conn).max_reply_bytes == DEFAULT_MAX_REPLY_BYTES


def test_an_oversize_wsdl_is_refused_unread(sandbox, monkeypatch):
    server, _control = sandbox
    monkeypatch.setattr(transport_mod, "MAX_WSDL_BYTES", 1024)
    with pytest.raises(RetryableError, match="over the 1024 byte limit"):
        edex_client(server).leasing_document("GetPropertyList", "")


# -- the streamed resident lists: their own cap ------------------------------------------------


RESIDENTS = edex(propertyid="001", leasestatus="C")


@BODY
def test_a_streamed_list_stops_at_its_own_cap(sandbox, monkeypatch, chunked):
    server, control = sandbox
    monkeypatch.setattr(client_mod, "MAX_DOCUMENT_BYTES", 4 * MiB)
    client = edex_client(server)
    client._service("Leasing")
    control.add_fault("huge_reply", "GetPropertyResidents", size=HUGE, chunked=chunked)

    def read():
        for _lease in client.stream_leases("GetPropertyResidents", RESIDENTS):
            pass

    growth, raised = peak_growth(read)
    assert growth < 16 * MiB, growth
    assert isinstance(raised, RetryableError), raised
    assert f"over {4 * MiB} bytes" in str(raised)
    if not chunked:
        assert "Content-Length" in str(raised)


def test_an_error_reply_to_a_streamed_read_is_read_only_so_far(sandbox, monkeypatch):
    """A huge HTTP 500 body is not read whole to quote it."""
    server, control = sandbox
    client = edex_client(server)
    client._service("Leasing")
    monkeypatch.setattr(client_mod, "MAX_ERROR_BODY_BYTES", 64 * 1024, raising=False)

    import http

    real = client_mod.httpx.stream

    def status_500(*args, **kwargs):
        cm = real(*args, **kwargs)

        class Wrap:
            def __enter__(self):
                resp = cm.__enter__()
                resp.status_code = http.HTTPStatus.INTERNAL_SERVER_ERROR
                return resp

            def __exit__(self, *exc):
                return cm.__exit__(*exc)

        return Wrap()

    monkeypatch.setattr(client_mod.httpx, "stream", status_500)
    control.add_fault("huge_reply", "GetPropertyResidents", size=HUGE, chunked=True)
    growth, raised = peak_growth(
        lambda: list(client.stream_leases("GetPropertyResidents", RESIDENTS))
    )
    assert growth < 8 * MiB, growth
    assert isinstance(raised, RetryableError), raised
    assert "HTTP 500" in str(raised)
