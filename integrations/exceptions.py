"""One exception tree for every provider (after anymail's exceptions.py).

The base error carries the provider, the operation, the record it concerns, the remote error
code and an excerpt of the remote reply, and shows them in ``str()``. Leaves say what the outbox
should do: retry, retry after checking whether the first attempt landed, give up and ask a
person, or count it as already done. Configuration errors derive from ImproperlyConfigured,
outside the tree, so nothing catches them by accident.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from integrations.logging import mask


class IntegrationError(Exception):
    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        operation: str = "",
        record: str = "",
        code: str = "",
        response: str = "",
        request: str = "",
        remote_reference: str = "",
    ):
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.operation = operation
        self.record = record
        self.code = code
        self.response = mask(response or "")
        self.request = mask(request or "")
        self.remote_reference = remote_reference

    def __str__(self) -> str:
        parts = [self.message]
        context = ", ".join(
            f"{k} {v}"
            for k, v in (
                ("provider", self.provider),
                ("operation", self.operation),
                ("record", self.record),
                ("code", self.code),
            )
            if v
        )
        if context:
            parts.append(f"({context})")
        if self.response:
            excerpt = self.response[:300].replace("\n", " ")
            parts.append(f"reply: {excerpt}")
        return mask(" ".join(parts))


class RetryableError(IntegrationError):
    """Nothing was written remotely; trying again later may succeed (5xx, busy, down)."""


class AmbiguousOutcome(RetryableError):
    """The request may or may not have landed (timeout, reset, lost reply): check first."""


class PermanentError(IntegrationError, ValueError):
    """The remote refused for a reason trying again will not fix: a person must act."""


class LoginRefused(PermanentError):
    """The remote refused the connection's credentials: nothing was written, and no posting of
    this connection can succeed until a person fixes them; the outbox pauses the connection."""


class UnknownRemoteError(PermanentError):
    """An error code that is not in the provider's table: never dropped, never guessed."""


class AlreadyDone(IntegrationError):
    """The remote already has this record (a repeat of an earlier, landed attempt)."""


class ConnectionTestFailed(IntegrationError):
    """A connection test found a problem; ``message`` says which, for a person."""


class ProviderConfigurationError(ImproperlyConfigured):
    pass


class LinkRefused(ValueError):
    """Linking a lease by hand (integrations.linking) refused what a person typed; ``message``
    says why, in words a manager reads. Outside the tree: nothing was asked of the remote, or
    it answered that it has no such lease."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message
