"""HTTP surface: the GraphQL view, authentication, per-request context, health."""
