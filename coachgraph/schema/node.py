"""The Node interface: every object with a global ID."""

from __future__ import annotations

import strawberry


@strawberry.interface(description="An object with a global ID, refetchable with node(id:).")
class Node:
    id: strawberry.ID
