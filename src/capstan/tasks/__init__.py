"""Prefect tasks: one phase on one host. Phase implementations register themselves in ``runner``."""
