"""Who may do what (API.md, "Who may do what"): the one place every resolver asks.

Visibility is written once, as data: the scope functions below say which athletes and
sessions a viewer may see or change (AthleteScope, SessionScope). Each backend renders a
scope: SQL in stores/sql.py, a filter in search/meili.py, and the predicates here
(`athlete_grant`, `session_admits`) over one record's facts, for node(id:), the search
re-check and writes. Stores and search backends never decide.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from coachgraph.errors import DomainError, NotFound, PermissionDenied
from coachgraph.search.model import SEARCH_KINDS, Scope
from coachgraph.stores.records import AthleteScope, SessionScope


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


class AthleteAccess(enum.IntEnum):
    NONE = 0
    PROFILE = 1  # profile, skills, goals
    FULL = 2


@dataclass(frozen=True, slots=True)
class AthleteFacts:
    """What the athlete rule reads of one athlete. `coach_ids`: its coaches now, at least
    the one the scope names (a scope names one coach at most)."""

    id: int
    looking_for_coach: bool
    coach_ids: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class SessionFacts:
    """What the session rule reads of one session (or of one about to be scheduled).
    `coached`, whether its coach still coaches its athlete, matters to write scopes only."""

    coach_id: int
    athlete_id: int
    coached: bool = False


class SessionLike(Protocol):
    @property
    def coach_id(self) -> int: ...

    @property
    def athlete_id(self) -> int: ...


# ---------------------------------------------------------------- the rule, as data


def athletes_visible_to(viewer: Viewer) -> AthleteScope:
    """Admins see every athlete; a coach those it coaches now, and the profile of those
    looking for a coach; an athlete itself; anonymous viewers none."""
    if viewer.is_admin:
        return AthleteScope(everyone=True)
    if viewer.role is Role.COACH:
        return AthleteScope(looking_for_coach=True, coach_id=viewer.coach_id)
    if viewer.role is Role.ATHLETE:
        return AthleteScope(athlete_id=viewer.athlete_id)
    return AthleteScope()


def sessions_visible_to(viewer: Viewer) -> SessionScope:
    """A coach reads the sessions it took part in, also after the athlete left it."""
    if viewer.is_admin:
        return SessionScope(everyone=True)
    if viewer.role is Role.COACH:
        return SessionScope(coach_id=viewer.coach_id)
    if viewer.role is Role.ATHLETE:
        return SessionScope(athlete_id=viewer.athlete_id)
    return SessionScope()


def sessions_managed_by(viewer: Viewer) -> SessionScope:
    """Schedule, start and end: the coach while it coaches the athlete (a former coach
    writes nothing more), or an admin."""
    if viewer.is_admin:
        return SessionScope(everyone=True)
    if viewer.role is Role.COACH:
        return SessionScope(coach_id=viewer.coach_id, current_coach=True)
    return SessionScope()


def session_data_writable_by(viewer: Viewer) -> SessionScope:
    """Samples and media of a session: also its athlete (wearables, form checks)."""
    if viewer.role is Role.ATHLETE:
        return SessionScope(athlete_id=viewer.athlete_id)
    return sessions_managed_by(viewer)


def search_scope(viewer: Viewer, kinds: list[str] | None) -> Scope:
    """The kinds asked for (all by default); athletes only for those who may list others
    (admins, coaches), within the athlete scope. Anonymous viewers and athletes find none."""
    wanted = list(dict.fromkeys(kinds)) if kinds else list(SEARCH_KINDS)
    athletes = athletes_visible_to(viewer)
    if viewer.role not in (Role.ADMIN, Role.COACH):
        wanted = [k for k in wanted if k != "ATHLETE"]
    return Scope(wanted, athletes)


# ---------------------------------------------------------------- the rule, as predicates


def athlete_grant(scope: AthleteScope, athlete: AthleteFacts) -> AthleteAccess:
    """How much of `athlete` the scope grants: the Python rendering of an AthleteScope."""
    if (
        scope.everyone
        or athlete.id == scope.athlete_id
        or (scope.coach_id is not None and scope.coach_id in athlete.coach_ids)
    ):
        return AthleteAccess.FULL
    if scope.looking_for_coach and athlete.looking_for_coach:
        return AthleteAccess.PROFILE
    return AthleteAccess.NONE


def session_admits(scope: SessionScope, session: SessionFacts) -> bool:
    """Whether the scope holds `session`: the Python rendering of a SessionScope."""
    return (
        scope.everyone
        or session.athlete_id == scope.athlete_id
        or (session.coach_id == scope.coach_id and (session.coached or not scope.current_coach))
    )


def athlete_access(viewer: Viewer, athlete: AthleteFacts) -> AthleteAccess:
    return athlete_grant(athletes_visible_to(viewer), athlete)


def can_read_session(viewer: Viewer, session: SessionLike) -> bool:
    return session_admits(
        sessions_visible_to(viewer), SessionFacts(session.coach_id, session.athlete_id)
    )


def can_manage_session(viewer: Viewer, session: SessionFacts) -> bool:
    return session_admits(sessions_managed_by(viewer), session)


def can_write_session_data(viewer: Viewer, session: SessionFacts) -> bool:
    return session_admits(session_data_writable_by(viewer), session)


# ---------------------------------------------------------------- other changes


def require(allowed: bool, message: str = "You may not do this") -> None:
    if not allowed:
        raise PermissionDenied(message)


def athlete_scope(viewer: Viewer) -> AthleteScope:
    """The athletes a viewer may list; anonymous viewers may not list athletes at all."""
    if viewer.role is None:
        raise PermissionDenied("Sign in to see athletes")
    return athletes_visible_to(viewer)


def missing(viewer: Viewer, type_name: str, raw_id: int, message: str) -> DomainError:
    """What to raise for an id that names nothing: NotFound to admins, who may see
    everything; PermissionDenied to others, so that an id they may not touch reveals nothing."""
    if viewer.is_admin:
        return NotFound(type_name, raw_id)
    return PermissionDenied(message)


def can_manage_catalogue(viewer: Viewer) -> bool:
    """Create coaches, athletes and skills: the platform's operators."""
    return viewer.is_admin


def can_edit_coach(viewer: Viewer, coach_id: int) -> bool:
    """A coach's profile, skills, programs and roster."""
    return viewer.is_admin or viewer.is_coach(coach_id)


def can_edit_athlete(viewer: Viewer, athlete_id: int) -> bool:
    """An athlete's profile, skills, goals and enrollments."""
    return viewer.is_admin or viewer.is_athlete(athlete_id)


def can_assign_coach(viewer: Viewer, coach_id: int, athlete: AthleteFacts) -> bool:
    """A coach assigns itself, only to an athlete looking for a coach; admins anyone."""
    return viewer.is_admin or (viewer.is_coach(coach_id) and athlete.looking_for_coach)


def can_match_coaches(viewer: Viewer, athlete_id: int) -> bool:
    """Matches for an athlete: for itself (and admins)."""
    return viewer.is_admin or viewer.is_athlete(athlete_id)


def can_match_athletes(viewer: Viewer, coach_id: int) -> bool:
    return can_edit_coach(viewer, coach_id)


# ---------------------------------------------------------------- coaching depth (issue 16)
def can_edit_questionnaires(viewer: Viewer, coach_id: int) -> bool:
    """A coach's questionnaires: the coach itself, admins."""
    return can_edit_coach(viewer, coach_id)


def can_read_questionnaire(viewer: Viewer, coach_id: int, *, coached: bool) -> bool:
    """Its coach, admins, and athletes that coach coaches now (`coached`), who answer it. Who
    may read a session reads the questionnaires of its feedback with it."""
    return can_edit_coach(viewer, coach_id) or (viewer.role is Role.ATHLETE and coached)


def can_give_feedback(viewer: Viewer, session: SessionLike) -> bool:
    """Feedback on a session: its athlete alone."""
    return viewer.athlete_id is not None and viewer.is_athlete(session.athlete_id)


def can_see_leaderboard(viewer: Viewer, coach_id: int, *, enrolled: bool) -> bool:
    """A program's leaderboard: its coach, admins, and its enrolled athletes (`enrolled`),
    who see one another's names and values on it."""
    return can_edit_coach(viewer, coach_id) or (viewer.role is Role.ATHLETE and enrolled)
