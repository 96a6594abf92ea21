"""The generator, the demo, the folder loader and the management commands."""

from __future__ import annotations

import time

from django.core.management import call_command
from lxml import etree
from zeep import Client, Settings
from zeep.transports import Transport

from integrations_amsi.sandbox.seed import generate_portfolio


def test_generator_is_deterministic_with_real_export_quirks():
    a = generate_portfolio(2, 60, seed=3)
    assert a == generate_portfolio(2, 60, seed=3)
    assert a != generate_portfolio(2, 60, seed=4)
    units, residents = a["001"]
    text = residents.decode()
    assert "(   )    -" in text and 'OriginalAmt="-' in text
    assert 'ResponsibleFlag="Non-Responsible"' in text or 'ResponsibleFlag="G"' in text
    assert 'BlockPaymentAccess="Y"' in text and 'CreditStatus="C"' in text
    assert 'CreditStatus="H"' in text and 'leasebegindate="' in text and 'T00:00:00"' in text
    leases = etree.fromstring(residents)
    assert len(leases) == 60
    resi_units = {}
    for le in leases:
        resi_units.setdefault(le.get("ResiID"), set()).add((le.get("BldgID"), le.get("UnitID")))
    assert any(len(v) > 1 for v in resi_units.values())
    assert any("Email" not in le.attrib for le in leases)
    assert etree.fromstring(units).tag == "PropertyUnits"


def test_seed_command_and_load_dir(tmp_path, capsys, start_sandbox):
    out = tmp_path / "portfolio"
    call_command("amsi_sandbox_seed", properties=2, leases=30, out=str(out), seed=5)
    assert sorted(p.name for p in out.iterdir()) == [
        "001.residents.xml",
        "001.units.xml",
        "002.residents.xml",
        "002.units.xml",
        "portfolio.json",
    ]
    control = start_sandbox(seed=out).control()
    props = control.client.get("/sandbox/properties").json()["properties"]
    assert [p["property_id"] for p in props] == ["001", "002"]
    assert props[1]["client_merchant_id"] == "1002"
    control.close()


def test_bulk_load_and_read_is_fast(start_sandbox):
    """10k leases through the control API and back; 100k is the documented target (~10x)."""
    units, residents = generate_portfolio(1, 10_000, seed=1)["001"]
    server = start_sandbox("s")
    control = server.control()
    control.put_property("001", "Big", "1")
    start = time.monotonic()
    assert control.load_residents("001", residents)["leases"] == 10_000
    loaded = time.monotonic() - start

    # the Result string of a big property is over libxml2's 10 MB text-node limit:
    # clients need xml_huge_tree (the sandbox itself never parses such replies)
    client = Client(
        server.leasing_wsdl_url,
        transport=Transport(timeout=30, operation_timeout=30),
        settings=Settings(xml_huge_tree=True),
    )
    start = time.monotonic()
    result = client.service.GetPropertyResidents(
        **server.credentials,
        XMLData="<EDEX><propertyid>001</propertyid><includeprimaryaddress>1"
        "</includeprimaryaddress><includerecurringcharges>1</includerecurringcharges></EDEX>",
    )
    read = time.monotonic() - start
    assert result.count("<Lease ") == 10_000
    control.close()
    assert loaded < 10 and read < 10, (loaded, read)
