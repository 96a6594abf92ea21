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

import logging
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import requests
import zeep
from lxml import etree
from zeep.exceptions import Error as ZeepError
from zeep.exceptions import Fault, TransportError

from integrations.exceptions import (
    AmbiguousOutcome,
    ConnectionTestFailed,
    IntegrationError,
    RetryableError,
)
from integrations.logging import mask, register_secret

from . import PROVIDER_ID
from .conf import AmsiSettings
from .errors import (
    TEST_LOGIN_REFUSED,
    UNKNOWN_PORTFOLIO,
    UNKNOWN_PROPERTY,
    LoginRefused,
    error_for,
    is_error_document,
    portfolio_refusal,
)
from .properties import parse_property_list
from .streaming import _EdexError, _EnvelopeReader
from .transport import (
    MAX_ERROR_BODY_BYTES,
    MalformedReply,
    ReplyTooLarge,
    Session,
    _cut_off,
    _decode,
    _ExchangeFailed,
    _fault_text,
    _read_at_most,
    _timed_out,
    _Transport,
    failed_before_sending,
    is_login_fault,
    network_reason,
)
from .xmldocs import (
    MAX_DOCUMENT_BYTES,
    UnsafeXml,
    leasing_error,
    parse_document,
    parse_ledger_result,
)

log = logging.getLogger(__name__)

WSDL_TIMEOUT = 10.0
SOAP_ACTION = "http://tempuri.org/{}"

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


class EdexClient:
    def __init__(self, settings: AmsiSettings):
        self.settings = settings
        register_secret(settings.password)
        self._services: dict[str, Any] = {}
        self._zeep: dict[str, zeep.Client] = {}
        self._lock = threading.Lock()
        self._session = Session()  # the environment's proxies read once (transport.py)

    # -- plumbing ------------------------------------------------------------------------------
    def _context(self, operation: str, record: str = "") -> dict[str, str]:
        return {"provider": PROVIDER_ID, "operation": operation, "record": record}

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
                    f"{_wsdl_failure(err, self.settings.timeout)}",
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
        except Exception as err:  # a read: whatever broke, try again later
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
            portfolio = portfolio_refusal(err)
            if portfolio == "code":
                # Only the code says so, and the code is the sandbox's (docs/amsi-evidence.md).
                what = (
                    f"unknown portfolio {self.settings.portfolio!r}? (error code "
                    f"{UNKNOWN_PORTFOLIO} is the sandbox's code for it; what a real eSite means "
                    "by it is not known: check the UserID and Password too)"
                )
            elif portfolio == "said":
                what = f"unknown portfolio {self.settings.portfolio!r}"
            else:
                what = "bad login: AMSI refused the UserID or Password"
            raise ConnectionTestFailed(
                f"{what} (credentials refused: {err.message}); postings for this connection "
                "wait until a test passes",
                code=TEST_LOGIN_REFUSED,
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
                        f"unknown property {self.settings.property_id!r} (GetPropertyUnits "
                        f"answered error code {UNKNOWN_PROPERTY}, the sandbox's code for an "
                        f"unknown property: {err.message})",
                        **context,
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


def _wsdl_failure(err: requests.RequestException, timeout: float) -> str:
    """Why the WSDL could not be read, in words: the HTTP status, or the network reason."""
    response = getattr(err, "response", None)
    if response is not None:
        return f"HTTP {response.status_code} {response.reason or ''}".rstrip()
    return network_reason(err, timeout)
