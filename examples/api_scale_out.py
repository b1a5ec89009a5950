#!/usr/bin/env python3
"""Scale a cluster out from another system: add a host to its spec block, then start scale-cluster.

What an inventory system, a ticket bot or a capacity alert would run once a new machine is racked:

    export PREFECT_API_URL=http://127.0.0.1:4200/api
    python examples/api_scale_out.py --block prod --name w4 --address 192.0.2.24 --role worker --wait

1. The deployment ``scale-cluster/api`` is looked up by name: ``GET /api/deployments/name/<flow>/<name>``
   (first, so a wrong name or server changes nothing).
2. The ``capstan-cluster-spec`` block ``--block`` is loaded, the host is appended to ``spec.hosts`` and
   the whole spec is validated by capstan before the block is saved back (a name that is already in
   the spec, a duplicate address or an unknown role is a one-line error and nothing is saved).
3. A run is created: ``POST /api/deployments/{id}/create_flow_run`` with
   ``{"parameters": {"spec": "block:<name>"}}``. The spec is passed by reference, so the worker reads
   the block as saved in step 2 (and its SSH key never travels in the request).
4. With ``--wait`` the run is polled (``GET /api/flow_runs/{id}``) until it is final; the exit code is
   0 only when it Completed.

Steps 1, 3 and 4 are plain HTTP on purpose: they are the calls any other system makes, in any language. Only
the block edit uses capstan (it validates the spec the same way every flow does). With
``PREFECT_API_AUTH_STRING`` set (the server has ``PREFECT_SERVER_API_AUTH_STRING``), every request
carries it as HTTP basic authentication, as Prefect's own client does.

Exit codes: 0 run created (or, with --wait, Completed); 1 the run ended in another state or did not
end in time; 2 bad input or an API error (one line on stderr).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, cast

DEPLOYMENT = "scale-cluster/api"
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
RETRY_STATUSES = (429, 503)  # rate limited, or SQLite busy: try again until the deadline


class RequestError(Exception):
    """Bad input or an API answer we cannot use; printed as one line, exit code 2."""


# ---- the block edit ---------------------------------------------------------------------------


def host_entry(name: str, address: str, roles: list[str], ip: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "address": address, "roles": roles}
    if ip:
        entry["ip"] = ip
    return entry


def add_host(block_name: str, entry: dict[str, Any]) -> int:
    """Append ``entry`` to the block's ``spec.hosts`` and save the block; return the host's index.

    The block's own validator checks the edited spec when it is assigned, so an invalid result is
    refused before anything is saved; the credentials block reference is kept as it was.
    """
    import yaml

    from capstan.blocks import ClusterSpec
    from capstan.errors import CapstanError

    try:
        block = cast(ClusterSpec, ClusterSpec.load(block_name))  # sync call: a block, not a coroutine
    except CapstanError as exc:  # the stored spec is invalid: the message names the YAML path
        raise RequestError(f"block {block_name}: {exc}") from exc
    except ValueError as exc:
        if "Unable to find" in str(exc):  # Prefect's words for a missing block document
            raise RequestError(f"--block {block_name}: no capstan-cluster-spec block of that name") from exc
        raise RequestError(f"block {block_name}: cannot load: {exc}") from exc
    doc = yaml.safe_load(block.spec)
    hosts: list[dict[str, Any]] = doc["spec"]["hosts"]
    if any(h.get("name") == entry["name"] for h in hosts):
        raise RequestError(
            f"--name {entry['name']}: block {block_name} already has a host of that name (spec.hosts)"
        )
    hosts.append(entry)
    try:
        block.spec = yaml.safe_dump(doc, sort_keys=False)  # validate_assignment: the whole spec
    except CapstanError as exc:
        raise RequestError(f"block {block_name}: {exc}") from exc
    block.save(block_name, overwrite=True)
    return len(hosts) - 1


# ---- the REST calls ---------------------------------------------------------------------------


def api_call(api: str, method: str, path: str, body: Any = None, *, deadline_s: float = 60) -> Any:
    """One JSON request to the Prefect API; 429/503 are retried until a deadline."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"content-type": "application/json", "accept": "application/json"}
    auth = os.environ.get("PREFECT_API_AUTH_STRING")
    if auth:
        headers["authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    deadline = time.monotonic() + deadline_s
    while True:
        req = urllib.request.Request(f"{api}{path}", data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                raw = resp.read()
            return json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            if exc.code in RETRY_STATUSES and time.monotonic() < deadline:
                time.sleep(1)
                continue
            detail = exc.read().decode(errors="replace")[:300]
            raise RequestError(f"{method} {path}: HTTP {exc.code}: {detail}") from exc
        except urllib.error.URLError as exc:
            raise RequestError(f"{method} {api}{path}: {exc.reason}") from exc


def find_deployment(api: str, full_name: str) -> str:
    flow, _, name = full_name.partition("/")
    path = f"/deployments/name/{urllib.parse.quote(flow)}/{urllib.parse.quote(name)}"
    try:
        dep: dict[str, Any] = api_call(api, "GET", path)
    except RequestError as exc:
        if "HTTP 404" in str(exc):
            raise RequestError(f"--deployment {full_name}: not found (run `capstan deploy`)") from exc
        raise
    return str(dep["id"])


def create_run(api: str, deployment_id: str, spec: str) -> dict[str, Any]:
    body = {"parameters": {"spec": spec}, "tags": ["api-triggered"]}
    run: dict[str, Any] = api_call(api, "POST", f"/deployments/{deployment_id}/create_flow_run", body)
    return run


def wait_final(api: str, run_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run: dict[str, Any] = api_call(api, "GET", f"/flow_runs/{run_id}")
        if run["state"]["type"] in FINAL or time.monotonic() > deadline:
            return run
        time.sleep(2)


def ui_url(api: str, run_id: str) -> str:
    base = os.environ.get("PREFECT_UI_URL") or api.removesuffix("/").removesuffix("/api")
    return f"{base.rstrip('/')}/runs/flow-run/{run_id}"


# ---- command line -----------------------------------------------------------------------------


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--api", default=os.environ.get("PREFECT_API_URL"), help="default: $PREFECT_API_URL")
    p.add_argument("--block", required=True, help="capstan-cluster-spec block holding the cluster spec")
    p.add_argument("--name", required=True, help="node name of the new host")
    p.add_argument("--address", required=True, help="SSH address of the new host")
    p.add_argument("--ip", help="bind/advertise IPv4 (default: the address, when it is an IP)")
    p.add_argument(
        "--role",
        action="append",
        choices=("worker", "control-plane", "etcd"),
        help="role of the new host (repeatable; default: worker)",
    )
    p.add_argument("--deployment", default=DEPLOYMENT, help=f"flow/deployment (default {DEPLOYMENT})")
    p.add_argument("--wait", action="store_true", help="poll the run until it is final")
    p.add_argument("--timeout", type=float, default=1800, help="seconds --wait polls (default 1800)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        if not args.api:
            raise RequestError("--api: not given and PREFECT_API_URL is not set")
        api = str(args.api).rstrip("/")
        os.environ["PREFECT_API_URL"] = api  # before Prefect is imported: the block edit uses it
        os.environ.setdefault("DO_NOT_TRACK", "1")
        entry = host_entry(args.name, args.address, args.role or ["worker"], args.ip)
        dep_id = find_deployment(api, args.deployment)  # first: a wrong name leaves the block as it was
        index = add_host(args.block, entry)
        print(f"block {args.block}: added spec.hosts[{index}] {args.name} ({args.address})")
        run = create_run(api, dep_id, f"block:{args.block}")
    except RequestError as exc:
        print(f"api_scale_out: error: {exc}", file=sys.stderr)
        return 2
    run_id = str(run["id"])
    print(f"flow run {run_id} ({run['name']}): {ui_url(api, run_id)}")
    if not args.wait:
        return 0
    try:
        final = wait_final(api, run_id, args.timeout)
    except RequestError as exc:
        print(f"api_scale_out: error: {exc}", file=sys.stderr)
        return 2
    state = final["state"]
    print(f"flow run {run_id}: {state['name']}" + (f": {state['message']}" if state.get("message") else ""))
    return 0 if state["type"] == "COMPLETED" else 1


if __name__ == "__main__":
    sys.exit(main())
