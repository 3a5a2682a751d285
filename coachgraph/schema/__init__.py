"""Strawberry types, inputs, error types and the Schema object."""
