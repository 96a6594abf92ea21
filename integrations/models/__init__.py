from .connection import Connection
from .fake import FakeRemoteEntry
from .posting import Posting, PostingAttempt, PostingKind, PostingState
from .sync import SyncKind, SyncRun, SyncStatus

__all__ = [
    "Connection",
    "FakeRemoteEntry",
    "Posting",
    "PostingAttempt",
    "PostingKind",
    "PostingState",
    "SyncKind",
    "SyncRun",
    "SyncStatus",
]
