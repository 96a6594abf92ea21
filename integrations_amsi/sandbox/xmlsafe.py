"""Hardened XML parsing: no DTD, no entities, no network, no huge trees.

Every document the sandbox reads (SOAP envelopes, XMLData strings, control uploads) goes
through here, so a billion-laughs bomb or an external entity never gets expanded.
"""

from __future__ import annotations

import re
from typing import IO

from lxml import etree

# A DOCTYPE can only sit in the prolog (before the root element); CDATA later may mention one.
_DOCTYPE = re.compile(rb"\A(?:\xef\xbb\xbf)?(?:\s|<\?.*?\?>|<!--.*?-->)*<!DOCTYPE", re.S | re.I)


class XmlRejected(ValueError):
    """The document is not acceptable XML (malformed, DOCTYPE, too big)."""


def parser() -> etree.XMLParser:
    """A fresh parser per call: lxml parsers are not thread-safe."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        huge_tree=False,
        load_dtd=False,
        dtd_validation=False,
        remove_blank_text=False,
    )


def _check_prolog(data: bytes) -> None:
    head = data[:65536]
    if _DOCTYPE.match(head):
        raise XmlRejected("DOCTYPE and entity declarations are not allowed")


def parse_bytes(data: bytes) -> etree._Element:
    """Parse a whole document held in memory; raise XmlRejected on anything odd."""
    if not data or not data.strip():
        raise XmlRejected("empty document")
    _check_prolog(data)
    try:
        root = etree.fromstring(data, parser())
    except etree.XMLSyntaxError as err:
        raise XmlRejected(f"not well-formed XML: {err}") from err
    if root.getroottree().docinfo.doctype:
        raise XmlRejected("DOCTYPE is not allowed")
    return root


def parse_text(text: str) -> etree._Element:
    """Parse an XMLData string (escaped or CDATA in the envelope: already plain text here)."""
    text = text.strip()
    if text.startswith("<?xml"):
        # lxml refuses str input with an encoding declaration; drop it, we hold text.
        end = text.find("?>")
        text = text[end + 2 :] if end != -1 else text
    return parse_bytes(text.encode("utf-8"))


def iterparse_file(fh: IO[bytes], tag: str) -> etree.iterparse:
    """Stream the children named `tag` of a large upload (100k leases) with the same hardening."""
    head = fh.read(65536)
    _check_prolog(head)
    fh.seek(0)
    return etree.iterparse(
        fh,
        events=("end",),
        tag=tag,
        resolve_entities=False,
        no_network=True,
        huge_tree=False,
        load_dtd=False,
    )


def local(tag: object) -> str:
    """Local name of an element tag, '' for comments and processing instructions."""
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1]


def escape_attr(value: str) -> str:
    """Escape an attribute value the way lxml serialises it."""
    return (
        value.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("\n", "&#10;")
        .replace("\r", "&#13;")
        .replace("\t", "&#9;")
    )


def escape_text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def start_tag(tag: str, attrs: list[tuple[str, str]] | dict[str, str], close: bool = False) -> str:
    """Build `<tag a="..." ...>` quickly (string building beats lxml for 100k leases)."""
    items = attrs.items() if isinstance(attrs, dict) else attrs
    body = "".join(f' {k}="{escape_attr(v)}"' for k, v in items)
    return f"<{tag}{body} />" if close else f"<{tag}{body}>"
