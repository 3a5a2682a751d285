"""PostgreSQL, the system of record: migrations, one repository module per aggregate, outbox."""
