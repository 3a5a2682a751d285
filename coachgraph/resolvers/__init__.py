"""Thin functions between the schema and the stores: policy, validation, loading."""
