from .connection import Connection
from .fake import FakeRemoteEntry
from .posting import (
    Posting,
    PostingAttempt,
    PostingKind,
    PostingState,
    ReportDelivery,
)
from .reports import DepositReport
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
