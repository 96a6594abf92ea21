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


class IdempotencyConflict(ServiceError):
    """An idempotency key sent again with a different request (amount, method, lease, payment).

    ``existing`` is the first request's result (a Payment or a Reversal), for a page that wants
    to name it.
    """

    code = "idempotency_key_reused"

    def __init__(self, message: str, *, existing: object = None):
        super().__init__(message)
        self.existing = existing
