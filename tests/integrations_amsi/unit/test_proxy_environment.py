"""An operator's HTTP proxy, set in the environment as requests reads it (``HTTP_PROXY``,
``NO_PROXY``), carries every eDex call, and the environment is read once per address instead of
at every call (integrations_amsi.transport.Session).

Over real loopback HTTP: the sandbox, and a small forwarding proxy in front of it that records
what it carried.
"""

from __future__ import annotations

import http.client
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock

import pytest
import requests
import requests.sessions

from integrations_amsi.client import EdexClient
from integrations_amsi.sandbox.testing import SandboxServer
from integrations_amsi.transport import Session
from tests.integrations_amsi.world import sandbox_settings

from .test_transport_edges import add_payment


class ForwardingProxy:
    """An HTTP proxy on a loopback port: forwards each request to the absolute URL it names
    and keeps the request lines it carried."""

    def __init__(self) -> None:
        self.carried: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _forward(self) -> None:
                proxy.carried.append(f"{self.command} {self.path}")
                target = urllib.parse.urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
                path = target.path + (f"?{target.query}" if target.query else "")
                headers = {k: v for k, v in self.headers.items() if k.lower() != "proxy-connection"}
                upstream.request(self.command, path, body=body or None, headers=headers)
                reply = upstream.getresponse()
                data = reply.read()
                self.send_response(reply.status)
                for k, v in reply.getheaders():
                    if k.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                upstream.close()

            do_GET = _forward
            do_POST = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(monkeypatch) -> Iterator[ForwardingProxy]:
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    p = ForwardingProxy()
    monkeypatch.setenv("HTTP_PROXY", p.url)
    yield p
    p.close()


def test_every_edex_call_goes_through_the_proxy_the_environment_names(
    amsi_sandbox: SandboxServer, proxy
):
    client = EdexClient(sandbox_settings(amsi_sandbox.base_url))
    assert add_payment(client, "500000101")[0].ok
    assert add_payment(client, "500000102")[0].ok
    posts = [line for line in proxy.carried if line.startswith("POST ")]
    # The absolute URL: the request went to the proxy, as a proxied request does.
    assert posts == [f"POST {amsi_sandbox.base_url}/edexweb/esite/ledger.asmx"] * 2
    assert any(line.startswith("GET ") and "ledger.asmx?wsdl" in line for line in proxy.carried)


def test_an_address_the_environment_exempts_is_called_directly(
    amsi_sandbox: SandboxServer, proxy, monkeypatch
):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    client = EdexClient(sandbox_settings(amsi_sandbox.base_url))
    assert add_payment(client, "500000103")[0].ok
    assert proxy.carried == []


def test_the_environment_is_read_once_per_address_not_at_every_call(
    amsi_sandbox: SandboxServer, proxy
):
    client = EdexClient(sandbox_settings(amsi_sandbox.base_url))
    add_payment(client, "500000104")  # the WSDL and the first call: read there
    reads = mock.patch.object(
        requests.sessions, "get_environ_proxies", wraps=requests.sessions.get_environ_proxies
    )
    with reads as reading:
        for n in range(5):
            assert add_payment(client, f"50000011{n}")[0].ok
    assert reading.call_count == 0
    assert len([line for line in proxy.carried if line.startswith("POST ")]) == 6


def test_each_request_gets_its_own_copy_and_its_own_proxies_win():
    session = Session()
    url = "http://127.0.0.1:9/x"
    with mock.patch.dict("os.environ", {"HTTP_PROXY": "http://127.0.0.1:8"}, clear=False):
        one = session.merge_environment_settings(url, {}, True, None, None)
        one["proxies"]["http"] = "changed by a caller"
        two = session.merge_environment_settings(url, {}, True, None, None)
        own = session.merge_environment_settings(url, {"http": "http://own:1"}, True, None, None)
        plain = requests.Session().merge_environment_settings(url, {}, True, None, None)
    assert two["proxies"]["http"] == "http://127.0.0.1:8"
    assert own["proxies"]["http"] == "http://own:1"
    # The rest as requests itself works it out (the CA bundle variables included).
    assert {k: v for k, v in two.items() if k != "proxies"} == {
        k: v for k, v in plain.items() if k != "proxies"
    }
