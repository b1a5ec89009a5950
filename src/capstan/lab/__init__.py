"""The lab: real-looking machines on this one, for testing capstan end to end.

Each lab host is a network namespace behind a veth on the lab's bridge, with its own mount, UTS, IPC
and PID namespaces, an overlay of the machine's ``/`` (upper layer on a tmpfs), a real key-only sshd,
and the systemctl emulator as PID 1 so real unit files run real services. The lab also serves an
artifact mirror and writes a ready ``cluster.yaml``. Nothing outside this package may know whether
capstan talks to a lab.

Network safety: 10.250.0.0/16 is blackholed in the root namespace before the first host exists, and
the route is deliberately left in place after the last lab goes (it is harmless and keeps a stray lab
address from ever leaving the machine); IPv4 forwarding must be off; each lab's nft table drops
forwarding between its bridge and other interfaces and lets hosts reach only the mirror port on the
root side. Typical use::

    lab = Lab.up("demo", hosts=3)
    try:
        ...  # capstan.spec.load_spec(lab.spec_path), ssh, faults: lab.crash("cp2"), lab.cut("cp3")
    finally:
        lab.down()
"""

from capstan.lab.lab import HostStatus, Lab
from capstan.lab.mirror import MirrorEntry, TarMember, build_mirror
from capstan.lab.names import HostSpec, default_topology

__all__ = ["HostSpec", "HostStatus", "Lab", "MirrorEntry", "TarMember", "build_mirror", "default_topology"]
