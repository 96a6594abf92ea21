"""eDex XMLData documents: built with the exact casing AMSI expects, parsed safely with lxml.

Every parser here refuses DTDs and never expands entities (a billion-laughs reply is an error,
not a memory blow-up), and documents over ``MAX_DOCUMENT_BYTES`` are refused.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from lxml import etree

from .errors import SUCCESS

MAX_DOCUMENT_BYTES = 512 * 1024 * 1024


class UnsafeXml(ValueError):
    """A document that is not well-formed, carries a DTD, or is too large."""


def safe_parser(**kwargs) -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        **kwargs,
    )


def parse_document(text: str | bytes, *, what: str = "document") -> etree._Element:
    data = text.encode("utf-8") if isinstance(text, str) else text
    if len(data) > MAX_DOCUMENT_BYTES:
        raise UnsafeXml(f"{what} is {len(data)} bytes, over the {MAX_DOCUMENT_BYTES} limit")
    if b"<!DOCTYPE" in data[:4096].upper() or b"<!ENTITY" in data[:4096].upper():
        raise UnsafeXml(f"{what} carries a DTD or entity declarations, which are refused")
    try:
        root = etree.fromstring(data.strip(), parser=safe_parser())
    except etree.XMLSyntaxError as err:
        raise UnsafeXml(f"{what} is not well-formed XML: {err}") from None
    if root is None:
        raise UnsafeXml(f"{what} is empty")
    # The byte sniff above only sees the first 4 KiB: a long comment or whitespace pushes a
    # DOCTYPE past it. Entities are not expanded either way, but a DTD is refused, not ignored.
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise UnsafeXml(f"{what} carries a DTD or entity declarations, which are refused")
    return root


def local(tag) -> str:
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def edex(**children: object) -> str:
    """``<EDEX><propertyid>001</propertyid>...</EDEX>``: leasing read parameters."""
    root = etree.Element("EDEX")
    for name, value in children.items():
        etree.SubElement(root, name).text = "" if value is None else str(value)
    return etree.tostring(root, encoding="unicode")


def mdy(day: dt.date) -> str:
    return day.strftime("%m/%d/%Y")


def money(amount: Decimal) -> str:
    return f"{amount:.2f}"


@dataclass
class PaymentDoc:
    property_id: str
    bldg_id: str
    unit_id: str
    resi_id: str
    merchant_id: str
    transaction_id: str
    transaction_date: dt.date
    amount: Decimal
    jnl_no: str
    description: str
    payment_type: str  # P card, C bank

    def xml(self) -> str:
        # Attribute casing as the AddPayment request uses it: PropertyID BldgID UnitID ResiID.
        attrs = {
            "PropertyID": self.property_id,
            "BldgID": self.bldg_id,
            "UnitID": self.unit_id,
            "ResiID": self.resi_id,
            "ClientMerchantID": self.merchant_id,
            "ClientTransactionID": self.transaction_id,
            "ClientTransactionDate": mdy(self.transaction_date),
            "Amount": money(self.amount),
            "ClientJnlNo": self.jnl_no,
            "Description": self.description,
            "PaymentType": self.payment_type,
            "CheckNo": "",
            "ChargeIncCode": "",
            "ChargeDateFrom": "",
            "ChargeDateThru": "",
        }
        root = etree.Element("Payments")
        etree.SubElement(root, "Payment", attrs)
        return etree.tostring(root, encoding="unicode")


@dataclass
class ReturnDoc:
    transaction_id: str  # the original payment's ClientTransactionID
    reason: str  # NSF, ChargeBack, Reverse
    jnl_no: str
    description: str

    def xml(self) -> str:
        root = etree.Element("Payments")
        payment = etree.SubElement(root, "Payment")
        for name, value in (
            ("ClientTransactionID", self.transaction_id),
            ("Reason", self.reason),
            ("ClientJnlNo", self.jnl_no),
            ("Description", self.description),
        ):
            etree.SubElement(payment, name).text = value
        return etree.tostring(root, encoding="unicode")


def settlement_xml(
    jnl_no: str, merchant_id: str, amount: Decimal, day: dt.date, approval: str
) -> str:
    root = etree.Element("EDEX")
    for name, value in (
        ("ExternalJnlNo", jnl_no),
        ("ClientMerchantId", merchant_id),  # sic: this casing in UpdateSettlementData
        ("SettlementAmount", money(amount)),
        ("SettlementDate", mdy(day)),
        ("ApprovalCode", approval),
    ):
        etree.SubElement(root, name).text = value
    return etree.tostring(root, encoding="unicode")


@dataclass
class LedgerReply:
    """One <Payment> or <EDEX> element of a ledger result."""

    error_code: str
    error_description: str
    evolution_reference: str = ""
    batch_no: str = ""
    bank_book: str = ""
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error_code in ("", SUCCESS)


def _text(el: etree._Element, name: str) -> str:
    for child in el.iter():
        if local(child.tag) == name:
            return (child.text or "").strip()
    return ""


def parse_ledger_result(text: str, *, what: str) -> list[LedgerReply]:
    """Parse AddPayment/ReturnPayment/UpdateSettlementData results (and error documents)."""
    root = parse_document(text, what=what)
    name = local(root.tag)
    if name == "InternetTrafficResponse":
        items: Iterable[etree._Element] = [root]
    else:
        items = [c for c in root if local(c.tag) in ("Payment", "EDEX")] or [root]
    replies = []
    for item in items:
        code = _text(item, "ErrorCode")
        replies.append(
            LedgerReply(
                error_code=code,
                error_description=_text(item, "ErrorDescription"),
                evolution_reference=_text(item, "EvolutionReference"),
                batch_no=_text(item, "eSiteBatchNo"),
                bank_book=_text(item, "eSiteBankBookID"),
                fields={k: v for k, v in item.attrib.items()},
            )
        )
    if not replies or all(r.error_code == "" for r in replies):
        raise UnsafeXml(f"{what} has no ErrorCode: not an eDex ledger result")
    return replies


def leasing_error(root: etree._Element) -> tuple[str, str] | None:
    """(code, description) when a leasing result is an InternetTrafficResponse error."""
    if local(root.tag) != "InternetTrafficResponse":
        return None
    return _text(root, "ErrorCode"), _text(root, "ErrorDescription")
