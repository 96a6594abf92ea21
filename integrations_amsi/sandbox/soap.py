"""SOAP 1.1 / 1.2 envelopes as ASP.NET .asmx writes them, and the dispatch of one call."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from . import books, leasing
from .codes import DotNetFault, ErrorCode, SandboxError
from .edex import check_login, error_document, parse_xmldata
from .store import Store
from .variants import defaults
from .wsdl import TNS, operations
from .xmlsafe import XmlRejected, escape_text, local, parse_bytes

log = logging.getLogger(__name__)

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
SUPPORTED = {
    "leasing": {
        "GetPropertyList",
        "GetPropertyUnits",
        "GetPropertyResidents",
        "GetResidentsByStatusChangeOrTransactionDate",
        "GetResidentsByStatusChange",
    },
    "ledger": {"AddPayment", "ReturnPayment", "UpdateSettlementData"},
}


_XSI_XSD = (
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    'xmlns:xsd="http://www.w3.org/2001/XMLSchema"'
)


class SoapFault(Exception):
    """A transport-level failure (bad envelope): HTTP 500 with a SOAP Fault, as ASP.NET does."""

    def __init__(self, message: str, client: bool = True, version: str = SOAP11) -> None:
        super().__init__(message)
        self.client = client
        self.version = version


@dataclass
class Call:
    service: str
    operation: str
    version: str
    params: dict[str, str]


def parse_call(service: str, body: bytes, soap_action: str | None) -> Call:
    """Read the envelope; the operation is the Body's first element (checked against SOAPAction)."""
    try:
        root = parse_bytes(body)
    except XmlRejected as err:
        raise SoapFault(f"Server was unable to read request. ---> {err}") from err
    ns = root.tag.split("}")[0].lstrip("{") if root.tag.startswith("{") else ""
    if local(root.tag) != "Envelope" or ns not in (SOAP11, SOAP12):
        raise SoapFault("Server was unable to read request: root element is not a SOAP Envelope.")
    version = ns
    body_el = root.find(f"{{{ns}}}Body")
    if body_el is None or len(body_el) == 0:
        raise SoapFault("Server was unable to read request: no SOAP Body.", version=version)
    op_el = next((c for c in body_el if local(c.tag)), None)
    if op_el is None:
        raise SoapFault("Server was unable to read request: empty SOAP Body.", version=version)
    name = local(op_el.tag)
    if name not in operations(service):
        raise SoapFault(
            f"Server did not recognize the value of HTTP Header SOAPAction: {soap_action or name}.",
            version=version,
        )
    if soap_action:
        action = soap_action.strip().strip('"')
        if action and action != f"{TNS}{name}":
            raise SoapFault(
                f"Server did not recognize the value of HTTP Header SOAPAction: {action}.",
                version=version,
            )
    params = {local(c.tag): (c.text or "") for c in op_el if local(c.tag)}
    return Call(service, name, version, params)


def execute(
    store: Store, config: dict[str, str], call: Call, variants: Mapping[str, str] | None = None
) -> str:
    """Run one operation; business refusals become the Result document.

    Raises SoapFault (HTTP 500) where an asmx method throws: an id that Int32.Parse refuses
    (ids=int32) and, with login_error=fault, bad credentials.
    """
    values = {**defaults(), **(variants or {})}
    op = call.operation
    p = call.params
    ledger = call.service == "ledger"
    try:
        check_login(config, p.get("UserID"), p.get("Password"), p.get("PortfolioName"))
        if op not in SUPPORTED[call.service]:
            raise SandboxError(ErrorCode.NOT_SUPPORTED, op)
        root = parse_xmldata(p.get("XMLData"))
        if ledger:
            prelim = p.get("preliminary", "0").strip()
            if prelim not in ("0", "1", ""):
                raise SandboxError(ErrorCode.INVALID_FIELD, f"preliminary {prelim!r}")
            validate_only = prelim == "1" and values["preliminary"] == "validate"
            return books.handle(store, config["user"], op, root, validate_only, values)
        return leasing.handle(store, op, root, values)
    except SandboxError as err:
        if err.code == ErrorCode.INVALID_LOGIN and values["login_error"] == "fault":
            log.info("%s refused with a fault: bad credentials", op)
            raise SoapFault(str(DotNetFault(err.description)), client=False, version=call.version)
        log.info("%s refused: %s %s", op, int(err.code), err.description)
        return error_document(err, call.service, op)
    except DotNetFault as err:
        log.info("%s faults: %s", op, err.message)
        raise SoapFault(str(err), client=False, version=call.version) from err


def response(call: Call, result: str) -> tuple[str, bytes]:
    env = "soap" if call.version == SOAP11 else "soap12"
    ctype = "text/xml" if call.version == SOAP11 else "application/soap+xml"
    text = (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<{env}:Envelope xmlns:{env}="{call.version}" {_XSI_XSD}>'
        f'<{env}:Body><{call.operation}Response xmlns="{TNS}">'
        f"<{call.operation}Result>{escape_text(result)}</{call.operation}Result>"
        f"</{call.operation}Response></{env}:Body></{env}:Envelope>"
    )
    return f"{ctype}; charset=utf-8", text.encode("utf-8")


def fault(err: SoapFault) -> tuple[str, bytes]:
    msg = escape_text(str(err))
    if err.version == SOAP12:
        code = "soap:Sender" if err.client else "soap:Receiver"
        body = (
            f"<soap:Fault><soap:Code><soap:Value>{code}</soap:Value></soap:Code>"
            f'<soap:Reason><soap:Text xml:lang="en">{msg}</soap:Text></soap:Reason>'
            "<soap:Detail /></soap:Fault>"
        )
        ctype = "application/soap+xml; charset=utf-8"
    else:
        code = "soap:Client" if err.client else "soap:Server"
        body = (
            f"<soap:Fault><faultcode>{code}</faultcode><faultstring>{msg}</faultstring>"
            "<detail /></soap:Fault>"
        )
        ctype = "text/xml; charset=utf-8"
    text = (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<soap:Envelope xmlns:soap="{err.version}" {_XSI_XSD}>'
        f"<soap:Body>{body}</soap:Body></soap:Envelope>"
    )
    return ctype, text.encode("utf-8")
