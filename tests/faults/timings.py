"""The fault suite's constants: where the repository is, and the timing chain scaled down."""

from __future__ import annotations

import zoneinfo
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHICAGO = zoneinfo.ZoneInfo("America/Chicago")

# The timing chain, scaled down for tests (production: 2 x 20 s + 5 s = 45 s < 90 s < 105 s <
#   120 s). SOAP timeout 1 s; an attempt after an unknown outcome makes two calls (check + write)
#   and may then wait inline for its next try (at most the longest backoff step here, 2 s), so
#   task timeout 6 s > 2 x 1 s + 2 s; claim 7 s; retry 9 s.
CLIENT_TIMEOUT = 1.0
TIMINGS = {
    "Q_TIMEOUT": "6",
    "Q_RETRY": "9",
    "INTEGRATIONS_CLAIM_SECONDS": "7",
    "INTEGRATIONS_UNKNOWN_OUTCOME_DELAY_SECONDS": "1.5",
    "INTEGRATIONS_RETRY_BACKOFF_SECONDS": "0.3,0.6,1,1.5,2,2,2",
    "INTEGRATIONS_MAX_ATTEMPTS": "10",
    "INTEGRATIONS_QUEUE_GRACE_SECONDS": "10",
}
# A write that lands this long after it was sent: longer than the client's timeout, shorter than
# the timeout + the unknown-outcome delay (so the check after it finds it).
SLOW_WRITE_SECONDS = 1.5
# The sandbox's answers to a repeated ClientTransactionID: refused (the platform then checks
# unknown outcomes unattended) or booked again (a person settles them; the harness plays one).
BOTH_DUPLICATES = ("refuse", "accept")
