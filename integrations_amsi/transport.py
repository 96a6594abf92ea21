"""The HTTP side of the eDex client: bounded reads, and every failure of an exchange sorted by
whether the request may have reached eSite (the client's design note says why)."""

from __future__ import annotations

import errno
import io
import logging
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import requests
import urllib3.exceptions
import zeep
from zeep.exceptions import TransportError
from zeep.wsdl.utils import etree_to_string

from .conf import DEFAULT_MAX_REPLY_BYTES
from .xmldocs import UnsafeXml, parse_document

MAX_WSDL_BYTES = 16 * 1024 * 1024  # eSite's WSDLs are ~30 KiB
MAX_ERROR_BODY_BYTES = 1024 * 1024  # of an HTTP error reply on the streamed path: quoted only
_READ_CHUNK = 64 * 1024


class MalformedReply(Exception):
    pass


class ReplyTooLarge(Exception):
    """A reply over the byte limit: refused on its Content-Length, or reading stopped there."""


class _ExchangeFailed(Exception):
    """The HTTP exchange itself failed. ``sent``: the request may have reached the server (it
    is False only when no connection was ever made). ``in_body``: the reply's status and
    headers had arrived, its body had not (all of it)."""

    def __init__(self, error: BaseException, *, sent: bool, in_body: bool = False):
        super().__init__(f"{type(error).__name__}: {error}")
        self.error = error
        self.sent = sent
        self.in_body = in_body


# Raised only while opening a connection: the request never left.
_CONNECT_ERRORS = (
    urllib3.exceptions.NewConnectionError,  # refused, unreachable (NameResolutionError: DNS)
    urllib3.exceptions.ConnectTimeoutError,  # not ReadTimeoutError: that one is after sending
    ssl.SSLCertVerificationError,  # the TLS handshake, before the request
    ConnectionRefusedError,
    socket.gaierror,
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
    httpx.InvalidURL,
)
# A request requests refused to build (bad URL or header): nothing was opened.
_INVALID_REQUEST = (
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidHeader,
    requests.exceptions.URLRequired,
)


def _causes(err: BaseException) -> Iterator[BaseException]:
    """The error and what it wraps: ``__cause__``, urllib3's ``reason``, exceptions in ``args``
    (how requests and urllib3 nest them). Not ``__context__``: an error merely raised while
    handling another says nothing about when this one happened."""
    seen: set[int] = set()
    todo = [err]
    while todo and len(seen) < 32:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        nested = [current.__cause__, getattr(current, "reason", None)]
        nested += [a for a in getattr(current, "args", ()) if isinstance(a, BaseException)]
        todo += [e for e in nested if isinstance(e, BaseException)]


def failed_before_sending(err: BaseException) -> bool:
    """True only when the request certainly never reached the server: no connection was made
    (refused, DNS, connect timeout, certificate refused) or the request was never built.
    Anything else (a read timeout, a reset, a cut or undecodable body, an unknown error) may
    have come after the server had the request."""
    if isinstance(err, (requests.ConnectTimeout, *_INVALID_REQUEST)):
        return True
    return any(isinstance(e, _CONNECT_ERRORS) for e in _causes(err))


def _cut_off(err: BaseException) -> bool:
    """The reply's body ended early or could not be decoded (requests and urllib3 raise these
    only once the status and headers have arrived)."""
    return isinstance(
        err,
        requests.exceptions.ChunkedEncodingError
        | requests.exceptions.ContentDecodingError
        | httpx.DecodingError,
    ) or any(
        isinstance(
            e,
            urllib3.exceptions.IncompleteRead
            | urllib3.exceptions.InvalidChunkLength
            | urllib3.exceptions.DecodeError,
        )
        for e in _causes(err)
    )


def _timed_out(err: BaseException) -> bool:
    """No (complete) reply in time: requests' ReadTimeout, or one raised mid-body, which
    requests reports as a ConnectionError wrapping urllib3's ReadTimeoutError."""
    return isinstance(err, requests.Timeout | httpx.TimeoutException) or any(
        isinstance(e, urllib3.exceptions.ReadTimeoutError | socket.timeout) for e in _causes(err)
    )


def read_bounded(response: requests.Response, limit: int, what: str) -> bytes:
    """Read a streamed requests response into memory, at most ``limit`` bytes (after content
    decoding, so a compressed bomb stops there too). A Content-Length over the limit is refused
    before anything is read. The body is then ``response.content`` as usual."""
    length = response.headers.get("Content-Length", "")
    if length.strip().isdigit() and int(length) > limit:
        response.close()
        raise ReplyTooLarge(
            f"{what} refused unread: its Content-Length ({int(length)}) is over the {limit} "
            "byte limit"
        )
    buffer = io.BytesIO()
    received = 0
    try:
        for chunk in response.iter_content(_READ_CHUNK):
            received += len(chunk)
            if received > limit:
                raise ReplyTooLarge(
                    f"{what} refused: over the {limit} byte limit (no Content-Length said "
                    "so); reading stopped there"
                )
            buffer.write(chunk)
    except BaseException:
        response.close()  # never hand a half-read connection back to the pool
        raise
    response._content = buffer.getvalue()
    response._content_consumed = True
    return response._content


class Session(requests.Session):
    """requests' Session, reading the environment's HTTP settings once per address.

    On every request requests reads the proxy variables (``HTTPS_PROXY``, ``NO_PROXY`` ...) and
    the CA bundle variables again, walking the whole environment twice: 0.2 ms of Python per
    eDex call with 35 variables, more than a sixth of a bare AddPayment on loopback. The
    environment does not change under a running process, so what it says for an address is
    worked out on the first request there and kept (a copy handed to each request). A request
    given its own proxies, or a session told not to trust the environment, goes requests' way.
    Changing the variables takes a restart of the workers, as for any setting.
    """

    _KEEP = 64  # addresses remembered (an eDex client uses a handful: WSDLs, two endpoints)

    def __init__(self):
        super().__init__()
        self._environment: dict[tuple, dict[str, Any]] = {}

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        if proxies or not self.trust_env:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        key = (url, stream, verify, cert, tuple(sorted(self.proxies.items())))
        known = self._environment.get(key)
        if known is None:
            known = super().merge_environment_settings(url, proxies, stream, verify, cert)
            if len(self._environment) < self._KEEP:
                self._environment[key] = known
        return {**known, "proxies": dict(known["proxies"])}


class _Transport(zeep.Transport):
    """zeep's transport: bounded reads, every failure of the exchange sorted by whether the
    request may have been received, and a strict parse before zeep's.

    zeep parses leniently (lxml recover mode) and then crashes with AttributeError/TypeError
    on a plain-text HTTP 500 or a truncated envelope; a strict, entity-free parse here turns
    both into errors we can classify.
    """

    def __init__(self, *args, max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_reply_bytes = max_reply_bytes
        self._calls = threading.local()

    # The phase of this thread's current call, so that the client can tell an exception zeep
    # raised before sending (a bug: nothing was sent) from one raised reading the reply.
    def begin_call(self) -> None:
        self._calls.sending = False

    def request_sent(self) -> bool:
        return getattr(self._calls, "sending", False)

    def post_xml(self, address, envelope, headers):
        message = etree_to_string(envelope)
        if self.logger.isEnabledFor(logging.DEBUG):  # as zeep logs it (masked by our logging)
            self.logger.debug("HTTP Post to %s:\n%s", address, _decode_all(message))
        self._calls.sending = True
        try:
            response = self.session.post(
                address, data=message, headers=headers, timeout=self.operation_timeout, stream=True
            )
        except Exception as err:  # sorted, not swallowed: see _ExchangeFailed
            raise _ExchangeFailed(err, sent=not failed_before_sending(err)) from err
        try:
            content = read_bounded(response, self.max_reply_bytes, "reply")
        except ReplyTooLarge:
            raise
        except Exception as err:
            raise _ExchangeFailed(err, sent=True, in_body=True) from err
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug(
                "HTTP Response from %s (status: %d):\n%s",
                address,
                response.status_code,
                _decode_all(content),
            )
        content_type = response.headers.get("Content-Type", "")
        if response.status_code >= 400 and "xml" not in content_type:
            raise TransportError(
                f"HTTP {response.status_code}",
                status_code=response.status_code,
                content=content,
            )
        try:
            parse_document(content, what="SOAP reply")
        except UnsafeXml as err:
            raise MalformedReply(str(err)) from None
        return response

    def _load_remote_data(self, url):
        response = self.session.get(url, timeout=self.load_timeout, stream=True)
        try:
            response.raise_for_status()
            return read_bounded(response, MAX_WSDL_BYTES, url)  # "<url> refused ..."
        finally:
            response.close()


_LOGIN_FAULT = re.compile(
    r"credential|password|user ?id|log ?in|authenticat|not authori[sz]ed", re.IGNORECASE
)


_FAULT_STRING = re.compile(r"<(?:\w+:)?(?:faultstring|Text)\b[^>]*>(.*?)</", re.S)


def _fault_text(text: str) -> str:
    """The faultstring (SOAP 1.1) or Reason/Text (SOAP 1.2) of a fault reply, if any."""
    match = _FAULT_STRING.search(text or "")
    return match.group(1).strip()[:300] if match else ""


def is_login_fault(text: str) -> bool:
    """A SOAP Fault that says the login failed (the amsi gem: "generally appears when there is
    an issue with the auth section in the request (e.g. invalid password)")."""
    return bool(_LOGIN_FAULT.search(text or ""))


def _read_at_most(response: httpx.Response, limit: int) -> bytes:
    """The first ``limit`` bytes of a streamed httpx body (the rest is never read)."""
    data = bytearray()
    for chunk in response.iter_bytes(_READ_CHUNK):
        data += chunk[: limit - len(data)]
        if len(data) >= limit:
            break
    return bytes(data)


def _decode_all(content: Any) -> str:
    return content.decode("utf-8", "replace") if isinstance(content, bytes) else str(content)


def _decode(content: Any) -> str:
    if isinstance(content, bytes):
        return content.decode("utf-8", "replace")[:500]
    return str(content or "")[:500]


def network_reason(err: BaseException, timeout: float) -> str:
    """A transport failure as words a person can act on ("connection refused", ...)."""
    if isinstance(err, httpx.TimeoutException | TimeoutError | socket.timeout):
        return f"timed out after {timeout:g} s"
    seen: set[int] = set()
    cause: BaseException | None = err
    chain: list[BaseException] = []
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    for item in chain:
        if isinstance(item, ssl.SSLCertVerificationError):
            return f"TLS certificate not trusted ({item.verify_message or 'verification failed'})"
        if isinstance(item, ssl.SSLError):
            return f"TLS handshake failed ({item.reason or item})"
        if isinstance(item, socket.gaierror):
            return "name not resolved"
        if isinstance(item, ConnectionRefusedError):
            return "connection refused"
        if isinstance(item, ConnectionResetError):
            return "connection reset by the server"
        if isinstance(item, OSError) and item.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return "network unreachable" if item.errno == errno.ENETUNREACH else "host unreachable"
    text = " ".join(str(item) for item in chain).lower()
    for needle, reason in (
        ("connection refused", "connection refused"),
        ("name or service not known", "name not resolved"),
        ("nodename nor servname", "name not resolved"),
        ("temporary failure in name resolution", "name not resolved"),
        ("getaddrinfo failed", "name not resolved"),
        ("no address associated", "name not resolved"),
        ("certificate verify failed", "TLS certificate not trusted"),
        ("wrong version number", "TLS handshake failed (is the port plain HTTP?)"),
        ("network is unreachable", "network unreachable"),
        ("no route to host", "host unreachable"),
        ("connection reset", "connection reset by the server"),
        ("timed out", f"timed out after {timeout:g} s"),
        ("server disconnected", "the server closed the connection without a reply"),
    ):
        if needle in text:
            return reason
    words = re.sub(r"\[Errno -?\d+\]\s*", "", str(chain[-1])).strip()
    return words or "the connection failed"


# -- the probe ---------------------------------------------------------------------------------
