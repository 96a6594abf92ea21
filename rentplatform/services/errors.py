from __future__ import annotations


class ServiceError(Exception):
    """A request the platform refuses; ``code`` is stable, ``message`` is for a person."""

    code = "refused"

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code

    def __str__(self) -> str:
        return self.message


class PaymentRefused(ServiceError):
    code = "payment_refused"
