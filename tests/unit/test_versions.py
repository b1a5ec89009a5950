"""The pinned-artifacts table: coverage of the supported releases, fidelity to the source, and the API."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from capstan import versions
from capstan.errors import ArtifactError
from capstan.versions import _table

REFERENCE = Path(
    os.environ.get("CAPSTAN_KUBESPRAY_CHECKSUMS", "/work/shared/reference/data/kubespray-checksums.yml")
)
# Our artifact name -> the table that holds its sums in Kubespray's checksums.yml.
KUBESPRAY_TABLE = {
    "kubeadm": "kubeadm_checksums",
    "kubelet": "kubelet_checksums",
    "kubectl": "kubectl_checksums",
    "etcd": "etcd_binary_checksums",
    "containerd": "containerd_archive_checksums",
    "crio": "crio_archive_checksums",
    "runc": "runc_checksums",
    "crictl": "crictl_checksums",
    "cni-plugins": "cni_binary_checksums",
}
SUM_137 = "a" * 64


def _minor(version: str) -> tuple[int, int]:
    major, minor, _ = (int(p) for p in version.split("."))
    return major, minor


def test_three_newest_minors_and_previous_patch_are_supported() -> None:
    supported = versions.supported_kubernetes_versions()
    assert supported[:2] == ["1.36.4", "1.36.3"]
    minors = {_minor(v) for v in supported}
    assert {(1, 36), (1, 35), (1, 34)} <= minors
    keys = [_table.version_key(v) for v in supported]
    assert keys == sorted(keys, reverse=True)
    assert versions.default_kubernetes_version() == "1.36.4"


def test_every_pinned_binary_has_a_64_hex_sum_for_every_arch() -> None:
    for kube in versions.supported_kubernetes_versions():
        for arch in versions.ARCHES:
            for runtime in versions.RUNTIMES:
                for art in versions.artifacts_for(kube, arch, runtime=runtime, cni="none"):
                    assert art.sha256 is not None, (kube, arch, art.name)
                    assert re.fullmatch(r"[0-9a-f]{64}", art.sha256), (kube, arch, art.name)


def test_literal_sums_match_the_source() -> None:
    """Copied by hand from Kubespray's checksums.yml @46dbdd3; runs even where that file is absent."""
    assert versions.checksum("kubeadm", "1.36.4", "arm64") == (
        "6a849c07d3e1c708f5c40f1ac8be03a56124204dfc7e1931e4113634019c0dad"
    )
    assert versions.checksum("kubelet", "1.36.4", "amd64") == (
        "cf2562db46c48ab84cc3791540778ee7fb1a0a008529adbb434723dd02ed8b4b"
    )
    assert versions.checksum("kubectl", "1.36.4", "amd64") == (
        "8b8f088da2dab964f853b38464033b1be15ede2839eca751482357c45abdd05a"
    )
    assert versions.checksum("etcd", "3.6.14", "arm64") == (
        "fa1b80565ee6fc2df1ae6f57a508b221f3ecc7d591c317c581cd8281b0842b3e"
    )
    assert versions.checksum("cni-plugins", "1.9.1", "amd64") == (
        "b98f74a0f8522f0a83867178729c1aa70f2158f90c45a2ca8fa791db1c76b303"
    )


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    if not REFERENCE.is_file():
        pytest.skip(f"reference checksums file {REFERENCE} not present (set CAPSTAN_KUBESPRAY_CHECKSUMS)")
    data: dict[str, Any] = yaml.safe_load(REFERENCE.read_text(encoding="utf-8"))
    return data


def _source_sum(reference: dict[str, Any], name: str, arch: str, version: str) -> str:
    value: str = reference[KUBESPRAY_TABLE[name]][arch][version]
    return value.removeprefix("sha256:")


def test_kubeadm_1_36_4_amd64_equals_the_source(reference: dict[str, Any]) -> None:
    expected = _source_sum(reference, "kubeadm", "amd64", "1.36.4")
    assert versions.checksum("kubeadm", "1.36.4", "amd64") == expected
    assert versions.artifacts_for("1.36.4", "amd64")[0].sha256 == expected


def test_every_table_sum_equals_the_source(reference: dict[str, Any]) -> None:
    compared = 0
    for name, by_arch in _table.load().sums.items():
        for arch, by_version in by_arch.items():
            for version, digest in by_version.items():
                if name in versions.MANIFEST_ARTIFACTS:
                    assert digest is None  # no upstream sum in the source: never invent one
                    continue
                assert digest == _source_sum(reference, name, arch, version), (name, arch, version)
                compared += 1
    assert compared >= 4 * 3 * 2  # at least kubeadm/kubelet/kubectl of four releases on two arches


def test_pins_use_the_newest_matching_crictl_and_crio(reference: dict[str, Any]) -> None:
    """Kubespray's rule: the newest crictl / cri-o below the next Kubernetes minor."""
    for kube in versions.supported_kubernetes_versions():
        pins = versions.pins_for(kube)
        major, minor = _minor(kube)
        for field, table in (("crictl", "crictl_checksums"), ("crio", "crio_archive_checksums")):
            below_next = [v for v in reference[table]["amd64"] if _minor(v) <= (major, minor)]
            assert getattr(pins, field) == max(below_next, key=_table.version_key), (kube, field)


def test_pin_fields_match_the_dataclass() -> None:
    assert tuple(f.name for f in dataclasses.fields(versions.ComponentPins)) == _table.PIN_FIELDS


def test_pins_for_listed_version() -> None:
    pins = versions.pins_for("v1.35.8")
    assert pins.kubernetes == "1.35.8"
    assert pins.etcd.startswith("3.6.")
    assert pins.crictl == "1.35.0"


@pytest.mark.parametrize("bad", ["1.37.0", "1.33.9", "1.36.99"])
def test_unknown_version_raises_naming_it(bad: str) -> None:
    with pytest.raises(ArtifactError, match=re.escape(bad)):
        versions.pins_for(bad)
    with pytest.raises(ArtifactError, match=re.escape(bad)):
        versions.artifacts_for(bad, "amd64")


def test_malformed_inputs_raise_artifact_error() -> None:
    with pytest.raises(ArtifactError, match="'latest'"):
        versions.pins_for("latest")
    with pytest.raises(ArtifactError, match="'s390x'"):
        versions.artifacts_for("1.36.4", "s390x")
    with pytest.raises(ArtifactError, match="'docker'"):
        versions.artifacts_for("1.36.4", "amd64", runtime="docker")
    with pytest.raises(ArtifactError, match="'weave'"):
        versions.artifacts_for("1.36.4", "amd64", cni="weave")
    with pytest.raises(ArtifactError, match="'helm'"):
        versions.checksum("helm", "3.18.4", "amd64")


def test_extra_checksums_cover_an_unlisted_version() -> None:
    extra = {name: {"arm64": {"1.37.0": f"sha256:{SUM_137}"}} for name in versions.KUBE_BINARIES}
    assert not versions.has_checksums("1.37.0", "arm64")
    assert versions.has_checksums("1.37.0", "arm64", extra)
    assert not versions.has_checksums("1.37.0", "amd64", extra)  # sums are per arch
    assert versions.checksum("kubelet", "1.37.0", "arm64", extra) == SUM_137

    arts = {a.name: a for a in versions.artifacts_for("1.37.0", "arm64", extra_checksums=extra)}
    assert arts["kubeadm"].sha256 == SUM_137
    assert arts["kubeadm"].url == "https://dl.k8s.io/release/v1.37.0/bin/linux/arm64/kubeadm"
    newest = versions.pins_for(versions.default_kubernetes_version())
    assert arts["etcd"].version == newest.etcd  # borrowed from the nearest listed release
    assert arts["etcd"].sha256 == versions.checksum("etcd", newest.etcd, "arm64")
    with pytest.raises(ArtifactError, match=r"1\.37\.0"):
        versions.artifacts_for("1.37.0", "amd64", extra_checksums=extra)


def test_extra_checksums_override_and_are_validated() -> None:
    upper = "B" * 64
    extra = {"kubeadm": {"amd64": {"1.36.4": upper}}}
    assert versions.checksum("kubeadm", "1.36.4", "amd64", extra) == upper.lower()
    with pytest.raises(ArtifactError, match=r"extraChecksums\.kubadm"):
        versions.validate_extra_checksums({"kubadm": {"amd64": {"1.36.4": SUM_137}}})
    with pytest.raises(ArtifactError, match=r"extraChecksums\.kubeadm\.amd64\.1\.36\.4"):
        versions.artifacts_for("1.36.4", "amd64", extra_checksums={"kubeadm": {"amd64": {"1.36.4": "abc"}}})


def test_effective_pins_borrow_from_the_nearest_release() -> None:
    assert versions.effective_pins("1.35.2").crictl == "1.35.0"
    assert versions.effective_pins("1.37.1").crictl == versions.pins_for("1.36.4").crictl
    oldest = versions.supported_kubernetes_versions()[-1]
    assert versions.effective_pins("1.30.0").crictl == versions.pins_for(oldest).crictl
    assert versions.effective_pins("1.30.0").kubernetes == "1.30.0"


def test_mirror_url_layout() -> None:
    arts = versions.artifacts_for("1.36.4", "amd64", mirror="https://mirror.example/")
    by_name = {a.name: a for a in arts}
    assert (
        by_name["kubeadm"].url == "https://mirror.example/dl.k8s.io/release/v1.36.4/bin/linux/amd64/kubeadm"
    )
    assert by_name["etcd"].url == (
        "https://mirror.example/github.com/etcd-io/etcd/releases/download/v3.6.14/etcd-v3.6.14-linux-amd64.tar.gz"
    )
    assert by_name["etcd"].filename == "etcd-v3.6.14-linux-amd64.tar.gz"
    plain = {a.name: a for a in versions.artifacts_for("1.36.4", "amd64")}
    assert plain["kubeadm"].url == "https://dl.k8s.io/release/v1.36.4/bin/linux/amd64/kubeadm"
    assert by_name["kubeadm"].sha256 == plain["kubeadm"].sha256
    with pytest.raises(ArtifactError, match="mirror"):
        versions.artifacts_for("1.36.4", "amd64", mirror="ftp://mirror.example")


def test_runtime_and_cni_select_the_artifacts() -> None:
    names = [a.name for a in versions.artifacts_for("1.34.11", "arm64")]
    assert names == [
        "kubeadm",
        "kubelet",
        "kubectl",
        "etcd",
        "containerd",
        "runc",
        "crictl",
        "cni-plugins",
        "calico-manifest",
    ]
    crio = {a.name: a for a in versions.artifacts_for("1.34.11", "arm64", runtime="crio", cni="flannel")}
    assert "containerd" not in crio and "runc" not in crio
    assert crio["crio"].url == "https://storage.googleapis.com/cri-o/artifacts/cri-o.arm64.v1.34.11.tar.gz"
    assert crio["flannel-manifest"].url.endswith("/v0.28.4/kube-flannel.yml")
    assert not any(
        a.name.endswith("-manifest") for a in versions.artifacts_for("1.36.4", "amd64", cni="none")
    )


@pytest.mark.parametrize("cni", ["calico", "cilium", "flannel"])
def test_manifest_with_unknown_sum_says_so(cni: str) -> None:
    manifest = versions.artifacts_for("1.36.4", "amd64", cni=cni)[-1]
    assert manifest.name == f"{cni}-manifest"
    assert manifest.arch == versions.NO_ARCH
    assert manifest.sha256 is None
    assert not manifest.sha256_known
    with pytest.raises(ArtifactError, match=rf"extraChecksums\.{cni}-manifest\.no_arch\."):
        manifest.require_sha256()

    extra = {f"{cni}-manifest": {versions.NO_ARCH: {manifest.version: SUM_137}}}
    supplied = versions.artifacts_for("1.36.4", "amd64", cni=cni, extra_checksums=extra)[-1]
    assert supplied.require_sha256() == SUM_137


def test_table_rows_list_every_supported_version() -> None:
    rows = versions.table_rows()
    assert [r["kubernetes"] for r in rows] == versions.supported_kubernetes_versions()
    assert set(rows[0]) == set(_table.PIN_FIELDS)
    assert all(isinstance(v, str) and v for row in rows for v in row.values())


def test_cache_paths_are_unique_per_file() -> None:
    url_of: dict[str, str] = {}
    for kube in versions.supported_kubernetes_versions():
        for arch in versions.ARCHES:
            for runtime in versions.RUNTIMES:
                for art in versions.artifacts_for(kube, arch, runtime=runtime):
                    assert url_of.setdefault(art.cache_path, art.url) == art.url
    assert len(set(url_of.values())) == len(url_of)


def test_broken_table_is_rejected() -> None:
    raw = yaml.safe_load(
        (Path(versions.__file__).parent / "pins.yaml").read_text(encoding="utf-8")  # the packaged file
    )
    assert _table.parse(raw).releases  # the real file parses
    raw["checksums"]["kubeadm"]["amd64"]["1.36.4"] = "sha256:" + "0" * 64
    with pytest.raises(ArtifactError, match=r"checksums\.kubeadm\.amd64\.1\.36\.4"):
        _table.parse(raw)
