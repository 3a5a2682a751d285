"""Expected failures of the domain. Stores and resolvers raise them; the schema presents them."""

from __future__ import annotations


class DomainError(Exception):
    """An expected failure with a message safe to show a client."""

    code = "BAD_USER_INPUT"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(DomainError):
    """An argument is malformed or out of range; `field` names it."""

    def __init__(self, message: str, *, field: str | None = None, code: str = "INVALID") -> None:
        super().__init__(message)
        self.field = field
        self.reason = code


class NotFound(DomainError):
    """A referenced record does not exist (or is not visible to the viewer)."""

    code = "NOT_FOUND"

    def __init__(self, type_name: str, raw_id: int, message: str | None = None) -> None:
        super().__init__(message or f"{type_name} not found")
        self.type_name = type_name
        self.raw_id = raw_id


class PermissionDenied(DomainError):
    code = "FORBIDDEN"

    def __init__(self, message: str = "You may not do this") -> None:
        super().__init__(message)


class Unauthenticated(DomainError):
    code = "UNAUTHENTICATED"


class Conflict(DomainError):
    """The request is well formed but the current state refuses it."""

    code = "CONFLICT"


class SlowConsumer(DomainError):
    """A subscriber fell behind its bounded queue; it resumes with `after: last_cursor`."""

    code = "SLOW_CONSUMER"

    def __init__(self, last_cursor: str | None) -> None:
        super().__init__(
            "Subscription ended: the client fell behind. Resubscribe with after: "
            f"{last_cursor!r} to receive every sample from there."
        )
        self.extensions = {"lastCursor": last_cursor}


class Unavailable(DomainError):
    """A backing store is down or not answering: the request may succeed if retried later.

    Raised at the store boundary in place of the driver's connection errors, so resolvers and
    the schema present it as `UNAVAILABLE` (never INTERNAL); `store` names which one failed."""

    code = "UNAVAILABLE"

    def __init__(self, store: str, message: str | None = None) -> None:
        super().__init__(message or f"The {store} store is unavailable; retry later")
        self.store = store
        self.extensions = {"store": store}
