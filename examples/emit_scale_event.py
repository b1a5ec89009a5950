#!/usr/bin/env python3
"""Ask for a scale-out with an event: ``capstan.scale.requested`` about ``capstan.cluster.<name>``.

The automation ``capstan automation --cluster <name>`` created reacts to it by running
``scale-cluster/api`` with ``spec=block:<name>`` (fixed in the automation, never taken from the
event). So the order is: put the new host into the spec block, then emit the event::

    export PREFECT_API_URL=http://127.0.0.1:4200/api
    python examples/emit_scale_event.py --cluster prod --name w4 --address 192.0.2.24
    python examples/emit_scale_event.py --cluster prod          # the block is already edited

``--name/--address/--role`` edit the block first, exactly as ``api_scale_out.py`` does. The event goes
out as one plain HTTP call, ``POST /api/events`` with a JSON list of events (the batch endpoint a
Prefect 3.9 server accepts from any client; Prefect's own ``emit_event`` streams over a websocket to
``/api/events/in`` instead). The payload is informational (shown in the UI's event feed).

Exit codes: 0 event accepted; 2 bad input or an API error (one line on stderr).
"""

from __future__ import annotations

import argparse
import getpass
import os
import socket
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

from api_scale_out import RequestError, add_host, api_call, host_entry

EVENT = "capstan.scale.requested"


def scale_event(cluster: str, payload: dict[str, Any]) -> dict[str, Any]:
    """One event in the server's schema: the cluster is the resource the automation matches on."""
    return {
        "id": str(uuid.uuid4()),
        "occurred": datetime.now(UTC).isoformat(),
        "event": EVENT,
        "resource": {"prefect.resource.id": f"capstan.cluster.{cluster}", "prefect.resource.name": cluster},
        "related": [],
        "payload": payload,
    }


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--api", default=os.environ.get("PREFECT_API_URL"), help="default: $PREFECT_API_URL")
    p.add_argument("--cluster", required=True, help="the cluster's metadata.name (and its automation's)")
    p.add_argument("--block", help="spec block to edit with --name (default: the cluster name)")
    p.add_argument("--name", help="add this host to the spec block first")
    p.add_argument("--address", help="SSH address of the host to add")
    p.add_argument("--ip", help="bind/advertise IPv4 of the host to add (default: its address)")
    p.add_argument("--role", action="append", choices=("worker", "control-plane", "etcd"))
    p.add_argument("--reason", default="", help="free text for the event payload")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        if not args.api:
            raise RequestError("--api: not given and PREFECT_API_URL is not set")
        if bool(args.name) != bool(args.address):
            raise RequestError("--name and --address: give both to add a host, or neither")
        api = str(args.api).rstrip("/")
        os.environ["PREFECT_API_URL"] = api  # before Prefect is imported: the block edit uses it
        os.environ.setdefault("DO_NOT_TRACK", "1")
        payload: dict[str, Any] = {
            "requested_by": f"{getpass.getuser()}@{socket.gethostname()}",
            "reason": args.reason,
        }
        api_call(api, "GET", "/health")  # an unreachable server: one line, before the block edit
        if args.name:
            block = args.block or args.cluster
            index = add_host(block, host_entry(args.name, args.address, args.role or ["worker"], args.ip))
            print(f"block {block}: added spec.hosts[{index}] {args.name} ({args.address})")
            payload["host"] = args.name
        event = scale_event(args.cluster, payload)
        api_call(api, "POST", "/events", [event])
    except RequestError as exc:
        print(f"emit_scale_event: error: {exc}", file=sys.stderr)
        return 2
    print(f"event {event['id']}: {EVENT} for capstan.cluster.{args.cluster}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
