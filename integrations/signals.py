"""The integrations' own signals.

posting_posted(sender=Posting, posting: Posting)
    Sent after the transaction that marked a posting posted commits.
"""

from django.dispatch import Signal

posting_posted = Signal()
