"""coachgraph: one GraphQL API over a coaching platform's data."""

__version__ = "0.1.0"
