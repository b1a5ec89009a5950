"""Node software configuration: the container runtime (containerd or CRI-O), the kubelet's units, crictl.

containerd gets config version 2, which containerd 1.6 and 1.7 read as is and containerd 2.x migrates
when it loads it (version 3 is read by 2.x only, and the lab runs Debian's containerd 1.6). It holds
only the settings Kubernetes depends on: the systemd cgroup driver (the kubelet uses it, and two cgroup
managers on one host fight), the pinned pause image, and ``config_path`` so registry mirrors are plain
``certs.d/<registry>/hosts.toml`` files (the same format from 1.5 to 2.x) that containerd re-reads on
every pull, without a restart. CRI-O gets the equivalent drop-in, and its mirrors go to a
containers-registries.conf drop-in. CRI-O's signature policy is written too (accept anything, the
packaged default) because the static CRI-O bundle does not always install one and every pull fails
without it.

The kubelet's units follow kubeadm's interface: kubeadm writes ``/var/lib/kubelet/config.yaml``,
``kubeadm-flags.env`` and the kubeconfigs, and the drop-in passes them to the kubelet. Binaries are
expected in ``/usr/local/bin`` (capstan installs release tarballs there, as Kubespray does).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from capstan.render._checks import check_registry, check_url
from capstan.render._env import render_text
from capstan.render.types import RenderedFile, text_file
from capstan.spec.models import Cluster
from capstan.versions import ComponentPins

CONTAINERD_SOCKET = "/run/containerd/containerd.sock"
CRIO_SOCKET = "/var/run/crio/crio.sock"
PAUSE_REPOSITORY = "registry.k8s.io/pause"

# What a registry name means when it is a Docker Hub alias.
_SERVER_OF = {"docker.io": "https://registry-1.docker.io"}
_MIRRORS_PATH = "spec.containerRuntime.registryMirrors"
_INSECURE_PATH = "spec.containerRuntime.insecureRegistries"


def cri_socket(cluster: Cluster) -> str:
    """The CRI endpoint URL of the configured runtime, as kubeadm and the kubelet want it."""
    if cluster.spec.container_runtime.name == "cri-o":
        return f"unix://{CRIO_SOCKET}"
    return f"unix://{CONTAINERD_SOCKET}"


def runtime_unit(cluster: Cluster) -> str:
    return "crio.service" if cluster.spec.container_runtime.name == "cri-o" else "containerd.service"


def pause_image(pins: ComponentPins) -> str:
    return f"{PAUSE_REPOSITORY}:{pins.pause}"


@dataclass(frozen=True)
class _Mirror:
    url: str
    skip_verify: bool


def _registries(cluster: Cluster) -> dict[str, list[_Mirror]]:
    """Registry -> its mirrors, for every registry that has mirrors or is insecure (checked, sorted)."""
    rt = cluster.spec.container_runtime
    insecure = set(rt.insecure_registries)
    for i, name in enumerate(rt.insecure_registries):
        check_registry(name, f"{_INSECURE_PATH}[{i}]")
    result: dict[str, list[_Mirror]] = {}
    for registry in sorted(set(rt.registry_mirrors) | insecure):
        check_registry(registry, f"{_MIRRORS_PATH}[{registry!r}]")
        mirrors = []
        for i, url in enumerate(rt.registry_mirrors.get(registry, [])):
            check_url(url, f"{_MIRRORS_PATH}[{registry!r}][{i}]")
            mirrors.append(_Mirror(url.rstrip("/"), urlsplit(url).netloc in insecure))
        result[registry] = mirrors
    return result


def _containerd_files(cluster: Cluster, pins: ComponentPins) -> list[RenderedFile]:
    insecure = set(cluster.spec.container_runtime.insecure_registries)
    files = [
        text_file(
            "/etc/containerd/config.toml",
            render_text(
                "containerd/config.toml.j2",
                containerd_version=pins.containerd,
                socket=CONTAINERD_SOCKET,
                pause_image=pause_image(pins),
            ),
        ),
        text_file("/etc/systemd/system/containerd.service", render_text("containerd/containerd.service.j2")),
    ]
    for registry, mirrors in _registries(cluster).items():
        text = render_text(
            "containerd/hosts.toml.j2",
            registry=registry,
            server=_SERVER_OF.get(registry, f"https://{registry}"),
            server_skip_verify=registry in insecure,
            hosts=mirrors,
        )
        files.append(text_file(f"/etc/containerd/certs.d/{registry}/hosts.toml", text))
    return files


def _crio_registries(cluster: Cluster) -> list[dict[str, object]]:
    insecure = set(cluster.spec.container_runtime.insecure_registries)
    out: list[dict[str, object]] = []
    for registry, mirrors in _registries(cluster).items():
        entries = []
        for m in mirrors:
            parts = urlsplit(m.url)
            location = parts.netloc + parts.path
            entries.append({"location": location, "insecure": m.skip_verify or parts.scheme == "http"})
        out.append(
            {"prefix": registry, "location": registry, "insecure": registry in insecure, "mirrors": entries}
        )
    return out


def _crio_files(cluster: Cluster, pins: ComponentPins) -> list[RenderedFile]:
    files = [
        text_file(
            "/etc/crio/crio.conf.d/10-capstan.conf",
            render_text("crio/crio.conf.j2", crio_version=pins.crio, pause_image=pause_image(pins)),
        ),
        text_file("/etc/crio/policy.json", render_text("crio/policy.json.j2")),
        text_file("/etc/systemd/system/crio.service", render_text("crio/crio.service.j2")),
    ]
    registries = _crio_registries(cluster)
    if registries:
        files.append(
            text_file(
                "/etc/containers/registries.conf.d/10-capstan-mirrors.conf",
                render_text("crio/registries.conf.j2", registries=registries),
            )
        )
    return files


def node_files(cluster: Cluster, pins: ComponentPins) -> list[RenderedFile]:
    """Runtime config and unit, kubelet unit and drop-in, crictl config: the same on every node."""
    if cluster.spec.container_runtime.name == "cri-o":
        files = _crio_files(cluster, pins)
    else:
        files = _containerd_files(cluster, pins)
    files += [
        text_file(
            "/etc/systemd/system/kubelet.service",
            render_text("kubelet/kubelet.service.j2", runtime_unit=runtime_unit(cluster)),
        ),
        text_file(
            "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf", render_text("kubelet/10-kubeadm.conf.j2")
        ),
        text_file("/etc/crictl.yaml", render_text("kubelet/crictl.yaml.j2", endpoint=cri_socket(cluster))),
    ]
    return files
