"""Program leaderboards: one protocol, computed in Postgres or kept in Redis sorted sets."""
