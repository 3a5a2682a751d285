"""Who may do what (API.md, "Who may do what"): the one place every resolver asks."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from coachgraph.errors import PermissionDenied, Unauthenticated
from coachgraph.stores.records import AthleteScope, SessionRecord, SessionScope


class Role(enum.Enum):
    ADMIN = "ADMIN"
    COACH = "COACH"
    ATHLETE = "ATHLETE"


@dataclass(frozen=True, slots=True)
class Viewer:
    """The authenticated identity of a request; `role` None means anonymous."""

    role: Role | None = None
    coach_id: int | None = None
    athlete_id: int | None = None
    subject: str | None = None
    expires_at: float | None = None  # the token's exp (epoch seconds)

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def is_coach(self, coach_id: int) -> bool:
        return self.role is Role.COACH and self.coach_id == coach_id

    def is_athlete(self, athlete_id: int) -> bool:
        return self.role is Role.ATHLETE and self.athlete_id == athlete_id


ANONYMOUS = Viewer()


class LiveSessionLike(Protocol):
    @property
    def coach_id(self) -> int: ...

    @property
    def athlete_id(self) -> int: ...


class AthleteAccess(enum.IntEnum):
    NONE = 0
    PROFILE = 1  # profile, skills, goals
    FULL = 2


def require(allowed: bool, message: str = "You may not do this") -> None:
    if not allowed:
        raise PermissionDenied(message)


def require_signed_in(viewer: Viewer) -> None:
    if viewer.role is None:
        raise Unauthenticated("Sign in to do this")


def athlete_scope(viewer: Viewer) -> AthleteScope:
    """Which athletes the viewer may list; anonymous viewers may list none."""
    if viewer.role is None:
        raise PermissionDenied("Sign in to see athletes")
    if viewer.is_admin:
        return AthleteScope(everyone=True)
    if viewer.role is Role.COACH:
        return AthleteScope(looking_for_coach=True, coach_id=viewer.coach_id)
    return AthleteScope(athlete_id=viewer.athlete_id)


def athlete_access(
    viewer: Viewer, *, athlete_id: int, looking_for_coach: bool, coached_by_viewer: bool
) -> AthleteAccess:
    """How much of one athlete the viewer may read."""
    if viewer.is_admin or viewer.is_athlete(athlete_id):
        return AthleteAccess.FULL
    if viewer.role is Role.COACH:
        if coached_by_viewer:
            return AthleteAccess.FULL
        if looking_for_coach:
            return AthleteAccess.PROFILE
    return AthleteAccess.NONE


def session_scope(viewer: Viewer) -> SessionScope:
    """Which training sessions the viewer may list."""
    if viewer.is_admin:
        return SessionScope(everyone=True)
    if viewer.role is Role.COACH:
        return SessionScope(coach_id=viewer.coach_id)
    if viewer.role is Role.ATHLETE:
        return SessionScope(athlete_id=viewer.athlete_id)
    raise PermissionDenied("Sign in to see sessions")


def can_read_session(viewer: Viewer, session: LiveSessionLike) -> bool:
    return (
        viewer.is_admin
        or viewer.is_coach(session.coach_id)
        or viewer.is_athlete(session.athlete_id)
    )


def can_manage_catalogue(viewer: Viewer) -> bool:
    """Create coaches, athletes and skills: the platform's operators."""
    return viewer.is_admin


def can_edit_coach(viewer: Viewer, coach_id: int) -> bool:
    """A coach's profile, skills, programs and roster."""
    return viewer.is_admin or viewer.is_coach(coach_id)


def can_edit_athlete(viewer: Viewer, athlete_id: int) -> bool:
    """An athlete's profile, skills, goals and enrollments."""
    return viewer.is_admin or viewer.is_athlete(athlete_id)


def can_manage_session(viewer: Viewer, coach_id: int) -> bool:
    """Schedule, start and end a session: its coach (or admin)."""
    return viewer.is_admin or viewer.is_coach(coach_id)


def can_write_session_media(viewer: Viewer, session: SessionRecord) -> bool:
    """Attach media to a session: its coach, its athlete (form checks), admins."""
    return can_read_session(viewer, session)


def can_write_samples(viewer: Viewer, session: LiveSessionLike) -> bool:
    """Samples of a session: its coach, its athlete (wearables), admins."""
    return can_read_session(viewer, session)
