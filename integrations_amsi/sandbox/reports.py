"""Ledger views shared by the control API and the eSite pages.

Column choice (documented in docs/sandbox.md): payments and their negative reversals
(CHARGE BACK, REFUNDED, VOIDED) go to Rent/Other; NSF Returns go to Return; Security Deposits
and Misc stay zero because the sandbox books every payment as rent.
"""

from __future__ import annotations

from decimal import Decimal

from .store import Store

ZERO = Decimal("0.00")


def batches(
    store: Store, property_id: str = "", jnl: str = "", created_by: str = "", month: str = ""
) -> list[dict]:
    """Batches with entries and totals; amounts stay Decimal (callers format them)."""
    sql = "SELECT * FROM batches WHERE 1=1"
    args: list[str] = []
    for col, value in (
        ("property_id", property_id),
        ("client_jnl_no", jnl),
        ("created_by", created_by),
    ):
        if value:
            sql += f" AND {col}=?"
            args.append(value)
    if month:
        sql += " AND created_on LIKE ?"
        args.append(f"{month}%")
    with store.read() as c:
        rows = c.execute(sql + " ORDER BY batch_no", args).fetchall()
        entries: dict[int, list[dict]] = {}
        if rows:
            marks = ",".join("?" * len(rows))
            for e in c.execute(
                f"SELECT * FROM entries WHERE batch_no IN ({marks}) ORDER BY entry_id",
                [r["batch_no"] for r in rows],
            ):
                entries.setdefault(e["batch_no"], []).append(dict(e))
    out = []
    for r in rows:
        items = entries.get(r["batch_no"], [])
        for e in items:
            e["amount"] = Decimal(e["amount"])
        rent = sum((e["amount"] for e in items if e["entry_type"] == "Payment"), ZERO)
        returns = sum((e["amount"] for e in items if e["entry_type"] == "Return"), ZERO)
        out.append(
            {
                **dict(r),
                "settled": bool(r["settled"]),
                "approve": not r["settled"],
                "entries": items,
                "rent_other": rent,
                "security_deposits": ZERO,
                "other_deposits": ZERO,
                "misc": ZERO,
                "returns": returns,
                "total": rent + returns,
            }
        )
    return out


def jsonable(value: object) -> object:
    """Decimals as strings (never floats) for the JSON API."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value
