"""Prefect flows, one module per lifecycle operation."""
