"""The pages a property manager uses in eSite: Cash Batches and External Deposits (HTML, CSV)."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from decimal import Decimal
from html import escape
from http import HTTPStatus
from typing import TYPE_CHECKING

from .reports import ZERO, batches

if TYPE_CHECKING:
    from .server import Handler

_STYLE = (
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
    "td,th{border:1px solid #999;padding:4px 8px}td.n{text-align:right}th{background:#eee}"
)


def _page(title: str, body: str) -> bytes:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><p><a href='/'>Sandbox home</a></p>"
        f"<h1>{escape(title)}</h1>{body}</body></html>"
    ).encode()


def _table(header: list[str], rows: list[list[str]], numeric: set[int]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class='n'>{escape(v)}</td>" if i in numeric else f"<td>{escape(v)}</td>"
            for i, v in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _csv(header: list[str], rows: list[list[str]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def _money(value: Decimal) -> str:
    return f"{value:.2f}"


def _day(iso: str) -> str:
    return datetime.fromisoformat(iso).strftime("%m/%d/%Y") if iso else ""


CASH_HEADER = [
    "Batch",
    "Bank Book",
    "Rent",
    "Sec Dep",
    "Other Dep",
    "Misc",
    "Created On",
    "Created By",
    "Approve",
]
DEPOSIT_HEADER = [
    "External Batch",
    "eSite Batch",
    "Rent/Other",
    "Security Deposits",
    "Misc",
    "Return",
    "Totals",
]


# What the mark means, to the extent the evidence shows it (docs/amsi-evidence.md, docs/amsi.md
# "first payment" steps 2 and 4): "open" is seen on eSite's screens; that settlement clears it
# is this sandbox's rule and only a guess about a real eSite.
APPROVE_LEGEND = (
    "<p class='legend'><strong>Approve \u2713</strong>: the batch is still open (eSite's "
    "convention, seen on eSite's screens). Here the mark goes when UpdateSettlementData settles "
    "the batch at its total, and comes back if a later payment or return lands in it; that a real "
    "eSite clears it on settlement is a guess, not confirmed by AMSI.</p>"
)


def cash_batches(h: Handler, query: dict[str, str]) -> None:
    """Ledger > Cash Batches. An open batch shows the Approve check mark (eSite's convention)."""
    rows = [
        [
            str(b["batch_no"]),
            b["bank_book"],
            _money(b["rent_other"] + b["returns"]),
            _money(b["security_deposits"]),
            _money(b["other_deposits"]),
            _money(b["misc"]),
            _day(b["created_on"]),
            b["created_by"],
            "\u2713" if b["approve"] else "",
        ]
        for b in batches(
            h.sandbox.store, query.get("property", ""), created_by=query.get("created_by", "")
        )
    ]
    if query.get("format") == "csv":
        h.send(HTTPStatus.OK, "text/csv; charset=utf-8", _csv(CASH_HEADER, rows))
        return
    form = (
        "<form method='get'>Created By <input name='created_by' "
        f"value='{escape(query.get('created_by', ''))}'> <button>Show Batches</button></form>"
    )
    link = "<p><a href='?format=csv'>CSV</a></p>"
    h.send(
        HTTPStatus.OK,
        "text/html; charset=utf-8",
        _page(
            "Cash Batches", form + _table(CASH_HEADER, rows, {2, 3, 4, 5}) + APPROVE_LEGEND + link
        ),
    )


def external_deposits(h: Handler, query: dict[str, str]) -> None:
    """Reports > External Deposits, keyed by external batch id (ClientJnlNo)."""
    month = query.get("month") or date.today().strftime("%Y-%m")
    level = query.get("level", "summary")
    if level not in ("summary", "payment", "detail"):
        h.send_text(HTTPStatus.BAD_REQUEST, "level must be summary, payment or detail\n")
        return
    try:
        datetime.strptime(month, "%Y-%m")
    except ValueError:
        h.send_text(HTTPStatus.BAD_REQUEST, "month must be YYYY-MM\n")
        return
    header = list(DEPOSIT_HEADER)
    if level != "summary":
        header += ["Lease", "Type", "Reason", "ClientTransactionID", "Receipt"]
    if level == "detail":
        header += ["PaymentType", "Description", "R-Code", "Posted"]
    rows: list[list[str]] = []
    grand = [ZERO] * 5
    for b in batches(h.sandbox.store, query.get("property", ""), month=month):
        sums = [b["rent_other"], b["security_deposits"], b["misc"], b["returns"], b["total"]]
        grand = [g + s for g, s in zip(grand, sums, strict=True)]
        if level != "summary":
            for e in b["entries"]:
                is_return = e["entry_type"] == "Return"
                amounts = [
                    ZERO if is_return else e["amount"],
                    ZERO,
                    ZERO,
                    e["amount"] if is_return else ZERO,
                    e["amount"],
                ]
                row = [
                    b["client_jnl_no"],
                    str(b["batch_no"]),
                    *map(_money, amounts),
                    "-".join((e["property_id"], e["bldg_id"], e["unit_id"], e["resi_id"])),
                    e["entry_type"],
                    e["reason"],
                    e["client_transaction_id"],
                    e["evolution_reference"],
                ]
                if level == "detail":
                    row += [e["payment_type"], e["description"], e["r_code"], e["created_at"]]
                rows.append(row)
        total_row = [b["client_jnl_no"], str(b["batch_no"]), *map(_money, sums)]
        if level != "summary":
            total_row[0] = f"Total {b['client_jnl_no']}"
            total_row += [""] * (len(header) - len(total_row))
        rows.append(total_row)
    grand_row = ["Grand Total", "", *map(_money, grand)]
    grand_row += [""] * (len(header) - len(grand_row))
    rows.append(grand_row)
    if query.get("format") == "csv":
        h.send(HTTPStatus.OK, "text/csv; charset=utf-8", _csv(header, rows))
        return
    levels = " | ".join(
        f"<a href='?month={month}&level={lv}'>{lv}</a>" for lv in ("summary", "payment", "detail")
    )
    body = (
        f"<p>Month {escape(month)}, level {escape(level)}: {levels}</p>"
        + _table(header, rows, {2, 3, 4, 5, 6})
        + f"<p><a href='?month={month}&level={level}&format=csv'>CSV</a></p>"
    )
    h.send(HTTPStatus.OK, "text/html; charset=utf-8", _page("External Deposits", body))


def index(h: Handler) -> None:
    base = h.base_url()
    links = [
        ("/edexweb/esite/leasing.asmx?wsdl", "Leasing WSDL"),
        ("/edexweb/esite/ledger.asmx?wsdl", "Ledger WSDL"),
        ("/edexweb/esite/cashbatches", "Ledger > Cash Batches"),
        ("/edexweb/esite/externaldeposits", "Reports > External Deposits"),
        ("/sandbox/ledger", "Control API: ledger (JSON)"),
        ("/sandbox/properties", "Control API: properties (JSON)"),
        ("/sandbox/faults", "Control API: faults (JSON)"),
        ("/sandbox/variants", "Control API: variants (JSON)"),
        ("/sandbox/health", "Control API: health"),
    ]
    items = "".join(
        f"<li><a href='{u}'>{escape(t)}</a> <code>{escape(base + u)}</code></li>" for u, t in links
    )
    variants = ", ".join(f"{k}={v}" for k, v in h.sandbox.variants.items())
    body = (
        f"<p>Portfolio <b>{escape(h.sandbox.portfolio)}</b>; variants "
        f"<code>{escape(variants)}</code></p><ul>{items}</ul>"
    )
    h.send(HTTPStatus.OK, "text/html; charset=utf-8", _page("AMSI eSite eDex sandbox", body))


def service_page(service: str, base: str) -> bytes:
    url = f"{base}/edexweb/esite/{service}.asmx?wsdl"
    return _page(
        f"{service.title()} web service",
        f"<p>Service description: <a href='{url}'>{escape(url)}</a></p>",
    )


def handle(h: Handler, path: str, query: dict[str, list[str]]) -> None:
    q = {k: v[0] for k, v in query.items()}
    if path == "/":
        index(h)
    elif path == "/edexweb/esite/cashbatches":
        cash_batches(h, q)
    elif path == "/edexweb/esite/externaldeposits":
        external_deposits(h, q)
    else:
        h.send_text(HTTPStatus.NOT_FOUND, f"not found: {path}\n")
