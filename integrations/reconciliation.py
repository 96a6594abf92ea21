"""Reconciliation runs, shared by the command and the admin page."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from integrations.models import Connection
from integrations.providers.base import BatchDifference


@dataclass
class ReconciliationResult:
    connection: Connection
    month: dt.date
    differences: list[BatchDifference] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and not self.differences

    def summary(self) -> str:
        code = self.connection.property.code
        if self.error:
            return f"{code} {self.month:%Y-%m}: could not reconcile: {self.error}"
        if not self.differences:
            return f"{code} {self.month:%Y-%m}: 0 differences - our batches match AMSI"
        return f"{code} {self.month:%Y-%m}: {len(self.differences)} difference(s)"


def parse_month(value: str | None) -> dt.date:
    if not value:
        return dt.date.today().replace(day=1)
    try:
        return dt.datetime.strptime(value, "%Y-%m").date()
    except ValueError:
        raise ValueError(f"month {value!r} is not YYYY-MM") from None


def reconcile(connection: Connection, month: dt.date, report_text: str | None = None):
    from integrations.exceptions import IntegrationError

    result = ReconciliationResult(connection, month)
    try:
        result.differences = connection.get_provider().reconcile(month, report_text)
    except IntegrationError as err:
        result.error = err.message
    return result
