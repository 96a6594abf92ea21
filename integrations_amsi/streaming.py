"""Streaming a residents reply: an lxml target parser pulls the escaped XMLData out of the SOAP
envelope chunk by chunk and a pull parser yields one element at a time (memory stays flat)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from lxml import etree

from .xmldocs import UnsafeXml, local, safe_parser

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
    """lxml parser target: collects the text of <{name}> (the escaped XMLData) in ``text``.

    lxml hands the text over in fragments, one per entity (``&lt;``): 1.8 million calls for
    100,000 leases. They are collected here and passed on once per chunk read (``take``).
    """

    def __init__(self, name: str):
        self.name = name
        self.text: list[str] = []
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
            self.text.append(text)
        elif self._in_fault:
            self.fault.append(text)

    def doctype(self, *args):
        raise UnsafeXml("the SOAP reply carries a DTD, which is refused")

    def comment(self, text):
        pass

    def close(self):
        return None

    def take(self) -> str:
        text = "".join(self.text)
        self.text.clear()
        return text


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
        self.target = _ResultTarget(result_name)
        self.outer = safe_parser(target=self.target)
        self.root_name = ""
        self.error: dict[str, str] = {}
        self._head = ""
        self._sniffed = False

    def _feed_inner(self, text: str) -> None:
        if not text:
            return
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
        self._feed_inner(self.target.take())
        yield from self._events()

    def close(self) -> Iterator[etree._Element]:
        self.outer.close()
        self._feed_inner(self.target.take())
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
            if event == "start":
                if not self.root_name:
                    self.root_name = local(el.tag)
                continue
            name = local(el.tag)
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
