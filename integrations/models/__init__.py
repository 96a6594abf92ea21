from .connection import Connection
from .fake import FakeRemoteEntry
from .posting import (
    DepositReport,
    Posting,
    PostingAttempt,
    PostingKind,
    PostingState,
    ReportDelivery,
)
from .sync import SyncKind, SyncRun, SyncStatus

__all__ = [
    "Connection",
    "DepositReport",
    "FakeRemoteEntry",
    "Posting",
    "PostingAttempt",
    "PostingKind",
    "PostingState",
    "ReportDelivery",
    "SyncKind",
    "SyncRun",
    "SyncStatus",
]
