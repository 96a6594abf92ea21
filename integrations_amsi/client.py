"""The eDex SOAP client: zeep, one long-lived client per process and connection.

Design notes:
- The WSDLs are fetched and parsed once per process and connection (zeep parsing is the slow
  part); the cache key includes the settings that shape the client, so editing a connection in
  the admin takes effect on the next call.
- Every operation has a timeout (zeep's default is none at all): ``operation_timeout`` below the
  django-q2 task timeout.
- Small replies go through zeep as usual. Resident lists can be 100,000 leases, so those replies
  are streamed: zeep builds the envelope, httpx streams the response, an lxml target parser pulls
  the escaped XMLData out of the envelope chunk by chunk and feeds a second pull parser that
  yields one <Lease> at a time. Memory stays flat whatever the portfolio size.
- Failures are sorted for the outbox by one question: may the request have reached eSite?
  "Failed before sending" (connection refused, DNS failure, connect timeout) is retryable, even
  for a write. "May have been received" (read timeout, reset mid-call, a reply cut off mid-body
  or undecodable, HTTP 5xx, a malformed reply, any exception while reading or processing the
  reply) is an *unknown* outcome for a write and retryable for a read. No exception of the HTTP
  stack or of zeep's reply processing escapes as a crash; an exception before anything was sent
  (a bug building the request) does, since nothing is unknown about it.
- Replies are bounded: a reply read whole stops at the connection's ``max_reply_bytes``
  (default 64 MiB; a Content-Length over it is refused before reading), a streamed resident
  list at ``MAX_DOCUMENT_BYTES`` (512 MiB), a WSDL at ``MAX_WSDL_BYTES``, the body of an HTTP
  error on the streamed path at ``MAX_ERROR_BODY_BYTES``.
- A refused login is its own failure, whichever way eSite says it: the error document with
  code 1 "Validation of user credentials failed." (seen in production) or a SOAP Fault whose
  text says the credentials failed (documented by the amsi gem). Either raises LoginRefused,
  which pauses the connection's postings instead of failing each.
- Ledger writes send ``preliminary=0``, as every production client did; nothing public shows
  what ``preliminary=1`` does, so this client never relies on it.
"""

from __future__ import annotations

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
from lxml import etree
from zeep.exceptions import Error as ZeepError
from zeep.exceptions import Fault, TransportError
from zeep.wsdl.utils import etree_to_string

from integrations.exceptions import (
    AmbiguousOutcome,
    ConnectionTestFailed,
    IntegrationError,
    RetryableError,
)
from integrations.logging import mask, register_secret

from .conf import DEFAULT_MAX_REPLY_BYTES, AmsiSettings
from .errors import (
    UNKNOWN_PORTFOLIO,
    UNKNOWN_PROPERTY,
    LoginRefused,
    error_for,
    is_error_document,
)
from .properties import parse_property_list
from .xmldocs import (
    MAX_DOCUMENT_BYTES,
    UnsafeXml,
    leasing_error,
    local,
    parse_document,
    parse_ledger_result,
    safe_parser,
)

log = logging.getLogger(__name__)

WSDL_TIMEOUT = 10.0
SOAP_ACTION = "http://tempuri.org/{}"
MAX_WSDL_BYTES = 16 * 1024 * 1024  # eSite's WSDLs are ~30 KiB
MAX_ERROR_BODY_BYTES = 1024 * 1024  # of an HTTP error reply on the streamed path: quoted only
_READ_CHUNK = 64 * 1024

_clients: dict[tuple, EdexClient] = {}
_clients_lock = threading.Lock()


def get_client(settings: AmsiSettings, *, key: Any = None) -> EdexClient:
    """The process-wide client for these settings (WSDLs parsed once)."""
    cache_key = (key, settings)
    with _clients_lock:
        client = _clients.get(cache_key)
    if client is None:
        client = EdexClient(settings)
        with _clients_lock:
            client = _clients.setdefault(cache_key, client)
    return client


def clear_clients() -> None:
    with _clients_lock:
        _clients.clear()


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
        except Exception as err:  # noqa: BLE001  (sorted, not swallowed: see _ExchangeFailed)
            raise _ExchangeFailed(err, sent=not failed_before_sending(err)) from err
        try:
            content = read_bounded(response, self.max_reply_bytes, "reply")
        except ReplyTooLarge:
            raise
        except Exception as err:  # noqa: BLE001
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


class EdexClient:
    def __init__(self, settings: AmsiSettings):
        self.settings = settings
        register_secret(settings.password)
        self._services: dict[str, Any] = {}
        self._zeep: dict[str, zeep.Client] = {}
        self._lock = threading.Lock()
        self._session = requests.Session()

    # -- plumbing ------------------------------------------------------------------------------
    def _context(self, operation: str, record: str = "") -> dict[str, str]:
        return {"provider": "amsi", "operation": operation, "record": record}

    def _service(self, name: str):
        """The bound SOAP 1.1 service ("Leasing" or "Ledger"), WSDL loaded on first use."""
        with self._lock:
            if name in self._services:
                return self._zeep[name], self._services[name]
            wsdl = self.settings.leasing_wsdl if name == "Leasing" else self.settings.ledger_wsdl
            transport = _Transport(
                session=self._session,
                timeout=WSDL_TIMEOUT,
                operation_timeout=self.settings.timeout,
                max_reply_bytes=self.settings.max_reply_bytes,
            )
            zsettings = zeep.Settings(
                strict=False,
                xml_huge_tree=False,
                forbid_dtd=True,
                forbid_entities=True,
                forbid_external=True,
            )
            try:
                client = zeep.Client(wsdl, transport=transport, settings=zsettings)
            except requests.RequestException as err:
                raise RetryableError(
                    f"cannot reach the eDex services at {self.settings.base_url}: "
                    f"{type(err).__name__}",
                    **self._context(f"load {name} WSDL"),
                ) from err
            except ReplyTooLarge as err:
                raise RetryableError(
                    f"the WSDL at {err}; is the URL the eDex base?",
                    **self._context(f"load {name} WSDL"),
                ) from err
            except (ZeepError, etree.XMLSyntaxError) as err:
                raise RetryableError(
                    f"{wsdl} did not return a usable WSDL ({err}); is the URL the eDex base?",
                    **self._context(f"load {name} WSDL"),
                ) from err
            # Always the SOAP 1.1 port, pointed at the configured host (the WSDL's own address
            # may name an internal host).
            binding = f"{{http://tempuri.org/}}{name}Soap"
            address = f"{self.settings.base_url}/{name.lower()}.asmx"
            service = client.create_service(binding, address)
            self._zeep[name] = client
            self._services[name] = service
            return client, service

    def _credentials(self) -> dict[str, str]:
        return {
            "UserID": self.settings.user_id,
            "Password": self.settings.password,
            "PortfolioName": self.settings.portfolio,
        }

    def _call(self, service_name: str, operation: str, *, write: bool, record: str = "", **params):
        """One small SOAP call. Failed before sending: RetryableError. May have been received:
        AmbiguousOutcome for a write, RetryableError for a read."""
        client, service = self._service(service_name)
        transport = client.transport
        context = self._context(operation, record)
        failure = AmbiguousOutcome if write else RetryableError
        transport.begin_call()
        try:
            result = getattr(service, operation)(**self._credentials(), **params)
        except _ExchangeFailed as exc:
            raise self._exchange_failure(exc, failure, context) from exc.error
        except ReplyTooLarge as err:
            raise failure(str(err), **context) from err
        except Fault as err:
            text = mask(str(err.message))[:300]
            if is_login_fault(text):
                raise LoginRefused(f"AMSI refused the login: {text}", **context) from err
            raise failure(f"SOAP fault: {text}", **context) from err
        except TransportError as err:
            raise failure(
                f"HTTP {err.status_code} from eDex",
                response=_decode(err.content),
                **context,
            ) from err
        except MalformedReply as err:
            raise failure(f"malformed reply: {err}", **context) from err
        except IntegrationError:
            raise
        except Exception as err:
            if not transport.request_sent():
                raise  # a bug building the request: nothing was sent, nothing is unknown
            # zeep failed on a reply it was given (it has raised AttributeError, TypeError,
            # its own errors, lxml's): the request was sent, so for a write it may have landed.
            raise failure(
                f"malformed reply: {type(err).__name__}: {mask(str(err))[:300]}", **context
            ) from err
        if result is None:
            raise failure("empty result", **context)
        return str(result)

    def _exchange_failure(
        self, exc: _ExchangeFailed, failure: type[IntegrationError], context: dict[str, str]
    ) -> IntegrationError:
        err = exc.error
        name = type(err).__name__
        if not exc.sent:
            return RetryableError(
                f"cannot connect to {self.settings.base_url} ({name}): nothing was sent",
                **context,
            )
        if _timed_out(err):
            return failure(f"no reply within {self.settings.timeout:g} s ({name})", **context)
        if exc.in_body or _cut_off(err):
            return failure(
                f"the reply was cut off mid-body ({name}: {mask(str(err))[:200]})", **context
            )
        return failure(f"connection failed mid-call: {name}", **context)

    # -- leasing reads -----------------------------------------------------------------------
    def leasing_document(self, operation: str, xmldata: str) -> etree._Element:
        """A small leasing read, parsed; eDex errors raised by the error table."""
        text = self._call("Leasing", operation, write=False, XMLData=xmldata)
        try:
            root = parse_document(text, what=f"{operation} result")
        except UnsafeXml as err:
            raise RetryableError(str(err), response=text[:500], **self._context(operation)) from err
        error = leasing_error(root)
        if error:
            code, description = error
            raise error_for(code, description, operation=operation, record="", response=text[:500])
        return root

    def stream_leases(self, operation: str, xmldata: str) -> Iterator[etree._Element]:
        return self.stream_elements(operation, xmldata, "Lease")

    def stream_elements(
        self, operation: str, xmldata: str, element: str
    ) -> Iterator[etree._Element]:
        """Yield each <Lease> element of a (possibly huge) residents reply, one at a time.

        The element is cleared after the consumer moves on; copy what you need.
        """
        client, _service = self._service("Leasing")
        context = self._context(operation)
        envelope = client.create_message(
            client.service, operation, **self._credentials(), XMLData=xmldata
        )
        body = etree.tostring(envelope, xml_declaration=True, encoding="utf-8")
        url = f"{self.settings.base_url}/leasing.asmx"
        headers = {
            "Content-Type": "text/xml; charset=utf-8",
            "SOAPAction": f'"{SOAP_ACTION.format(operation)}"',
        }
        timeout = httpx.Timeout(self.settings.timeout, connect=min(self.settings.timeout, 10.0))
        reader = _EnvelopeReader(f"{operation}Result", element)
        received = 0
        limit = MAX_DOCUMENT_BYTES
        in_body = False
        # A read: every failure is retryable. The message still says whether the request left.
        try:
            with httpx.stream("POST", url, content=body, headers=headers, timeout=timeout) as resp:
                in_body = True  # the status and headers are here
                if resp.status_code != 200:
                    text = _read_at_most(resp, MAX_ERROR_BODY_BYTES).decode("utf-8", "replace")
                    fault = _fault_text(text)
                    if is_login_fault(fault):
                        raise LoginRefused(f"AMSI refused the login: {mask(fault)}", **context)
                    raise RetryableError(
                        f"HTTP {resp.status_code} from eDex"
                        + (f": SOAP fault: {mask(fault)}" if fault else ""),
                        response=text[:500],
                        **context,
                    )
                length = resp.headers.get("Content-Length", "")
                if length.strip().isdigit() and int(length) > limit:
                    raise RetryableError(
                        f"reply over {limit} bytes refused: its Content-Length is "
                        f"{int(length)}; not read",
                        **context,
                    )
                for chunk in resp.iter_bytes(256 * 1024):
                    received += len(chunk)
                    if received > limit:
                        raise RetryableError(f"reply over {limit} bytes refused", **context)
                    yield from reader.feed(chunk)
                yield from reader.close()
        except _EdexError as err:
            if not err.code and is_login_fault(err.description):
                raise LoginRefused(
                    f"AMSI refused the login: {mask(err.description)}", **context
                ) from None
            raise error_for(
                err.code, err.description, operation=operation, record="", response=err.text
            ) from None
        except IntegrationError:
            raise
        except (etree.XMLSyntaxError, UnsafeXml) as err:
            raise RetryableError(f"malformed reply: {err}", **context) from err
        except Exception as err:  # noqa: BLE001  (a read: whatever broke, try again later)
            raise RetryableError(self._stream_failure(err, in_body), **context) from err

    def _stream_failure(self, err: Exception, in_body: bool) -> str:
        name = type(err).__name__
        if not in_body and failed_before_sending(err):
            return f"cannot connect to {self.settings.base_url} ({name}): nothing was sent"
        if _timed_out(err):
            return f"no reply within {self.settings.timeout:g} s ({name})"
        if in_body or _cut_off(err):
            return f"the reply was cut off mid-body ({name}: {mask(str(err))[:200]})"
        return f"connection to {self.settings.base_url} failed mid-call: {name}: {err}"[:400]

    # -- ledger writes -------------------------------------------------------------------------
    def ledger(self, operation: str, xmldata: str, *, record: str):
        """A ledger write; returns the first reply and the masked reply text.

        ``preliminary`` is always 0: the production clients never sent anything else, and
        what eSite does with 1 is unknown (it might validate only, or write).
        """
        text = self._call(
            "Ledger", operation, write=True, record=record, preliminary=0, XMLData=xmldata
        )
        try:
            replies = parse_ledger_result(text, what=f"{operation} result")
        except UnsafeXml as err:
            raise AmbiguousOutcome(
                f"malformed reply: {err}", response=text[:500], **self._context(operation, record)
            ) from err
        return replies[0], mask(text)

    # -- connection test -------------------------------------------------------------------
    def test(self) -> str:
        """Check reachability, login, portfolio and property; say exactly what is wrong."""
        context = self._context("test")
        try:
            root = self.leasing_document("GetPropertyList", "")
        except LoginRefused as err:
            if err.code == UNKNOWN_PORTFOLIO or "portfolio" in err.message.lower():
                what = f"unknown portfolio {self.settings.portfolio!r}"
            else:
                what = "bad login: AMSI refused the UserID or Password"
            raise ConnectionTestFailed(
                f"{what} (credentials refused: {err.message}); postings for this connection "
                "wait until a test passes",
                code="LOGIN",
                **context,
            ) from err
        except RetryableError as err:
            raise ConnectionTestFailed(f"unreachable: {err.message}", **context) from err
        except IntegrationError as err:
            # An error document for the property list is not proof of anything: ask for the
            # property itself below (production clients met error documents for empty lists).
            log.info("GetPropertyList answered an error document: %s", err)
            root = None
        ids = [p.property_id for p in parse_property_list(root)] if root is not None else []
        if ids and self.settings.property_id not in ids:
            raise ConnectionTestFailed(
                f"unknown property {self.settings.property_id!r} in portfolio "
                f"{self.settings.portfolio!r} (it has: {', '.join(ids[:20])})",
                **context,
            )
        if not ids:
            # GetPropertyList may be empty for some users: ask for the property directly.
            try:
                self.leasing_document(
                    "GetPropertyUnits",
                    f"<EDEX><propertyid>{self.settings.property_id}</propertyid>"
                    "<includeallstatuses>0</includeallstatuses></EDEX>",
                )
            except IntegrationError as err:
                if err.code == UNKNOWN_PROPERTY:
                    raise ConnectionTestFailed(
                        f"unknown property {self.settings.property_id!r}", **context
                    ) from err
                if not is_error_document(err):
                    raise
                # Nothing confirmed the portfolio or the property: never say "connected".
                raise ConnectionTestFailed(
                    "could not confirm the portfolio and property: GetPropertyList listed "
                    f"nothing and GetPropertyUnits for {self.settings.property_id!r} answered "
                    f"error code {err.code}: {err.message}. Check the PortfolioName and the "
                    "PropertyId with AMSI",
                    **context,
                ) from err
        return (
            f"connected to {self.settings.base_url} as {self.settings.user_id}, portfolio "
            f"{self.settings.portfolio}, property {self.settings.property_id}"
        )


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


_FIRST_START_TAG = re.compile(r"<[A-Za-z_]")
_MAX_PROLOG = 1024 * 1024


def _without_comments(text: str) -> str:
    """The text with complete comments removed and an unfinished one cut off."""
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    cut = text.find("<!--")
    return text if cut < 0 else text[:cut]


class _EdexError(Exception):
    def __init__(self, code: str, description: str, text: str):
        self.code, self.description, self.text = code, description, text


class _ResultTarget:
    """lxml parser target: passes the text of <{name}> (the escaped XMLData) to ``sink``."""

    def __init__(self, name: str, sink):
        self.name = name
        self.sink = sink
        self.inside = False
        self.seen = False
        self.fault: list[str] = []
        self._in_fault = False

    def start(self, tag, attrib):
        name = local(tag)
        if name == self.name:
            self.inside = self.seen = True
        elif name in ("faultstring", "Text"):
            self._in_fault = True

    def end(self, tag):
        name = local(tag)
        if name == self.name:
            self.inside = False
        elif name in ("faultstring", "Text"):
            self._in_fault = False

    def data(self, text):
        if self.inside:
            self.sink(text)
        elif self._in_fault:
            self.fault.append(text)

    def doctype(self, *args):
        raise UnsafeXml("the SOAP reply carries a DTD, which is refused")

    def comment(self, text):
        pass

    def close(self):
        return None


class _EnvelopeReader:
    """Stream-parse a SOAP envelope whose Result holds a residents document."""

    def __init__(self, result_name: str, element: str = "Lease"):
        self.element = element
        self.inner = etree.XMLPullParser(
            events=("start", "end"),
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            huge_tree=False,
        )
        self.target = _ResultTarget(result_name, self._feed_inner)
        self.outer = safe_parser(target=self.target)
        self.root_name = ""
        self.error: dict[str, str] = {}
        self._head = ""
        self._sniffed = False

    def _feed_inner(self, text: str) -> None:
        if self._sniffed:
            self.inner.feed(text)
            return
        self._head += text
        if _FIRST_START_TAG.search(_without_comments(self._head)) or len(self._head) > _MAX_PROLOG:
            self._flush_head()

    def _flush_head(self) -> None:
        # Everything before the root element (the prolog) is checked as a whole, however long
        # the comments or whitespace in front: a DTD is refused before the parser sees it.
        self._sniffed = True
        visible = _without_comments(self._head)
        match = _FIRST_START_TAG.search(visible)
        if match is None and len(self._head) > _MAX_PROLOG:
            raise UnsafeXml("the residents document has no root element in its first 1 MB")
        prolog = visible[: match.start()] if match else visible
        if "<!DOCTYPE" in prolog.upper() or "<!ENTITY" in prolog.upper():
            raise UnsafeXml("the residents document carries a DTD, which is refused")
        self.inner.feed(self._head)
        self._head = ""

    def feed(self, chunk: bytes) -> Iterator[etree._Element]:
        self.outer.feed(chunk)
        yield from self._events()

    def close(self) -> Iterator[etree._Element]:
        self.outer.close()
        if self.target.fault:
            raise _EdexError("", "SOAP fault: " + "".join(self.target.fault)[:300], "")
        if not self.target.seen:
            raise UnsafeXml("the reply has no result element")
        if not self._sniffed:
            self._flush_head()
        yield from self._events()
        self.inner.close()
        if self.root_name == "InternetTrafficResponse":
            raise _EdexError(
                self.error.get("ErrorCode", ""), self.error.get("ErrorDescription", ""), ""
            )
        if not self.root_name:
            raise UnsafeXml("the result is empty")

    def _events(self) -> Iterator[etree._Element]:
        for event, el in self.inner.read_events():
            name = local(el.tag)
            if event == "start":
                if not self.root_name:
                    self.root_name = name
                continue
            if self.root_name == "InternetTrafficResponse":
                if name in ("ErrorCode", "ErrorDescription"):
                    self.error[name] = (el.text or "").strip()
                continue
            if (
                name == self.element
                and el.getparent() is not None
                and el.getparent().getparent() is None
            ):
                yield el
                # Free what was parsed so far: memory stays flat for 100,000 leases.
                el.clear()
                parent = el.getparent()
                while el.getprevious() is not None:
                    del parent[0]
