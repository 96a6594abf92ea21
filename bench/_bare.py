"""The floor the posting benches compare against: a bare zeep AddPayment, no platform code.

A plain ``zeep.Client`` on the sandbox's Ledger WSDL (its default transport, one
``requests.Session`` kept per process), bound to the same address the provider uses, sending
the XMLData the provider built for a real posting with only ClientTransactionID changed (a fresh
id from ``FLOOR_IDS`` on, so the sandbox books every call instead of refusing a repeat).

``floor_task`` is what bench/worker.py queues as the bare-task floor: the same call inside a
django-q2 task on the same workers, appending "transaction id, finishing time" to a file (the
task result table is pruned at ``save_limit``, a file is not; a task the broker delivered twice
shows as its id twice).
"""

from __future__ import annotations

import re
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
