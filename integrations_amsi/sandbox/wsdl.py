"""The sandbox's own WSDLs, generated from an operation table.

The table mirrors the captured eSite services (names, order, types) so that clients built
against eSite work unchanged; a conformance test compares it with the captured files.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

TNS = "http://tempuri.org/"
NS_WSDL = "http://schemas.xmlsoap.org/wsdl/"
NS_S = "http://www.w3.org/2001/XMLSchema"
NS_SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"
NS_SOAP12 = "http://schemas.xmlsoap.org/wsdl/soap12/"
HTTP_TRANSPORT = "http://schemas.xmlsoap.org/soap/http"

# (name, type, minOccurs)
Param = tuple[str, str, int]
_CRED: list[Param] = [
    ("UserID", "string", 0),
    ("Password", "string", 0),
    ("PortfolioName", "string", 0),
]
_XML: Param = ("XMLData", "string", 0)
_PRELIM: Param = ("preliminary", "int", 1)


@dataclass(frozen=True)
class Operation:
    name: str
    params: tuple[Param, ...]


def _std(name: str) -> Operation:
    return Operation(name, (*_CRED, _XML))


def _write(name: str, *extra: Param) -> Operation:
    return Operation(name, (*_CRED, _PRELIM, _XML, *extra))


LEASING_OPERATIONS: tuple[Operation, ...] = (
    Operation("ProcessData", (_XML, _PRELIM)),
    _std("GetGuestCardData"),
    _std("GetResidentsByStatusChange"),
    _std("GetResidentsByStatusChangeOrTransactionDate"),
    _std("GetPropertyResidents"),
    _write("UpdatePropertyResidents"),
    _std("GetSingleResident"),
    _std("GetLRORents"),
    _std("GetRentableItems"),
    _std("UpdateCreditScore"),
    _std("GetPropertyUnits"),
    _std("GetPropertyList"),
    _std("AddDocument"),
    _std("GetResidentsContactInfo"),
    _std("UpdateOccupants"),
    _std("UpdateLeases"),
)

LEDGER_OPERATIONS: tuple[Operation, ...] = (
    _write("AddACHPayment", ("bCreateACH", "boolean", 1)),
    _write("AddBilling"),
    _write(
        "AddPaymentWithCheckImage",
        ("Tiff_Image_Front", "base64Binary", 0),
        ("Tiff_Image_Back", "base64Binary", 0),
    ),
    _write("AddPayment"),
    _write("UpdatePayment"),
    _write("UpdateSettlementData"),
    _write("ReturnPayment"),
)

SERVICES: dict[str, tuple[str, tuple[Operation, ...]]] = {
    "leasing": ("Leasing", LEASING_OPERATIONS),
    "ledger": ("Ledger", LEDGER_OPERATIONS),
}


def operations(service: str) -> dict[str, Operation]:
    return {op.name: op for op in SERVICES[service][1]}


def build_wsdl(service: str, address: str) -> bytes:
    """Serialise the WSDL of `service` ('leasing' or 'ledger') with soap:address = `address`."""
    svc_name, ops = SERVICES[service]
    nsmap = {
        "soap": NS_SOAP,
        "tns": TNS,
        "s": NS_S,
        "soap12": NS_SOAP12,
        "wsdl": NS_WSDL,
    }
    W = f"{{{NS_WSDL}}}"
    S = f"{{{NS_S}}}"
    root = etree.Element(W + "definitions", nsmap=nsmap, targetNamespace=TNS)
    schema = etree.SubElement(
        etree.SubElement(root, W + "types"),
        S + "schema",
        elementFormDefault="qualified",
        targetNamespace=TNS,
    )
    for op in ops:
        seq = etree.SubElement(
            etree.SubElement(
                etree.SubElement(schema, S + "element", name=op.name), S + "complexType"
            ),
            S + "sequence",
        )
        for pname, ptype, min_occurs in op.params:
            etree.SubElement(
                seq,
                S + "element",
                minOccurs=str(min_occurs),
                maxOccurs="1",
                name=pname,
                type=f"s:{ptype}",
            )
        rseq = etree.SubElement(
            etree.SubElement(
                etree.SubElement(schema, S + "element", name=f"{op.name}Response"),
                S + "complexType",
            ),
            S + "sequence",
        )
        etree.SubElement(
            rseq,
            S + "element",
            minOccurs="0",
            maxOccurs="1",
            name=f"{op.name}Result",
            type="s:string",
        )
    for op in ops:
        for suffix, el in (("SoapIn", op.name), ("SoapOut", f"{op.name}Response")):
            msg = etree.SubElement(root, W + "message", name=f"{op.name}{suffix}")
            etree.SubElement(msg, W + "part", name="parameters", element=f"tns:{el}")
    port_type = etree.SubElement(root, W + "portType", name=f"{svc_name}Soap")
    for op in ops:
        o = etree.SubElement(port_type, W + "operation", name=op.name)
        etree.SubElement(o, W + "input", message=f"tns:{op.name}SoapIn")
        etree.SubElement(o, W + "output", message=f"tns:{op.name}SoapOut")
    for bname, ns in ((f"{svc_name}Soap", NS_SOAP), (f"{svc_name}Soap12", NS_SOAP12)):
        P = f"{{{ns}}}"
        binding = etree.SubElement(root, W + "binding", name=bname, type=f"tns:{svc_name}Soap")
        etree.SubElement(binding, P + "binding", transport=HTTP_TRANSPORT)
        for op in ops:
            o = etree.SubElement(binding, W + "operation", name=op.name)
            etree.SubElement(o, P + "operation", soapAction=f"{TNS}{op.name}", style="document")
            for io in ("input", "output"):
                etree.SubElement(etree.SubElement(o, W + io), P + "body", use="literal")
    svc = etree.SubElement(root, W + "service", name=svc_name)
    for pname, ns in ((f"{svc_name}Soap", NS_SOAP), (f"{svc_name}Soap12", NS_SOAP12)):
        port = etree.SubElement(svc, W + "port", name=pname, binding=f"tns:{pname}")
        etree.SubElement(port, f"{{{ns}}}address", location=address)
    return etree.tostring(root, xml_declaration=True, encoding="utf-8", pretty_print=True)


def signature(wsdl_root: etree._Element) -> dict[str, list[tuple[str, str, str, str]]]:
    """Operation -> [(param, type, minOccurs, maxOccurs)]: what the conformance test compares."""
    ns = {"s": NS_S, "wsdl": NS_WSDL}
    out: dict[str, list[tuple[str, str, str, str]]] = {}
    for el in wsdl_root.xpath("wsdl:types/s:schema/s:element", namespaces=ns):
        out[el.get("name")] = [
            (e.get("name"), e.get("type"), e.get("minOccurs"), e.get("maxOccurs"))
            for e in el.xpath(".//s:element", namespaces=ns)
        ]
    return out
