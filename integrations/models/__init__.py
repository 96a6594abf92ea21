from .connection import Connection
from .fake import FakeLeaseLink, FakeOccupantLink, FakeRemoteEntry
from .links import RemoteLeaseLink, RemoteOccupantLink
from .posting import (
    ConnectionDrain,
    Posting,
    PostingAttempt,
    PostingKind,
    PostingState,
    ReportDelivery,
)
from .reports import DepositReport, ReconciliationRun
from .sync import SyncKind, SyncRun, SyncStatus

__all__ = [
    "Connection",
    "ConnectionDrain",
    "DepositReport",
    "FakeLeaseLink",
    "FakeOccupantLink",
    "FakeRemoteEntry",
    "Posting",
    "PostingAttempt",
    "PostingKind",
    "PostingState",
    "RemoteLeaseLink",
    "ReconciliationRun",
    "RemoteOccupantLink",
    "ReportDelivery",
    "SyncKind",
    "SyncRun",
    "SyncStatus",
]
