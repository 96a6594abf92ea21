"""Spreadsheet formula injection ("CSV injection"): neutralise cells before they are written.

A spreadsheet opening a CSV (or an XLSX whose text cell starts with ``=``) runs a cell that
starts with ``=``, ``+``, ``-`` or ``@`` as a formula, and a leading tab or carriage return can
hide one. Resident names, addresses, emails and notes come from outside (AMSI, residents
themselves), so a resident named ``=HYPERLINK("http://x","y")`` must reach the manager's
spreadsheet as text. The usual remedy (OWASP, "CSV Injection"): prefix such a cell with a
single quote, which spreadsheets show as text and do not evaluate.

Which cells: every text cell that starts with one of those characters, **except a plain
decimal number** (``-35.00``, ``12``, ``-0.5``). The rule is decided on the cell's value, not
its column, on purpose:

- a plain number cannot carry a formula (a spreadsheet reads ``-35.00`` as the number -35), so
  leaving it alone is safe whichever column it is in, and our money columns (negative reversal
  amounts, a lease's negative balance) stay numbers a manager can sum;
- a column-based rule ("neutralise the resident and note columns") has to be kept in step with
  every column anyone adds to any export; a value-based rule covers the next column too.

Anything else that starts with a trigger is neutralised, including text that merely looks
numeric with extra characters (``-2+3``, ``+1 555 0100``, ``-1e5``). Cells that are not text
(Decimal, int, date, None, as binary export formats carry them) are left as they are: they are
written as typed values, never parsed as formulas. Neutralising is idempotent: a neutralised
cell starts with ``'`` and is never prefixed twice.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from typing import Any

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
PREFIX = "'"
_PLAIN_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def neutralise(value: Any) -> Any:
    """The cell as a spreadsheet should receive it (see the module docstring)."""
    if not isinstance(value, str) or not value.startswith(TRIGGERS):
        return value
    if _PLAIN_NUMBER.fullmatch(value):
        return value
    return PREFIX + value


def neutralise_row(row: Iterable[Any]) -> list[Any]:
    return [neutralise(cell) for cell in row]


class SafeWriter:
    """``csv.writer`` whose every row is neutralised first; use it for any CSV we write."""

    def __init__(self, stream, *args, **kwargs):
        self._writer = csv.writer(stream, *args, **kwargs)

    def writerow(self, row: Iterable[Any]):
        return self._writer.writerow(neutralise_row(row))

    def writerows(self, rows: Iterable[Iterable[Any]]):
        for row in rows:
            self.writerow(row)


def writer(stream, *args, **kwargs) -> SafeWriter:
    return SafeWriter(stream, *args, **kwargs)


def neutralise_dataset(dataset):
    """Neutralise a tablib Dataset in place (django-import-export's export) and return it.

    Headers are ours (field names); rows are rebuilt cell by cell.
    """
    rows = [neutralise_row(row) for row in dataset]
    headers = dataset.headers
    title = dataset.title
    dataset.wipe()
    dataset.headers = headers
    dataset.title = title
    for row in rows:
        dataset.append(row)
    return dataset
