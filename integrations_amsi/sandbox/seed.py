"""Deterministic eSite exports: the demo portfolio and a generator for benchmarks.

The documents carry the quirks real exports have: a ResiID repeated on two units of one
property, absent optional attributes, MM/DD/YYYY and ISO dates side by side, negative amounts,
empty phone patterns `(   )    -`, several occupants with mixed ResponsibleFlag, and leases that
are blocked, on No Checks, on Hold or Restricted.
"""

from __future__ import annotations

import json
import math
import random
from datetime import date, timedelta
from pathlib import Path

from .store import Store
from .xmlsafe import parse_bytes, start_tag

DEMO_PROPERTY = "001"
DEMO_NAME = "Maple Court"
DEMO_MERCHANT = "1001"  # an integer group id, as production sent
DEMO_LEASES = 24
DEMO_SEED = 2016
EMPTY_PHONE = "(   )    -"

FIRST = [
    "Ike",
    "George",
    "Maria",
    "Chen",
    "Aisha",
    "Liam",
    "Olivia",
    "Noah",
    "Sofia",
    "Mateo",
    "Emma",
    "Lucas",
    "Amara",
    "Ethan",
    "Priya",
    "Diego",
    "Hannah",
    "Omar",
    "Grace",
    "Yuki",
    "Ben",
    "Zoe",
    "Samuel",
    "Nina",
    "Victor",
    "Leah",
    "Kofi",
    "Ines",
]
LAST = [
    "James",
    "Smith",
    "Garcia",
    "Nguyen",
    "Okafor",
    "Novak",
    "Patel",
    "Kowalski",
    "Rossi",
    "Haddad",
    "Johnson",
    "Silva",
    "Tanaka",
    "Brown",
    "Mensah",
    "Larsen",
    "Fischer",
    "Cohen",
    "Moreau",
    "Ivanova",
    "Walker",
    "Dubois",
    "Khan",
    "Lopez",
]
STREETS = [
    "Maple Court",
    "Newport Center Drive",
    "Elm Street",
    "Harbor View Road",
    "Cedar Lane",
    "Lakeside Avenue",
    "Oak Terrace",
    "Willow Way",
]
PROPERTY_NAMES = [
    "Maple Court",
    "Harbor View",
    "Cedar Lane Apartments",
    "Lakeside Commons",
    "Oak Terrace",
    "Willow Gardens",
    "Elm Street Lofts",
    "Riverbend",
]

# Lease index (mod 25) -> special status, so every property of 25+ leases has each case.
SPECIAL = {3: "blocked", 5: "nochecks", 7: "hold", 9: "notice", 19: "restricted"}
DUP_OFFSET = 12  # the lease at index%25 == 12 reuses the ResiID of the lease 12 before it


def _iso(d: date) -> str:
    return d.strftime("%Y-%m-%dT00:00:00")


def _us(d: date) -> str:
    return d.strftime("%m/%d/%Y")


def _money(rng: random.Random, lo: int, hi: int) -> str:
    return str(rng.randrange(lo, hi, 5))


def _property_docs(rng: random.Random, pid: str, n_leases: int, street: str) -> tuple[bytes, bytes]:
    n_bldg = max(2, math.ceil(n_leases / 50))
    per_bldg = max(1, math.ceil(n_leases / n_bldg))
    units: list[str] = []
    leases: list[str] = []
    resi_ids: list[str] = []
    next_resi = 1
    today = date(2016, 2, 15)
    vacant_every = 10
    for i in range(n_leases + n_leases // vacant_every):
        vacant = i >= n_leases
        li = i if not vacant else i - n_leases
        b = (li // per_bldg) + 1 if not vacant else (li % n_bldg) + 1
        pos = li % per_bldg if not vacant else per_bldg + li // n_bldg
        bldg = f"{b:02d}"
        unit = f"{pos // 10 + 1}{pos % 10 + 1:02d}" if pos < 90 else f"{b}{pos:04d}"
        rent = _money(rng, 900, 2600)
        uattrs = [
            ("PropertyId", pid),
            ("BldgId", bldg),
            ("UnitId", unit),
            ("UnitType", rng.choice(["11CA", "22CB", "STUD", "33DX"])),
            ("UnitSubType", "DT1"),
            ("UnitAddrId", str(800 + i)),
            ("CurrUseSqFtg", rng.choice(["650", "800", "1000"])),
            ("MarketRent", rent),
            ("OverrideMarketFlag", rng.choice(["N", "n"])),
            ("LastMarketDate", _iso(today - timedelta(days=rng.randrange(30, 2000)))),
            ("LastMarketRent", rng.choice(["0", rent])),
            ("StdRenewRent", rent),
            ("MTMRenew", "100"),
            ("OtherRenew", rent),
            ("LostRent", "0"),
        ]
        if rng.random() < 0.3:
            uattrs.append(("FloorNo", str(pos // 10 + 1)))
        status = ("VA", "Vacant") if vacant else ("OC", "Occupied")
        uattrs += [
            ("InactiveFlag", "N"),
            ("OccuStatusCode", status[0]),
            ("OccuStatusDescription", status[1]),
            ("UnitStatus", rng.choice(["N", "M"])),
            ("address1", f"{unit} {street}"),
            ("city", "Newport Beach"),
            ("state", "CA"),
            ("zip", "92620"),
            ("country", "USA"),
        ]
        units.append(start_tag("Unit", uattrs, close=True))
        if vacant:
            continue
        special = SPECIAL.get(li % 25, "")
        if li % 25 == DUP_OFFSET and li >= DUP_OFFSET:
            resi = resi_ids[li - DUP_OFFSET]
        else:
            resi = str(next_resi)
            next_resi += 1
        resi_ids.append(resi)
        leases.append(_lease(rng, pid, bldg, unit, resi, rent, special, street, today, li))
    units_xml = "<PropertyUnits>" + "".join(units) + "</PropertyUnits>"
    res_xml = "<PropertyResidents>" + "".join(leases) + "</PropertyResidents>"
    return units_xml.encode("utf-8"), res_xml.encode("utf-8")


def _lease(
    rng: random.Random,
    pid: str,
    bldg: str,
    unit: str,
    resi: str,
    rent: str,
    special: str,
    street: str,
    today: date,
    index: int,
) -> str:
    ids = [("PropertyId", pid), ("BldgID", bldg), ("UnitID", unit), ("ResiID", resi)]
    first, last = rng.choice(FIRST), rng.choice(LAST)
    name = (
        f"{first} {rng.choice('ABCDEFGHJKLMNPRST')} {last}"
        if rng.random() < 0.4
        else (f"{first} {last}")
    )
    email = f"{first.lower()}.{last.lower()}{index}@example.com"
    credit = {
        "nochecks": ("C", "No Checks"),
        "hold": ("H", "Hold"),
        "restricted": ("R", "Restricted"),
    }.get(special, ("N", "Normal"))
    occu = ("N", "Notice") if special == "notice" else ("C", "Current")
    move_in = today - timedelta(days=rng.randrange(20, 1500))
    begin = move_in + timedelta(days=rng.choice([0, 1, 2]))
    balance = rng.choice(["0", rent, "-" + _money(rng, 50, 400), str(int(rent) // 2)])
    attrs = [*ids, ("Name", name)]
    if rng.random() < 0.8:
        attrs.append(("Email", email))
    attrs += [
        ("EndBalance", balance),
        ("occustatuscode", occu[0]),
        ("occustatuscodedescription", occu[1]),
        ("MoveInDate", _iso(move_in)),
    ]
    if rng.random() < 0.9 or special:
        attrs += [("CreditStatus", credit[0]), ("CreditStatusDescription", credit[1])]
    if rng.random() < 0.7:
        attrs.append(("ExternalReferenceID", str(3041000 + index)))
    attrs += [
        ("AllowAutoEnroll", "Y"),
        ("BlockPaymentAccess", "Y" if special == "blocked" else "N"),
        ("BlockAllAccess", "N"),
        ("SecurityDepositOnHand", rng.choice(["0", "500"])),
    ]
    if rng.random() < 0.85:
        attrs += [
            ("leasebegindate", _us(begin)),
            ("leaseenddate", _us(begin + timedelta(days=364))),
        ]
    attrs += [
        ("rentamount", "0"),
        ("ApplicationDate", _iso(move_in - timedelta(days=30))),
        ("QuotedRent", rent),
    ]
    parts = [start_tag("Lease", attrs)]
    n_occ = rng.choice([1, 1, 2, 2, 3])
    for k in range(n_occ):
        o_first = first if k == 0 else rng.choice(FIRST)
        flag = "Responsible" if k == 0 else rng.choice(["Responsible", "Non-Responsible", "G"])
        oattrs = [
            *ids,
            ("OccuSeqNo", str(618000 + index * 4 + k)),
            ("OccuFirstName", o_first),
            ("OccuLastName", last if k == 0 or rng.random() < 0.5 else rng.choice(LAST)),
        ]
        if rng.random() < 0.7:
            oattrs += [("Phone1No", EMPTY_PHONE), ("Phone2No", EMPTY_PHONE)]
        if rng.random() < 0.5:
            oattrs.append(
                ("Birthdate", _iso(date(1950, 1, 1) + timedelta(days=rng.randrange(0, 18000))))
            )
        oattrs.append(("ResponsibleFlag", flag))
        if k == 0 and "Email" in dict(attrs):
            oattrs.append(("Email", email))
        parts.append(start_tag("Occupant", oattrs, close=True))
    parts.append(
        start_tag(
            "OpenItem",
            [
                *ids,
                ("IncCode", "RENT"),
                ("OriginalAmt", rent),
                ("BalDue", rent),
                ("ItemDueDate", _us(today.replace(day=1))),
                ("IncCodeDesc", "Rent"),
            ],
            close=True,
        )
    )
    if rng.random() < 0.2:
        neg = "-" + _money(rng, 100, 1300)
        parts.append(
            start_tag(
                "OpenItem",
                [
                    *ids,
                    ("IncCode", "GARPK"),
                    ("OriginalAmt", neg),
                    ("BalDue", neg),
                    ("IncCodeDesc", "Garage/Parking"),
                ],
                close=True,
            )
        )
    contact = f'<Contact Phone="{EMPTY_PHONE}" />' if rng.random() < 0.5 else "<Contact />"
    parts.append(
        start_tag(
            "Address",
            [
                ("AddressType", "primary"),
                ("AddressLine1", name),
                ("AddressLine2", f"{unit} {street}"),
                ("City", "Newport Beach"),
                ("State", "CA"),
                ("ZipCode", "92620"),
                ("Country", "USA"),
            ],
        )
        + contact
        + "</Address>"
    )
    charges = [("RENT", "Rent", rent)]
    if rng.random() < 0.3:
        charges.append(("CONCS", "Concession", "-125"))
    for seq, (code, desc, amount) in enumerate(charges):
        parts.append(
            start_tag(
                "RecurringCharge",
                [
                    *ids,
                    ("ChargeSeqNo", str(9390000 + index * 3 + seq)),
                    ("IncCode", code),
                    ("IncCodeDesc", desc),
                    ("ChargeBeginDate", _iso(move_in)),
                    ("FreqCode", "M"),
                    ("NextDueDate", _iso(date(2016, 3, 1))),
                    ("Amount", amount),
                ],
                close=True,
            )
        )
    parts.append("</Lease>")
    return "".join(parts)


def generate_portfolio(
    properties: int, leases: int, seed: int = 1
) -> dict[str, tuple[bytes, bytes]]:
    """property_id -> (units_xml, residents_xml) in eSite's own format; deterministic per seed."""
    rng = random.Random(seed)
    out = {}
    for p in range(properties):
        pid = f"{p + 1:03d}"
        out[pid] = _property_docs(rng, pid, leases, STREETS[p % len(STREETS)])
    return out


def portfolio_meta(properties: int) -> dict[str, dict[str, str]]:
    """Names and merchant ids the generator gives its properties (portfolio.json)."""
    meta = {}
    for p in range(properties):
        pid = f"{p + 1:03d}"
        base = PROPERTY_NAMES[p % len(PROPERTY_NAMES)]
        name = base if p < len(PROPERTY_NAMES) else f"{base} {p // len(PROPERTY_NAMES) + 1}"
        meta[pid] = {"name": name, "ClientMerchantID": str(1001 + p), "bank_book": "1000"}
    return meta


def write_portfolio(out_dir: Path, properties: int, leases: int, seed: int = 1) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for pid, (units, residents) in generate_portfolio(properties, leases, seed).items():
        for suffix, data in (("units", units), ("residents", residents)):
            path = out_dir / f"{pid}.{suffix}.xml"
            path.write_bytes(data)
            written.append(path)
    meta = out_dir / "portfolio.json"
    meta.write_text(json.dumps(portfolio_meta(properties), indent=1))
    written.append(meta)
    return written


def _load(store: Store, pid: str, units: bytes, residents: bytes) -> tuple[int, int]:
    n_units = store.replace_units(pid, iter(list(parse_bytes(units))))
    n_leases = store.replace_leases(pid, iter(list(parse_bytes(residents))))
    return n_units, n_leases


def load_demo(store: Store) -> None:
    """Property 001 'Maple Court' (1001): 2 buildings, 24 leases with every special case."""
    units, residents = _property_docs(
        random.Random(DEMO_SEED), DEMO_PROPERTY, DEMO_LEASES, "Maple Court"
    )
    store.put_property(DEMO_PROPERTY, DEMO_NAME, DEMO_MERCHANT, "1000")
    _load(store, DEMO_PROPERTY, units, residents)


def load_dir(store: Store, folder: Path) -> dict[str, tuple[int, int]]:
    """Load every `<pid>.units.xml` / `<pid>.residents.xml` pair of a folder."""
    meta_path = folder / "portfolio.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    counts = {}
    for units_path in sorted(folder.glob("*.units.xml")):
        pid = units_path.name.removesuffix(".units.xml")
        res_path = folder / f"{pid}.residents.xml"
        info = meta.get(pid, {})
        store.put_property(
            pid,
            info.get("name", f"Property {pid}"),
            info.get("ClientMerchantID", ""),
            info.get("bank_book", "1000"),
        )
        residents = res_path.read_bytes() if res_path.exists() else b"<PropertyResidents/>"
        counts[pid] = _load(store, pid, units_path.read_bytes(), residents)
    return counts
