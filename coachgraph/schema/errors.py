"""Typed mutation errors: every mutation returns <Thing> | these, selectable as UserError."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import strawberry

from coachgraph.errors import Conflict, DomainError, InvalidInput, NotFound, Unavailable
from coachgraph.ids import to_global_id

R = TypeVar("R")
T = TypeVar("T")


@strawberry.interface
class UserError:
    message: str


@strawberry.type
class ValidationError(UserError):
    field: str | None
    code: str


@strawberry.type
class NotFoundError(UserError):
    id: strawberry.ID


@strawberry.type
class PermissionDeniedError(UserError):
    pass


@strawberry.type
class ConflictError(UserError):
    pass


ErrorResult = ValidationError | NotFoundError | PermissionDeniedError | ConflictError


def user_error(err: DomainError) -> ErrorResult:
    """The typed result for an expected failure."""
    if isinstance(err, InvalidInput):
        return ValidationError(message=err.message, field=err.field, code=err.reason)
    if isinstance(err, NotFound):
        return NotFoundError(
            message=err.message, id=strawberry.ID(to_global_id(err.type_name, err.raw_id))
        )
    if isinstance(err, Conflict):
        return ConflictError(message=err.message)
    return PermissionDeniedError(message=err.message)


async def as_result(run: Callable[[], Awaitable[R]], present: Callable[[R], T]) -> T | ErrorResult:
    """Run a mutation; expected failures become typed results, anything else propagates."""
    try:
        return present(await run())
    except Unavailable:
        raise  # a store is down, not the input wrong: a top-level UNAVAILABLE error
    except DomainError as err:
        return user_error(err)
