"""The floor the posting benches compare against: a bare zeep AddPayment, no platform code.

A plain ``zeep.Client`` on the sandbox's Ledger WSDL (its default transport, one
``requests.Session`` kept per process), bound to the same address the provider uses, sending
the XMLData the provider built for a real posting with only ClientTransactionID changed (a fresh
id from ``FLOOR_IDS`` on, so the sandbox books every call instead of refusing a repeat).

``floor_task`` is what bench/worker.py queues as the bare-task floor: the same call inside a
django-q2 task on the same workers, appending "transaction id, finishing time" to a file (the
task result table is pruned at ``save_limit``, a file is not; a task the broker delivered twice
shows as its id twice).

``commit_floor`` is the database's own floor for taking payments on PostgreSQL: small
INSERTs, each its own committed transaction, as fast as the disk flushes them.
"""

from __future__ import annotations

import re
import threading
import time

import requests
import zeep

FLOOR_IDS = 900_000_000  # ClientTransactionIDs of bare calls: far above any posting's
CREDENTIALS = {"UserID": "edex_demo", "Password": "sandbox-secret", "PortfolioName": "DEMO"}
_TXN = re.compile(r'ClientTransactionID="[0-9]+"')
_services: dict[str, object] = {}


def service(base_url: str):
    """The Ledger SOAP service of the sandbox at ``base_url``, built once per process."""
    if base_url not in _services:
        client = zeep.Client(
            f"{base_url}/edexweb/esite/ledger.asmx?wsdl",
            transport=zeep.Transport(session=requests.Session()),
        )
        _services[base_url] = client.create_service(
            "{http://tempuri.org/}LedgerSoap", f"{base_url}/edexweb/esite/ledger.asmx"
        )
    return _services[base_url]


def with_transaction_id(xml: str, transaction_id: int) -> str:
    return _TXN.sub(f'ClientTransactionID="{transaction_id}"', xml, count=1)


def add_payment(base_url: str, xml: str) -> str:
    """One AddPayment; the reply text (checked by the caller where it matters)."""
    return str(service(base_url).AddPayment(**CREDENTIALS, preliminary=0, XMLData=xml))


def floor_task(base_url: str, template: str, transaction_id: int, out: str) -> float:
    add_payment(base_url, with_transaction_id(template, transaction_id))
    done = time.time()
    with open(out, "a") as f:  # one short O_APPEND write per task: lines never interleave
        f.write(f"{transaction_id} {done}\n")
    return done


def commit_floor(connection, clients: int, seconds: float = 3.0) -> dict:
    """What the disk allows: one small INSERT committed per transaction (autocommit, one round
    trip each), back to back for ``seconds`` on ``clients`` psycopg connections (threads, no
    Django), on the bench database with the cluster stopped. With one client it is the most
    a process committing once per payment can take; two show what group commit adds."""
    import psycopg

    sd = connection.settings_dict
    params = {
        "host": sd["HOST"] or "127.0.0.1",
        "port": sd["PORT"] or 5432,
        "user": sd["USER"],
        "dbname": sd["NAME"],
        "autocommit": True,
    }
    with psycopg.connect(**params) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_commit_floor (id bigserial, v int)")
    counts = [0] * clients

    def loop(i: int, until: float) -> None:
        with psycopg.connect(**params) as conn:
            while time.monotonic() < until:
                conn.execute("INSERT INTO bench_commit_floor (v) VALUES (%s)", (i,))
                counts[i] += 1

    until = time.monotonic() + seconds
    threads = [threading.Thread(target=loop, args=(i, until)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with psycopg.connect(**params) as conn:
        conn.execute("DROP TABLE bench_commit_floor")
    rate = sum(counts) / seconds
    return {"rate": rate, "ms": 1000 * clients / rate if rate else 0.0}
