"""Search projection of the records (Postgres full-text embedded, Meilisearch at scale)."""
