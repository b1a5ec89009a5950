"""Running capstan on a Prefect server: a local server for people without one, and deployments.

``server``: start/stop a ``prefect server`` (loopback, analytics off) and wait for it to answer;
``deploy``: create the work pools, register the blocks and the deployments of ``prefect.yaml``.
The test suite's real-server fixture uses the same functions, so what it tests is what users run.
"""
