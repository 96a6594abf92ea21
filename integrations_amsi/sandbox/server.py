"""The HTTP server: WSDLs, SOAP endpoints, eSite pages and the /sandbox/ control API.

stdlib ThreadingHTTPServer: one thread per connection, HTTP/1.1 keep-alive, a body limit
checked on Content-Length before anything is read. The control API (which can wipe the books and
inject faults) is open only on a loopback address; anywhere else the server refuses to start
without a control token, and each control request must then carry it (``X-Sandbox-Token``).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO
from urllib.parse import parse_qs, urlsplit

from . import (
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_LOAD_BODY,
    DEFAULT_PASSWORD,
    DEFAULT_PORTFOLIO,
    DEFAULT_USER,
    control,
    pages,
    soap,
)
from .faults import FaultRegistry
from .store import Store
from .variants import check, defaults, resolve
from .wsdl import build_wsdl

log = logging.getLogger(__name__)

ASMX = {"/edexweb/esite/leasing.asmx": "leasing", "/edexweb/esite/ledger.asmx": "ledger"}
_DRAIN_LIMIT = 256 * 1024 * 1024
_STREAM_BLOCK = 64 * 1024
CONTROL_TOKEN_HEADER = control.TOKEN_HEADER


class BodyTooLarge(Exception):
    pass


class ControlTokenRequired(ValueError):
    """The sandbox would listen beyond loopback with its control API open to anyone."""


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or "localhost"; anything else ("", 0.0.0.0, a name) is not."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class Sandbox:
    """Everything one running sandbox holds: state, credentials, faults, limits."""

    state: Path
    portfolio: str = DEFAULT_PORTFOLIO
    user: str = DEFAULT_USER
    password: str = DEFAULT_PASSWORD
    max_body: int = DEFAULT_MAX_BODY
    max_load_body: int = DEFAULT_MAX_LOAD_BODY
    variants: dict[str, str] = field(default_factory=defaults)
    # When set, every /sandbox/ control request must carry it in the X-Sandbox-Token header.
    control_token: str = ""
    store: Store = field(init=False)
    faults: FaultRegistry = field(default_factory=FaultRegistry)

    def __post_init__(self) -> None:
        self.variants = resolve(self.variants)  # ValueError on an unknown name or value
        self.store = Store(self.state)

    def set_variants(self, values: dict[str, object]) -> dict[str, str]:
        """Change some variants (all validated first); calls already running keep theirs."""
        self.variants = {**self.variants, **check(values)}
        return dict(self.variants)

    @property
    def config(self) -> dict[str, str]:
        return {"portfolio": self.portfolio, "user": self.user, "password": self.password}

    def __repr__(self) -> str:  # never show the password
        return (
            f"Sandbox(state={self.state!s}, portfolio={self.portfolio!r}, user={self.user!r}, "
            f"variants={self.variants!r})"
        )


class SandboxHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(addr, Handler)

    def process_request(self, request, client_address) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Drop kept-alive connections so a stopped sandbox really stops answering."""
        with self._open_lock:
            conns = list(self._open)
            self._open.clear()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def handle_error(self, request, client_address) -> None:
        log.debug("connection error from %s", client_address, exc_info=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SandboxHTTPServer
    server_version = "Microsoft-IIS/10.0"
    sys_version = ""

    def log_message(self, format: str, *args: object) -> None:  # the stdlib's parameter name
        log.debug("%s %s", self.address_string(), format % args)

    def setup(self) -> None:
        super().setup()
        # Small writes (headers, then body) with Nagle on met the client's delayed ACK: every
        # reply waited ~40 ms. With TCP_NODELAY (and one write per reply) a bare AddPayment
        # takes ~2 ms on a quiet machine (docs/performance.md). How fast a real eSite answers
        # is not known; a distant one is modelled by the latency fault (bench/worker.py).
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def sandbox(self) -> Sandbox:
        return self.server.sandbox

    def base_url(self) -> str:
        host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
        return f"http://{host}"

    def send(
        self, status: int, ctype: str, body: bytes, extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        # Headers and body in one write (one segment for a small reply).
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(body)
        self.flush_headers()

    def send_text(self, status: int, text: str) -> None:
        self.send(status, "text/plain; charset=utf-8", text.encode("utf-8"))

    def _length(self, limit: int) -> int:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            raise BodyTooLarge("chunked request bodies are not supported; send Content-Length")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError as err:
            self.close_connection = True
            raise BodyTooLarge("bad Content-Length") from err
        if length > limit:
            raise BodyTooLarge(f"request body of {length} bytes is over the {limit} byte limit")
        return length

    def refuse_large(self, err: BodyTooLarge) -> None:
        """Answer 413 before reading, then drain what the client still sends and close."""
        self.close_connection = True
        status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
        if "chunked" in str(err) or "Content-Length" in str(err):
            status = HTTPStatus.LENGTH_REQUIRED
        self.send_text(status, str(err) + "\n")
        self.drain_body(_DRAIN_LIMIT)

    def drain_body(self, limit: int) -> None:
        """Read and drop what the client still sends (up to ``limit`` bytes), so it reads the
        answer already written rather than a connection reset."""
        try:
            remaining = min(int(self.headers.get("Content-Length") or 0), limit)
        except ValueError:
            remaining = 0
        self.connection.settimeout(5)
        try:
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                remaining -= len(chunk)
        except OSError:
            pass

    def read_body(self, limit: int) -> bytes:
        return self.rfile.read(self._length(limit))

    def spool_body(self, limit: int) -> IO[bytes]:
        """Big control uploads go to a temp file so 100k leases do not sit twice in memory."""
        length = self._length(limit)
        fh = tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024)
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 20))
            if not chunk:
                break
            fh.write(chunk)
            length -= len(chunk)
        fh.seek(0)
        return fh

    def reset_connection(self) -> None:
        """Close the TCP connection with RST and no reply (a crashed or cut-off server)."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        for f in (self.rfile, self.wfile):
            try:
                f.close()
            except OSError:
                pass
        self.connection.close()

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass

    # -- routing ----------------------------------------------------------------------------

    def _route(self) -> None:
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        query = parse_qs(parts.query, keep_blank_values=True)
        low = path.lower()
        try:
            if low in ASMX:
                self.asmx(ASMX[low], parts.query)
            elif low.startswith("/sandbox/") or low == "/sandbox":
                control.handle(self, path, query)
            elif self.command in ("GET", "HEAD"):
                pages.handle(self, low, query)
            else:
                self.send_text(HTTPStatus.METHOD_NOT_ALLOWED, "method not allowed\n")
        except BodyTooLarge as err:
            self.refuse_large(err)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _route

    def asmx(self, service: str, query: str) -> None:
        if self.command in ("GET", "HEAD"):
            if query.lower().startswith("wsdl"):
                body = build_wsdl(service, f"{self.base_url()}/edexweb/esite/{service}.asmx")
                self.send(HTTPStatus.OK, "text/xml; charset=utf-8", body)
            else:
                self.send(
                    HTTPStatus.OK,
                    "text/html; charset=utf-8",
                    pages.service_page(service, self.base_url()),
                )
            return
        if self.command != "POST":
            self.send_text(HTTPStatus.METHOD_NOT_ALLOWED, "POST a SOAP envelope\n")
            return
        body = self.read_body(self.sandbox.max_body)
        action = self.headers.get("SOAPAction")
        if action is None:
            ctype = self.headers.get("Content-Type", "")
            for piece in ctype.split(";"):
                k, _, v = piece.strip().partition("=")
                if k.lower() == "action":
                    action = v
        try:
            call = soap.parse_call(service, body, action)
        except soap.SoapFault as err:
            ctype, data = soap.fault(err)
            self.send(HTTPStatus.INTERNAL_SERVER_ERROR, ctype, data)
            return
        fault = self.sandbox.faults.match(call.operation)
        if fault is not None:
            log.info("fault %s fires on %s", fault.mode, call.operation)
            if fault.mode == "latency":
                time.sleep(fault.seconds)
            elif fault.mode == "http500":
                # not XML, so a SOAP client sees a transport error rather than a fault
                self.send_text(
                    HTTPStatus.INTERNAL_SERVER_ERROR,
                    "Internal Server Error (injected by the sandbox: http500)\n",
                )
                return
            elif fault.mode == "reset":
                self.reset_connection()
                return
            elif fault.mode == "malformed":
                ctype, data = soap.response(call, "<Payments><Payment>")
                self.send(HTTPStatus.OK, ctype, data[: len(data) // 2])
                return
            elif fault.mode == "huge_reply":
                self.send_huge_reply(call, fault.size, chunked=fault.chunked)
                return
        try:
            result = soap.execute(
                self.sandbox.store, self.sandbox.config, call, self.sandbox.variants
            )
        except soap.SoapFault as err:  # an asmx method that throws (nothing was written)
            status = HTTPStatus.INTERNAL_SERVER_ERROR
            ctype, data = soap.fault(err)
        else:
            status = HTTPStatus.OK
            ctype, data = soap.response(call, result)
        if fault is not None and fault.mode == "lost_reply":
            self.reset_connection()
            return
        if fault is not None and fault.mode == "cut_body":
            self.send_cut(status, ctype, data, chunked=fault.chunked)
            return
        self.send(status, ctype, data)

    # -- faults that shape the reply ---------------------------------------------------------

    def _start_streamed(self, status: int, ctype: str, length: int | None) -> None:
        """Headers of a reply written in pieces: Content-Length, or chunked when None."""
        self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if length is None:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(length))
        self.send_header("Connection", "close")
        self.end_headers()

    def _write_piece(self, data: bytes, chunked: bool) -> None:
        if not data:
            return
        if chunked:
            self.wfile.write(b"%x\r\n" % len(data))
            self.wfile.write(data)
            self.wfile.write(b"\r\n")
        else:
            self.wfile.write(data)

    def send_cut(self, status: int, ctype: str, data: bytes, *, chunked: bool) -> None:
        """The reply's headers and the first half of its body, then the connection closes (FIN):
        the client's read ends early (a short read, or a chunked body without its last chunk).
        The call has already been executed: a write has landed."""
        self._start_streamed(status, ctype, None if chunked else len(data))
        try:
            self._write_piece(data[: len(data) // 2], chunked)
            self.wfile.flush()
        except OSError:
            pass

    def send_huge_reply(self, call: soap.Call, size: int, *, chunked: bool) -> None:
        """A well-formed reply of ``size`` bytes (a <Properties> list padded to size), written
        64 KiB at a time and never held whole in memory. Nothing is processed. Writing stops
        quietly when the client hangs up (it should, at its own limit)."""
        marker = "HUGE-REPLY-FILLER"
        ctype, envelope = soap.response(call, marker)
        head, _, tail = envelope.partition(marker.encode())
        head += b"&lt;Properties&gt;"
        tail = b"&lt;/Properties&gt;" + tail
        unit = b'&lt;Property PropertyId="999" PropertyName="huge reply filler" /&gt;\n'
        block = unit * (_STREAM_BLOCK // len(unit))
        size = max(size, len(head) + len(tail))
        self._start_streamed(HTTPStatus.OK, ctype, None if chunked else size)
        try:
            self._write_piece(head, chunked)
            remaining = size - len(head) - len(tail)
            while remaining >= len(block):
                self._write_piece(block, chunked)
                remaining -= len(block)
            units, pad = divmod(remaining, len(unit))
            self._write_piece(unit * units + b" " * pad, chunked)
            self._write_piece(tail, chunked)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            log.info("huge_reply: the client hung up before the end (as it should)")


def make_server(
    sandbox: Sandbox, host: str = "127.0.0.1", port: int = 0, *, control_token: str | None = None
) -> SandboxHTTPServer:
    """Listen on host:port. Beyond loopback a control token is required (ControlTokenRequired):
    the control API can wipe the books and inject faults, and the sandbox's eDex login is a
    well-known default."""
    if control_token is not None:
        sandbox.control_token = control_token
    if not is_loopback(host) and not sandbox.control_token:
        raise ControlTokenRequired(
            f"refusing to listen on {host or 'every address'!s}:{port} without a control token: "
            "the control API (/sandbox/: reset the books, inject faults, read the ledger) would "
            "be open to anyone who can reach it. Give a token (--control-token, or the "
            f"AMSI_SANDBOX_CONTROL_TOKEN environment variable; clients send it as "
            f"{CONTROL_TOKEN_HEADER}) or listen on 127.0.0.1"
        )
    return SandboxHTTPServer((host, port), sandbox)
