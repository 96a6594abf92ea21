"""GetPropertyList, read in both shapes production clients met.

Evidence (docs/amsi-evidence.md, "GetPropertyList shape"): one production parser reads
``PropertyId`` as a child element of ``<Property>``, its test data carries it as an attribute.
Both are read here; a ``<Property>`` with an empty id is ignored (it names nothing a connection
could use).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from .xmldocs import local

_ID_NAMES = ("propertyid",)
_NAME_NAMES = ("propertyname", "name")
_MERCHANT_NAMES = ("clientmerchantid",)


@dataclass(frozen=True)
class PropertyInfo:
    property_id: str
    name: str = ""
    merchant_id: str = ""
    raw: dict[str, str] = field(default_factory=dict, compare=False)


def _values(el: etree._Element) -> dict[str, str]:
    """The property's fields, attributes and child elements alike, keyed in lower case."""
    values = {k.lower(): (v or "").strip() for k, v in el.attrib.items()}
    for child in el:
        name = local(child.tag)
        if name and len(child) == 0:
            values.setdefault(name.lower(), (child.text or "").strip())
    return values


def _first(values: dict[str, str], names: tuple[str, ...]) -> str:
    return next((values[n] for n in names if values.get(n)), "")


def parse_property_list(root: etree._Element) -> list[PropertyInfo]:
    """Every ``<Property>`` with a non-empty id, in document order, each id once."""
    found: dict[str, PropertyInfo] = {}
    for el in root.iter():
        if local(el.tag).lower() != "property":
            continue
        values = _values(el)
        pid = _first(values, _ID_NAMES)
        if not pid or pid in found:
            continue
        found[pid] = PropertyInfo(
            property_id=pid,
            name=_first(values, _NAME_NAMES),
            merchant_id=_first(values, _MERCHANT_NAMES),
            raw=values,
        )
    return list(found.values())
