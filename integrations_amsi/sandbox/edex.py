"""Shared eDex plumbing: reading XMLData leniently and shaping error results."""

from __future__ import annotations

import re

from lxml import etree

from .codes import DotNetFault, ErrorCode, SandboxError
from .xmlsafe import XmlRejected, escape_text, local, parse_text


def parse_xmldata(text: str | None) -> etree._Element:
    """Parse XMLData; tolerate `<edex>` casing and a doubled `<EDEX><EDEX>` root."""
    if not (text or "").strip():
        # GetPropertyList is called with an empty XMLData.
        return etree.Element("EDEX")
    try:
        root = parse_text(text or "")
    except XmlRejected as err:
        raise SandboxError(ErrorCode.MALFORMED_XMLDATA, str(err)) from err
    while local(root.tag).lower() == "edex":
        kids = [c for c in root if local(c.tag)]
        if len(kids) == 1 and local(kids[0].tag).lower() == "edex":
            root = kids[0]
        else:
            break
    return root


def fields(el: etree._Element) -> dict[str, str]:
    """Child elements by lower-cased local name -> stripped text."""
    return {local(c.tag).lower(): (c.text or "").strip() for c in el if local(c.tag)}


def flag(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "y", "yes")


SERVICE_NAMES = {"leasing": "Leasing", "ledger": "Ledger"}


def error_document(err: SandboxError, service: str, operation: str) -> str:
    """A whole-call refusal, the shape eSite answers bad credentials with (production evidence):
    InternetTrafficResponse with webservice and webmethod, then Error."""
    return (
        "<InternetTrafficResponse>"
        f"<webservice>{SERVICE_NAMES.get(service, service)}</webservice>"
        f"<webmethod>{escape_text(operation)}</webmethod><Error>"
        f"<ErrorCode>{int(err.code)}</ErrorCode>"
        f"<ErrorDescription>{escape_text(err.description)}</ErrorDescription>"
        "</Error></InternetTrafficResponse>"
    )


def check_login(
    config: dict[str, str], user: str | None, password: str | None, portfolio: str | None
) -> None:
    """Credentials first, then the portfolio, as a login screen would."""
    if (user or "") != config["user"] or (password or "") != config["password"]:
        raise SandboxError(ErrorCode.INVALID_LOGIN)
    if (portfolio or "").strip().lower() != config["portfolio"].lower():
        raise SandboxError(ErrorCode.UNKNOWN_PORTFOLIO)


# .NET Int32.Parse(s) with NumberStyles.Integer: optional white space (U+0009-U+000D, U+0020)
# around an optional sign and ASCII digits, nothing else.
_INT32 = re.compile(r"[\t\n\v\f\r ]*([+-]?)([0-9]+)[\t\n\v\f\r ]*\Z")
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def parse_int32(value: str | None) -> int:
    """What Int32.Parse returns, or the DotNetFault its exception becomes in an asmx reply."""
    match = _INT32.match(value or "")
    if match is None:
        raise DotNetFault(DotNetFault.FORMAT)
    number = int(match.group(1) + match.group(2))
    if not INT32_MIN <= number <= INT32_MAX:
        raise DotNetFault(DotNetFault.OVERFLOW)
    return number
