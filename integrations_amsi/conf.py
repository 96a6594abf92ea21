"""An AMSI connection's settings, read from the generic Connection row.

Non-secret values live in ``Connection.settings``; the eDex password lives in the encrypted
``Connection.credentials`` and is only ever read here, to be handed to the SOAP client.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.utils import timezone

from integrations.exceptions import ProviderConfigurationError

from .identifiers import is_edex_int

DEFAULT_TIMEOUT = 20.0  # seconds per SOAP call: 2 x 20 + 5 s < the django-q2 task timeout (90 s)
DEFAULT_CUTOFF = "22:00"  # batches of a day are settled from this local time on
# SettlementDate when the bank deposit date is not known yet: the batch's day plus this many
# business days (weekends skipped), as the production client did.
DEFAULT_SETTLEMENT_LAG_DAYS = 3
# UpdateSettlementData's ApprovalCode: production sent a short constant (its company name).
DEFAULT_APPROVAL_CODE = "RentPlatform"
APPROVAL_CODE_MAX = 12  # production's was 9 characters; eSite's limit is not known
# The most a SOAP reply read whole (everything but the streamed resident lists, which have their
# own cap, xmldocs.MAX_DOCUMENT_BYTES) may hold; the transport stops reading there. A property
# list or a ledger reply is a few KiB; 64 MiB is far above any real one and far below harm.
DEFAULT_MAX_REPLY_BYTES = 64 * 1024 * 1024
# How many UpdateSettlementData calls one connection sends at once when many batches are due
# (a distant eSite answering each in 100-200 ms, assumed, not measured on a real eSite: 1,000
# batches one by one would take minutes).
# eSite's own limit on concurrent calls is not published; 8 at once settles 1,000 batches in
# about 22 s at 150 ms a call (bench/settle.py), one by one they take 150 s.
DEFAULT_SETTLE_CONCURRENCY = 8
MAX_SETTLE_CONCURRENCY = 16

SETTING_KEYS = (
    "url",
    "portfolio",
    "user_id",
    "property_id",
    "merchant_id",
    "created_by",
    "close_cutoff",
    "timeout",
    "settlement_lag_days",
    "approval_code",
    "duplicates_refused_by",
    "duplicates_refused_at",
    "duplicates_refused_code",
    "max_reply_bytes",
    "settle_concurrency",
)


@dataclass(frozen=True)
class AmsiSettings:
    url: str
    portfolio: str
    user_id: str
    password: str
    property_id: str
    merchant_id: str
    created_by: str
    close_cutoff: dt.time
    timeout: float
    settlement_lag_days: int = DEFAULT_SETTLEMENT_LAG_DAYS
    approval_code: str = DEFAULT_APPROVAL_CODE
    # Who confirmed on this eSite that a repeated ClientTransactionID is refused, and when
    # (docs/amsi.md, "First payment on a live eSite"): only then are unknown outcomes checked
    # automatically. Empty: every unknown outcome waits for a person.
    duplicates_refused_by: str = ""
    duplicates_refused_at: str = ""
    # The ErrorCode this eSite answered when it refused the repeat: that code, on AddPayment,
    # means "already posted" for this connection.
    duplicates_refused_code: str = ""
    # The largest SOAP reply read whole (bytes, after any content decoding); bigger is refused.
    max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES
    # UpdateSettlementData calls in flight at once for this connection (1 to 16).
    settle_concurrency: int = DEFAULT_SETTLE_CONCURRENCY

    @property
    def duplicates_refused(self) -> bool:
        return bool(self.duplicates_refused_by and self.duplicates_refused_at)

    @property
    def base_url(self) -> str:
        """The eDex base, e.g. ``https://host/AMSIWEBG003/edexweb/esite``."""
        url = self.url.rstrip("/")
        for suffix in ("/leasing.asmx", "/ledger.asmx"):
            if url.lower().endswith(suffix):
                url = url[: -len(suffix)]
        return url

    @property
    def leasing_wsdl(self) -> str:
        return f"{self.base_url}/leasing.asmx?wsdl"

    @property
    def ledger_wsdl(self) -> str:
        return f"{self.base_url}/ledger.asmx?wsdl"


def parse_cutoff(value: str) -> dt.time:
    match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", (value or "").strip())
    if not match:
        raise ValidationError(f"cutoff {value!r} is not a time like 22:00")
    return dt.time(int(match.group(1)), int(match.group(2)))


def validate_url(value: str) -> None:
    if not re.match(r"^https?://[^\s/]+", value or ""):
        raise ValidationError(f"{value!r} is not an http(s) URL of the eDex services")


def _lag_days(value) -> int:
    """The deposit lag in business days: 0 is honoured, anything unreadable is the default."""
    try:
        return max(int(value), 0)
    except (TypeError, ValueError):
        return DEFAULT_SETTLEMENT_LAG_DAYS


def _max_reply_bytes(value) -> int:
    """A positive byte count; anything unreadable (or absent) is the default."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return DEFAULT_MAX_REPLY_BYTES
    return number if number > 0 else DEFAULT_MAX_REPLY_BYTES


def _settle_concurrency(value) -> int:
    """1 to MAX_SETTLE_CONCURRENCY; anything unreadable (or absent) is the default."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return DEFAULT_SETTLE_CONCURRENCY
    return min(max(number, 1), MAX_SETTLE_CONCURRENCY)


def validate_merchant_id(value: str) -> None:
    """ClientMerchantID: production sent an integer (its own group id), so this does too."""
    if value and not is_edex_int(str(value).strip()):
        raise ValidationError(
            f"merchant id {value!r} must be a positive whole number of at most 9 digits: "
            "production clients sent ClientMerchantID as an integer, and eSite may read it as one"
        )


def settings_for(connection) -> AmsiSettings:
    s = connection.settings or {}
    missing = [k for k in ("url", "portfolio", "user_id", "property_id") if not s.get(k)]
    if missing:
        raise ProviderConfigurationError(
            f"AMSI connection for {connection.property.code} is missing: {', '.join(missing)}"
        )
    password = (connection.credentials or {}).get("password", "")
    if not password:
        raise ProviderConfigurationError(
            f"AMSI connection for {connection.property.code} has no password set"
        )
    return AmsiSettings(
        url=s["url"],
        portfolio=s["portfolio"],
        user_id=s["user_id"],
        password=password,
        property_id=str(s["property_id"]),
        merchant_id=str(s.get("merchant_id", "")),
        created_by=s.get("created_by") or s["user_id"],
        close_cutoff=parse_cutoff(s.get("close_cutoff") or DEFAULT_CUTOFF),
        timeout=float(s.get("timeout") or DEFAULT_TIMEOUT),
        settlement_lag_days=_lag_days(s.get("settlement_lag_days")),
        approval_code=(str(s.get("approval_code") or "").strip() or DEFAULT_APPROVAL_CODE)[
            :APPROVAL_CODE_MAX
        ],
        duplicates_refused_by=str(s.get("duplicates_refused_by") or ""),
        duplicates_refused_at=str(s.get("duplicates_refused_at") or ""),
        duplicates_refused_code=str(s.get("duplicates_refused_code") or "").strip(),
        max_reply_bytes=_max_reply_bytes(s.get("max_reply_bytes")),
        settle_concurrency=_settle_concurrency(s.get("settle_concurrency")),
    )


def record_duplicates_refused(connection, *, who: str, code: str) -> None:
    """Record that this eSite was seen to refuse a repeated ClientTransactionID: who saw it,
    when, and the ErrorCode it answered (which then means "already posted" on AddPayment).
    From then on unknown outcomes are re-sent and checked unattended."""
    from .client import clear_clients  # here: client.py imports this module

    connection.refresh_from_db()
    connection.settings = {
        **(connection.settings or {}),
        "duplicates_refused_by": who or "unknown",
        "duplicates_refused_at": timezone.now().isoformat(timespec="seconds"),
        "duplicates_refused_code": str(code),
    }
    connection.save(update_fields=["settings", "updated_at"])
    clear_clients()
