"""Importers: turn another tool's description of a cluster into a capstan ``cluster.yaml``.

Why they exist: most users arrive with a working inventory from another tool. An importer maps what it
can, lists every setting it could not map as a warning (never dropping one silently), and hands the
result to the spec validator so that an imported spec obeys exactly the rules of a hand-written one.
"""
