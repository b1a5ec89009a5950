"""Faster start-up waits for the lab's systemd emulator (docker-systemctl-replacement as PID 1).

Why: the emulator waits for ``Type=notify`` services in whole seconds: one second before it first
looks at the notify socket, a second between looks, and then up to three more seconds for a
``MAINPID=`` message that etcd, containerd and haproxy never send (they send ``READY=1`` only; their
main PID is the process the emulator started). Every ``systemctl start`` of those units took 4-6 s,
several of them sit on create-cluster's critical path, and the lab tests restart them often.

The fixes are small text changes to the emulator's copy placed in each lab host (the package on the
machine is untouched): shorter polls (0.1 s) between looks at the socket, no wait for a MAINPID that
does not come (the started process is the main PID, as systemd assumes too), a 0.1 s yield after a
fork instead of 0.5 s. The timeouts keep their meaning: a look that finds nothing still blocks up to
one second on the socket. If the emulator's text ever differs from what these changes expect, the
copy is installed unchanged (slower, still correct) and ``tune`` reports what did not match.
"""

from __future__ import annotations

EDITS: tuple[tuple[str, str, int], ...] = (
    # (old text, new text, how many times old occurs in the pinned emulator)
    ("MinimumYield: float = 0.5\n", "MinimumYield: float = 0.1\n", 1),
    (
        "        lapseTimeout = max(3, int(timeout / 100))\n",
        "        lapseTimeout = 0  # capstan lab: the started process is the main PID\n",
        1,
    ),
    (
        "            if not attempt: # first one\n                time.sleep(1) # until TimeoutStartSec\n",
        "            if not attempt: # first one\n                time.sleep(0.1) # capstan lab: sooner\n",
        1,
    ),
    (
        '            if "READY" not in results:\n                time.sleep(1) # until TimeoutStart\n',
        '            if "READY" not in results:\n                time.sleep(0.1) # capstan lab: sooner\n',
        1,
    ),
)


def tune(source: str) -> tuple[str, list[str]]:
    """The emulator's source with the lab's shorter waits, and the edits that did not match.

    All or nothing: when any edit does not match exactly, the source comes back unchanged.
    """
    misses = [old.strip().splitlines()[-1] for old, _new, count in EDITS if source.count(old) != count]
    if misses:
        return source, misses
    for old, new, _count in EDITS:
        source = source.replace(old, new)
    return source, []
