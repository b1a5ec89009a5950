"""Leader election on a coordination.k8s.io Lease, as kube-controller-manager and kube-scheduler do.

Why: every control plane runs a controller-manager and a scheduler, and the real ones let only the
holder of the ``kube-system`` Lease of their name act (``--leader-elect``, on by default and in
kubeadm's manifests). The stand-ins used to all act at once: on a 30-host lab three of each polled
the API every pass, a large part of what the idle lab cost the machine's two cores.

Rules, as client-go's leaderelection: a candidate that does not hold the Lease takes it when it is
free or when its record has not changed for ``leaseDurationSeconds`` *as this candidate observed
it* (its own clock, never the holder's time stamp); the holder renews every ``renew_every`` seconds;
every write carries the resourceVersion it read, so two candidates cannot both win (409 for the
loser). A holder that stops releases the Lease (empty holder), so another takes over within one
retry period instead of a whole lease duration.
"""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

from . import kubetime
from .client import ApiError, KubeClient

log = logging.getLogger("leader-election")
LEASE_DURATION = 15
"""Seconds; the real components' default ``--leader-elect-lease-duration``."""
RENEW_EVERY = 2.0
"""Seconds between renewals (client-go's retry period)."""
RENEW_DEADLINE = 10.0
"""A leader that could not renew for this long stops acting (shorter than the lease, so that no two
ever act at once: the others take over only once the lease has lapsed)."""


class LeaderElector:
    """``leading()``: whether this process holds the Lease now (renewing or taking it when due)."""

    def __init__(
        self,
        api: KubeClient,
        name: str,
        *,
        identity: str | None = None,
        lease_duration: int = LEASE_DURATION,
        renew_every: float = RENEW_EVERY,
        renew_deadline: float = RENEW_DEADLINE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.path = f"/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{name}"
        self.name = name
        self.identity = identity or f"{socket.gethostname()}_{uuid.uuid4()}"
        self.lease_duration = lease_duration
        self.renew_every = renew_every
        self.renew_deadline = renew_deadline
        self.clock = clock
        self._leading_until = 0.0
        self._next_try = 0.0
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0

    def leading(self) -> bool:
        now = self.clock()
        if now < self._next_try:
            return now < self._leading_until
        self._next_try = now + self.renew_every
        was = now < self._leading_until
        try:
            won: bool | None = self._try(now)
        except ApiError as exc:  # no answer: still leading until the renew deadline passes
            log.warning("lease %s: %s", self.name, exc)
            won = None
        if won is not None:
            self._leading_until = now + self.renew_deadline if won else 0.0
        if won and not was:
            log.info("%s: became the leader (%s)", self.name, self.identity)
        elif was and now >= self._leading_until:
            log.info("%s: lost the lease", self.name)
        return now < self._leading_until

    def _try(self, now: float) -> bool:
        try:
            lease: dict[str, Any] = self.api.get(self.path)
        except ApiError as exc:
            if exc.status != 404:
                raise
            return self._create()
        spec = lease.get("spec") or {}
        record = (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("leaseTransitions"))
        if record != self._observed:
            self._observed, self._observed_at = record, now
        holder = spec.get("holderIdentity") or ""
        expired = now >= self._observed_at + int(spec.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity and not expired:
            return False
        stamp = kubetime.micro_stamp()
        new = dict(spec)
        new.update(holderIdentity=self.identity, leaseDurationSeconds=self.lease_duration, renewTime=stamp)
        if holder != self.identity:
            new.update(acquireTime=stamp, leaseTransitions=int(spec.get("leaseTransitions") or 0) + 1)
        lease["spec"] = new
        try:
            self.api.put(self.path, lease)
        except ApiError as exc:
            if exc.status == 409:  # another candidate wrote first
                return False
            raise
        return True

    def _create(self) -> bool:
        stamp = kubetime.micro_stamp()
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": "kube-system"},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self.lease_duration,
                "acquireTime": stamp,
                "renewTime": stamp,
                "leaseTransitions": 0,
            },
        }
        try:
            self.api.post(self.path.rsplit("/", 1)[0], lease)
        except ApiError as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def release(self) -> None:
        """Give the Lease up if held (on a clean stop), so a standby takes over at its next try."""
        if self._leading_until <= self.clock():
            return
        self._leading_until = 0.0
        try:
            lease: dict[str, Any] = self.api.get(self.path)
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return
            spec.update(holderIdentity="", leaseDurationSeconds=1, renewTime=kubetime.micro_stamp())
            lease["spec"] = spec
            self.api.put(self.path, lease)
        except ApiError as exc:
            log.warning("lease %s: could not release it: %s", self.name, exc)
