"""GetPropertyList in both shapes production clients met (attributes and child elements)."""

from __future__ import annotations

from lxml import etree

from integrations_amsi.properties import PropertyInfo, parse_property_list


def parse(xml: str) -> list[PropertyInfo]:
    return parse_property_list(etree.fromstring(xml))


def test_attributes_shape():
    got = parse(
        '<Properties><Property PropertyId="001" PropertyName="Maple Court" '
        'ClientMerchantID="1001"/><Property PropertyId="002" PropertyName="Oak"/></Properties>'
    )
    assert [(p.property_id, p.name, p.merchant_id) for p in got] == [
        ("001", "Maple Court", "1001"),
        ("002", "Oak", ""),
    ]
    assert got[0].raw["propertyname"] == "Maple Court"


def test_child_element_shape():
    got = parse(
        "<Properties><Property><PropertyId> 001 </PropertyId><PropertyName>Maple Court"
        "</PropertyName><ClientMerchantID>1001</ClientMerchantID></Property>"
        "<Property><PropertyId>002</PropertyId></Property></Properties>"
    )
    assert [(p.property_id, p.name, p.merchant_id) for p in got] == [
        ("001", "Maple Court", "1001"),
        ("002", "", ""),
    ]


def test_both_shapes_in_one_document_and_any_casing_or_namespace():
    got = parse(
        '<Properties xmlns="http://tempuri.org/"><Property propertyid="001"/>'
        "<property><PROPERTYID>002</PROPERTYID></property></Properties>"
    )
    assert [p.property_id for p in got] == ["001", "002"]


def test_empty_ids_are_ignored():
    got = parse(
        '<Properties><Property PropertyId=""/><Property PropertyId="   "/>'
        "<Property><PropertyId/></Property><Property PropertyName='no id'/>"
        '<Property PropertyId="003"/></Properties>'
    )
    assert [p.property_id for p in got] == ["003"]


def test_duplicates_once_first_wins_in_document_order():
    got = parse(
        '<Properties><Property PropertyId="002" PropertyName="first"/>'
        '<Property PropertyId="001"/>'
        "<Property><PropertyId>002</PropertyId><PropertyName>second</PropertyName></Property>"
        "</Properties>"
    )
    assert [(p.property_id, p.name) for p in got] == [("002", "first"), ("001", "")]


def test_an_empty_list_and_an_error_document_name_no_property():
    assert parse("<Properties/>") == []
    assert (
        parse(
            "<InternetTrafficResponse><Error><ErrorCode>103</ErrorCode>"
            "<ErrorDescription>No data found</ErrorDescription></Error>"
            "</InternetTrafficResponse>"
        )
        == []
    )


def test_an_attribute_wins_over_a_child_element_of_the_same_name():
    (got,) = parse(
        '<Properties><Property PropertyId="001"><PropertyId>999</PropertyId></Property>'
        "</Properties>"
    )
    assert got.property_id == "001"
