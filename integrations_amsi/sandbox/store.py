"""The sandbox's state: one SQLite file (WAL), one connection behind a lock.

Design note: every request runs its writes inside one `Store.tx()` transaction, so a crash or
an injected reset never leaves half a booking, and a restart loses nothing. Money is stored as
TEXT holding a Decimal with two places, never as float. Leases keep their eSite element
verbatim (attributes in order, children pre-serialised by kind) so GetPropertyResidents returns
what was loaded, and so 100k leases stream out by string concatenation rather than tree building.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from lxml import etree

from .xmlsafe import local, start_tag

SCHEMA = """
CREATE TABLE IF NOT EXISTS properties (
    property_id TEXT PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    client_merchant_id TEXT NOT NULL DEFAULT '',
    bank_book TEXT NOT NULL DEFAULT '1000'
);
CREATE TABLE IF NOT EXISTS units (
    property_id TEXT NOT NULL, bldg_id TEXT NOT NULL, unit_id TEXT NOT NULL,
    seq INTEGER NOT NULL, inactive TEXT NOT NULL DEFAULT 'N', xml TEXT NOT NULL,
    PRIMARY KEY (property_id, bldg_id, unit_id)
);
CREATE TABLE IF NOT EXISTS leases (
    property_id TEXT NOT NULL, bldg_id TEXT NOT NULL, unit_id TEXT NOT NULL,
    resi_id TEXT NOT NULL, seq INTEGER NOT NULL,
    attrs TEXT NOT NULL, head TEXT NOT NULL, main_xml TEXT NOT NULL DEFAULT '',
    address_xml TEXT NOT NULL DEFAULT '', address_nocontact_xml TEXT NOT NULL DEFAULT '',
    recurring_xml TEXT NOT NULL DEFAULT '',
    occustatuscode TEXT NOT NULL DEFAULT '', credit_status TEXT NOT NULL DEFAULT '',
    block_payment TEXT NOT NULL DEFAULT '',
    nsf_count INTEGER NOT NULL DEFAULT 0, last_nsf_date TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (property_id, bldg_id, unit_id, resi_id)
);
CREATE INDEX IF NOT EXISTS leases_seq ON leases (property_id, seq);
CREATE TABLE IF NOT EXISTS status_changes (
    property_id TEXT NOT NULL, bldg_id TEXT NOT NULL, unit_id TEXT NOT NULL,
    resi_id TEXT NOT NULL, changed_at TEXT NOT NULL, what TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS status_changes_at ON status_changes (property_id, changed_at);
CREATE TABLE IF NOT EXISTS batches (
    batch_no INTEGER PRIMARY KEY AUTOINCREMENT,
    property_id TEXT NOT NULL, client_jnl_no TEXT NOT NULL, batch_type TEXT NOT NULL DEFAULT 'X',
    bank_book TEXT NOT NULL, created_on TEXT NOT NULL, created_by TEXT NOT NULL,
    settled INTEGER NOT NULL DEFAULT 0, settled_amount TEXT NOT NULL DEFAULT '',
    settlement_date TEXT NOT NULL DEFAULT '', approval_code TEXT NOT NULL DEFAULT '',
    settled_on TEXT NOT NULL DEFAULT '',
    UNIQUE (property_id, client_jnl_no)
);
CREATE TABLE IF NOT EXISTS entries (
    entry_id INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_no INTEGER NOT NULL REFERENCES batches (batch_no),
    property_id TEXT NOT NULL, bldg_id TEXT NOT NULL, unit_id TEXT NOT NULL, resi_id TEXT NOT NULL,
    entry_type TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', amount TEXT NOT NULL,
    client_transaction_id TEXT NOT NULL, original_transaction_id TEXT NOT NULL DEFAULT '',
    payment_type TEXT NOT NULL DEFAULT '', client_jnl_no TEXT NOT NULL,
    evolution_reference TEXT NOT NULL DEFAULT '', description TEXT NOT NULL DEFAULT '',
    r_code TEXT NOT NULL DEFAULT '', created_at TEXT NOT NULL,
    client_transaction_date TEXT NOT NULL DEFAULT '', client_merchant_id TEXT NOT NULL DEFAULT '',
    check_no TEXT NOT NULL DEFAULT '', charge_inc_code TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS entries_txn ON entries (client_transaction_id, entry_type);
CREATE INDEX IF NOT EXISTS entries_orig ON entries (original_transaction_id);
CREATE INDEX IF NOT EXISTS entries_lease ON entries (property_id, created_at);
"""

LEASE_INSERT = (
    "INSERT OR REPLACE INTO leases (property_id, bldg_id, unit_id, resi_id, seq, attrs, head, "
    "main_xml, address_xml, address_nocontact_xml, recurring_xml, occustatuscode, "
    "credit_status, block_payment) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
TABLES = ("entries", "batches", "status_changes", "leases", "units", "properties")
STATUS_ATTRS = ("occustatuscode", "CreditStatus", "BlockPaymentAccess", "BlockAllAccess")
CREDIT_DESCRIPTIONS = {"N": "Normal", "C": "No Checks", "H": "Hold", "R": "Restricted"}
OCCU_DESCRIPTIONS = {"C": "Current", "N": "Notice", "P": "Past", "F": "Future", "A": "Applicant"}

LeaseKey = tuple[str, str, str, str]


def now() -> str:
    """Local wall-clock time, as eSite keeps it."""
    return datetime.now().isoformat(timespec="microseconds")


class Store:
    """Thread-safe access to the state file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            str(self.path), check_same_thread=False, isolation_level=None, timeout=30
        )
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One atomic write: everything inside commits together or not at all."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._conn

    def wipe(self) -> None:
        with self.tx() as c:
            for table in TABLES:
                c.execute(f"DELETE FROM {table}")
            c.execute("DELETE FROM sqlite_sequence")

    # -- properties -------------------------------------------------------------------------

    def put_property(
        self, property_id: str, name: str = "", client_merchant_id: str = "", bank_book: str = ""
    ) -> None:
        with self.tx() as c:
            row = c.execute(
                "SELECT * FROM properties WHERE property_id=?", (property_id,)
            ).fetchone()
            if row is None:
                c.execute(
                    "INSERT INTO properties VALUES (?,?,?,?)",
                    (property_id, name, client_merchant_id, bank_book or "1000"),
                )
            else:
                c.execute(
                    "UPDATE properties SET name=?, client_merchant_id=?, bank_book=? "
                    "WHERE property_id=?",
                    (
                        name or row["name"],
                        client_merchant_id or row["client_merchant_id"],
                        bank_book or row["bank_book"],
                        property_id,
                    ),
                )

    def get_property(self, property_id: str) -> sqlite3.Row | None:
        with self.read() as c:
            return c.execute(
                "SELECT * FROM properties WHERE property_id=?", (property_id,)
            ).fetchone()

    # -- units ------------------------------------------------------------------------------

    def replace_units(self, property_id: str, units: Iterator[etree._Element]) -> int:
        """Replace the property's units with the given eSite <Unit> elements; returns the count."""
        rows = []
        for seq, el in enumerate(units):
            rows.append(
                (
                    property_id,
                    el.get("BldgId", ""),
                    el.get("UnitId", ""),
                    seq,
                    el.get("InactiveFlag", "N"),
                    etree.tostring(el, encoding="unicode", with_tail=False),
                )
            )
            el.clear()
        with self.tx() as c:
            self._ensure_property(c, property_id)
            c.execute("DELETE FROM units WHERE property_id=?", (property_id,))
            c.executemany("INSERT OR REPLACE INTO units VALUES (?,?,?,?,?,?)", rows)
        return len(rows)

    # -- leases -----------------------------------------------------------------------------

    def replace_leases(self, property_id: str, leases: Iterator[etree._Element]) -> int:
        """Replace the property's leases (keeping NSF counters of leases that stay)."""
        rows = [lease_row(property_id, seq, el) for seq, el in enumerate(leases)]
        stamp = now()
        with self.tx() as c:
            self._ensure_property(c, property_id)
            old = {
                (r[0], r[1], r[2]): (r[3], r[4], r[5])
                for r in c.execute(
                    "SELECT bldg_id, unit_id, resi_id, occustatuscode, credit_status, "
                    "block_payment FROM leases WHERE property_id=?",
                    (property_id,),
                )
            }
            changes = []
            for r in rows:
                key = (r[1], r[2], r[3])
                status = (r[11], r[12], r[13])
                if old.get(key) != status:
                    changes.append((property_id, *key, stamp, "load"))
            c.execute(
                "CREATE TEMP TABLE IF NOT EXISTS nsf_keep (b TEXT, u TEXT, r TEXT, n INT, d TEXT)"
            )
            c.execute("DELETE FROM nsf_keep")
            c.execute(
                "INSERT INTO nsf_keep SELECT bldg_id, unit_id, resi_id, nsf_count, last_nsf_date "
                "FROM leases WHERE property_id=? AND nsf_count>0",
                (property_id,),
            )
            c.execute("DELETE FROM leases WHERE property_id=?", (property_id,))
            c.executemany(
                LEASE_INSERT,
                rows,
            )
            c.execute(
                "UPDATE leases SET nsf_count=(SELECT n FROM nsf_keep WHERE b=bldg_id AND u=unit_id "
                "AND r=resi_id), last_nsf_date=(SELECT d FROM nsf_keep WHERE b=bldg_id AND "
                "u=unit_id AND r=resi_id) WHERE property_id=? AND EXISTS (SELECT 1 FROM nsf_keep "
                "WHERE b=bldg_id AND u=unit_id AND r=resi_id)",
                (property_id,),
            )
            c.executemany("INSERT INTO status_changes VALUES (?,?,?,?,?,?)", changes)
        return len(rows)

    def add_lease(self, property_id: str, el: etree._Element) -> LeaseKey:
        """Add (or replace) one lease; a new lease counts as a status change for the delta query."""
        with self.tx() as c:
            self._ensure_property(c, property_id)
            seq = c.execute(
                "SELECT COALESCE(MAX(seq), -1) + 1 FROM leases WHERE property_id=?", (property_id,)
            ).fetchone()[0]
            row = lease_row(property_id, seq, el)
            c.execute(
                LEASE_INSERT,
                row,
            )
            c.execute(
                "INSERT INTO status_changes VALUES (?,?,?,?,?,?)",
                (property_id, row[1], row[2], row[3], now(), "added"),
            )
        return (property_id, row[1], row[2], row[3])

    def get_lease(self, key: LeaseKey) -> sqlite3.Row | None:
        with self.read() as c:
            return c.execute(
                "SELECT * FROM leases WHERE property_id=? AND bldg_id=? AND unit_id=? "
                "AND resi_id=?",
                key,
            ).fetchone()

    def patch_lease(self, key: LeaseKey, changes: dict[str, str]) -> sqlite3.Row | None:
        """Set lease attributes (BlockPaymentAccess, CreditStatus, ...) as a manager would."""
        with self.tx() as c:
            row = c.execute(
                "SELECT attrs FROM leases WHERE property_id=? AND bldg_id=? AND unit_id=? "
                "AND resi_id=?",
                key,
            ).fetchone()
            if row is None:
                return None
            attrs = dict(json.loads(row["attrs"]))
            before = {k: attrs.get(k) for k in STATUS_ATTRS}
            for name, value in changes.items():
                attrs[name] = str(value)
                if name == "CreditStatus" and "CreditStatusDescription" not in changes:
                    attrs["CreditStatusDescription"] = CREDIT_DESCRIPTIONS.get(str(value), "")
                if name == "occustatuscode" and "occustatuscodedescription" not in changes:
                    attrs["occustatuscodedescription"] = OCCU_DESCRIPTIONS.get(str(value), "")
            self.write_attrs(c, key, attrs)
            changed = [k for k in STATUS_ATTRS if attrs.get(k) != before[k]]
            if changed:
                c.execute(
                    "INSERT INTO status_changes VALUES (?,?,?,?,?,?)",
                    (*key, now(), ",".join(changed)),
                )
        return self.get_lease(key)

    @staticmethod
    def write_attrs(c: sqlite3.Connection, key: LeaseKey, attrs: dict[str, str]) -> None:
        c.execute(
            "UPDATE leases SET attrs=?, head=?, occustatuscode=?, credit_status=?, block_payment=? "
            "WHERE property_id=? AND bldg_id=? AND unit_id=? AND resi_id=?",
            (
                json.dumps(list(attrs.items())),
                start_tag("Lease", attrs),
                attrs.get("occustatuscode", ""),
                attrs.get("CreditStatus", ""),
                attrs.get("BlockPaymentAccess", ""),
                *key,
            ),
        )

    @staticmethod
    def _ensure_property(c: sqlite3.Connection, property_id: str) -> None:
        c.execute(
            "INSERT OR IGNORE INTO properties (property_id) VALUES (?)",
            (property_id,),
        )


def lease_row(property_id: str, seq: int, el: etree._Element) -> tuple:
    """Split a <Lease> element into the columns the fast serialiser needs."""
    attrs = list(el.attrib.items())
    main: list[str] = []
    address: list[str] = []
    address_nc: list[str] = []
    recurring: list[str] = []
    for child in el:
        name = local(child.tag)
        if not name:
            continue
        text = etree.tostring(child, encoding="unicode", with_tail=False)
        if name == "Address":
            address.append(text)
            for contact in child.findall("Contact"):
                child.remove(contact)
            address_nc.append(etree.tostring(child, encoding="unicode", with_tail=False))
        elif name == "RecurringCharge":
            recurring.append(text)
        else:
            main.append(text)
    a = dict(attrs)
    row = (
        property_id,
        el.get("BldgID", ""),
        el.get("UnitID", ""),
        el.get("ResiID", ""),
        seq,
        json.dumps(attrs),
        start_tag("Lease", attrs),
        "".join(main),
        "".join(address),
        "".join(address_nc),
        "".join(recurring),
        a.get("occustatuscode", ""),
        a.get("CreditStatus", ""),
        a.get("BlockPaymentAccess", ""),
    )
    el.clear()
    return row
