"""The /sandbox/ JSON control API: load data, change leases, read the books, inject faults,
switch variants.

When the sandbox has a control token (required beyond loopback: server.make_server), every
control request must carry it in the X-Sandbox-Token header; otherwise 403 with a JSON error.
The SOAP endpoints and the eSite pages are not affected (they have their own login).
"""

from __future__ import annotations

import hmac
import json
from http import HTTPStatus
from typing import TYPE_CHECKING

from lxml import etree

from .reports import batches, jsonable
from .seed import load_demo
from .variants import describe
from .xmlsafe import XmlRejected, iterparse_file, local, parse_bytes

if TYPE_CHECKING:
    from .server import Handler


def _send_json(h: Handler, status: int, data: object) -> None:
    h.send(status, "application/json", json.dumps(jsonable(data), indent=1).encode("utf-8"))


def _json_body(h: Handler) -> dict:
    raw = h.read_body(h.sandbox.max_body)
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"body is not JSON: {err}") from err
    if not isinstance(data, dict):
        raise ValueError("body must be a JSON object")
    return data


def _stream(h: Handler, tag: str, root_name: str) -> list[etree._Element]:
    """Parse an uploaded eSite document, keeping only its `tag` children (streamed)."""
    fh = h.spool_body(h.sandbox.max_load_body)
    try:
        elements = []
        root_seen = None
        try:
            for _event, el in iterparse_file(fh, tag):
                root_seen = el.getroottree().getroot()
                elements.append(el)
                # keep the element, drop what came before it from the tree
                parent = el.getparent()
                if parent is not None:
                    parent.remove(el)
            if root_seen is None:
                fh.seek(0)
                root_seen = parse_bytes(fh.read())
        except etree.XMLSyntaxError as err:
            raise ValueError(f"not well-formed XML: {err}") from err
        except XmlRejected as err:
            raise ValueError(str(err)) from err
        if root_seen.getroottree().docinfo.doctype:
            raise ValueError("DOCTYPE is not allowed")
        if local(root_seen.tag) != root_name:
            raise ValueError(f"root element must be <{root_name}>, got <{local(root_seen.tag)}>")
        return elements
    finally:
        fh.close()


def lease_json(row) -> dict:  # row: a sqlite3.Row
    return {
        "PropertyId": row["property_id"],
        "BldgID": row["bldg_id"],
        "UnitID": row["unit_id"],
        "ResiID": row["resi_id"],
        "attributes": dict(json.loads(row["attrs"])),
        "nsf_count": row["nsf_count"],
        "last_nsf_date": row["last_nsf_date"],
    }


TOKEN_HEADER = "X-Sandbox-Token"
_REFUSED_DRAIN = 16 * 1024 * 1024


def _token_problem(h: Handler) -> str:
    """Why this request may not use the control API ("" when it may)."""
    expected = h.sandbox.control_token
    if not expected:
        return ""
    given = h.headers.get(TOKEN_HEADER)
    if given is None:
        return (
            f"the control API needs the {TOKEN_HEADER} header: this sandbox was started with "
            "a control token"
        )
    if not hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
        return f"wrong {TOKEN_HEADER}"
    return ""


def _refuse(h: Handler, reason: str) -> None:
    """403 before reading the body; the connection closes (what was sent is drained first, so
    the client reads the answer rather than a reset)."""
    h.close_connection = True
    _send_json(h, HTTPStatus.FORBIDDEN, {"error": reason})
    h.drain_body(_REFUSED_DRAIN)


def handle(h: Handler, path: str, query: dict[str, list[str]]) -> None:
    problem = _token_problem(h)
    if problem:
        _refuse(h, problem)
        return
    try:
        _dispatch(h, path, query)
    except ValueError as err:
        _send_json(h, HTTPStatus.BAD_REQUEST, {"error": str(err)})


def _dispatch(h: Handler, path: str, query: dict[str, list[str]]) -> None:
    sb = h.sandbox
    store = sb.store
    parts = [p for p in path.split("/") if p][1:]
    m = h.command
    q = {k: v[0] for k, v in query.items()}
    if parts == ["health"] and m == "GET":
        with store.read() as c:
            n = c.execute("SELECT COUNT(*) FROM properties").fetchone()[0]
        _send_json(
            h,
            200,
            {"status": "ok", "portfolio": sb.portfolio, "properties": n, "variants": sb.variants},
        )
    elif parts == ["reset"] and m == "POST":
        body = _json_body(h)
        store.wipe()
        sb.faults.clear()  # variants stay: they describe which eSite this is, not its data
        if body.get("seed") == "demo":
            load_demo(store)
        _send_json(h, 200, {"status": "reset"})
    elif parts == ["properties"] and m == "GET":
        with store.read() as c:
            rows = [dict(r) for r in c.execute("SELECT * FROM properties ORDER BY property_id")]
        _send_json(h, 200, {"properties": rows})
    elif len(parts) == 2 and parts[0] == "properties" and m == "PUT":
        body = _json_body(h)
        store.put_property(
            parts[1],
            name=str(body.get("name", "")),
            client_merchant_id=str(body.get("ClientMerchantID", "")),
            bank_book=str(body.get("bank_book", body.get("BankBook", ""))),
        )
        _send_json(h, 200, dict(store.get_property(parts[1])))
    elif len(parts) == 3 and parts[0] == "properties" and parts[2] == "units" and m == "PUT":
        n = store.replace_units(parts[1], iter(_stream(h, "Unit", "PropertyUnits")))
        _send_json(h, 200, {"PropertyId": parts[1], "units": n})
    elif len(parts) == 3 and parts[0] == "properties" and parts[2] == "residents" and m == "PUT":
        n = store.replace_leases(parts[1], iter(_stream(h, "Lease", "PropertyResidents")))
        _send_json(h, 200, {"PropertyId": parts[1], "leases": n})
    elif len(parts) == 2 and parts[0] == "leases" and m == "POST":
        root = parse_bytes(h.read_body(sb.max_body))
        leases = (
            [root] if local(root.tag) == "Lease" else [e for e in root if local(e.tag) == "Lease"]
        )
        if not leases:
            raise ValueError("send a <Lease> element (or <PropertyResidents> of them)")
        keys = [store.add_lease(parts[1], el) for el in leases]
        _send_json(h, 201, {"added": ["-".join(k) for k in keys]})
    elif len(parts) == 5 and parts[0] == "leases":
        key = (parts[1], parts[2], parts[3], parts[4])
        if m == "GET":
            row = store.get_lease(key)
        elif m == "PATCH":
            body = _json_body(h)
            bad = [k for k, v in body.items() if not isinstance(v, str | int)]
            if bad:
                raise ValueError(f"values must be strings: {', '.join(bad)}")
            row = store.patch_lease(key, {k: str(v) for k, v in body.items()})
        else:
            _send_json(h, 405, {"error": "GET or PATCH"})
            return
        if row is None:
            _send_json(h, 404, {"error": f"no lease {'-'.join(key)}"})
            return
        data = lease_json(row)
        with store.read() as c:
            data["status_changes"] = [
                dict(r)
                for r in c.execute(
                    "SELECT changed_at, what FROM status_changes WHERE property_id=? AND "
                    "bldg_id=? AND unit_id=? AND resi_id=? ORDER BY changed_at",
                    key,
                )
            ]
        _send_json(h, 200, data)
    elif parts == ["ledger"] and m == "GET":
        data = batches(
            store, q.get("property", ""), q.get("client_jnl_no", ""), q.get("created_by", "")
        )
        _send_json(h, 200, {"batches": data})
    elif parts == ["variants"]:
        if m == "POST":
            sb.set_variants(_json_body(h))  # ValueError (400) before anything changes
        elif m not in ("GET", "HEAD"):
            _send_json(h, 405, {"error": "GET or POST"})
            return
        _send_json(h, 200, {"variants": dict(sb.variants), "allowed": describe()})
    elif parts == ["faults"]:
        if m == "GET":
            _send_json(h, 200, {"faults": sb.faults.list()})
        elif m == "POST":
            fault = sb.faults.add(_json_body(h))
            _send_json(h, 201, fault.public())
        elif m == "DELETE":
            sb.faults.clear()
            _send_json(h, 200, {"faults": []})
        else:
            _send_json(h, 405, {"error": "GET, POST or DELETE"})
    else:
        _send_json(h, 404, {"error": f"no control route {m} {path}"})
