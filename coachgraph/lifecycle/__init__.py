"""Data lifecycle across every store: erasure, export and audit (issue 15)."""
