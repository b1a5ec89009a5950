"""Command-line parsing for the kubeadm stand-in, with kubeadm's rules for flags.

Two of kubeadm's rules matter to a caller and are reproduced: an unknown flag is an error (cobra's
``unknown flag: --x``), and ``--config`` cannot be mixed with flags that the config file should carry
(``can not mix '--config' with arguments [...]``); only ``--ignore-preflight-errors``, ``--dry-run``,
``--upload-certs``, ``--skip-*`` and a few others may accompany it.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

from capstan.lab.standins.kubeadm.base import KubeadmError

ALLOWED_WITH_CONFIG = {
    "config", "ignore_preflight_errors", "dry_run", "kubeconfig", "node_name", "upload_certs", "force", "yes",
    "allow_experimental_upgrades", "allow_release_candidate_upgrades", "etcd_upgrade", "print_config",
    "patches", "rootfs", "v",
}  # fmt: skip


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        if "unrecognized arguments" in message:
            flag = message.split(":", 1)[1].strip().split()[0]
            raise KubeadmError(f"unknown flag: {flag}")
        raise KubeadmError(message)


def _common(p: Parser) -> None:
    p.add_argument("--config")
    p.add_argument("--ignore-preflight-errors", action="append", default=None)
    p.add_argument("--dry-run", action="store_true", default=None)
    p.add_argument("--v", "-v")
    p.add_argument("--kubeconfig")


def parser() -> Parser:
    root = Parser(prog="kubeadm", add_help=True)
    sub = root.add_subparsers(dest="command", parser_class=Parser)
    v = sub.add_parser("version")
    v.add_argument("-o", "--output", default="")

    init = sub.add_parser("init")
    _common(init)
    init.add_argument("--upload-certs", action="store_true", default=None)
    init.add_argument("--skip-phases", action="append", default=None)
    init.add_argument("--skip-token-print", action="store_true", default=None)
    init.add_argument("--skip-certificate-key-print", action="store_true", default=None)
    init.add_argument("--certificate-key")
    init.add_argument("--kubernetes-version")
    init.add_argument("--control-plane-endpoint")
    init.add_argument("--pod-network-cidr")
    init.add_argument("--node-name")
    init_sub = init.add_subparsers(dest="phase", parser_class=Parser)
    phase = init_sub.add_parser("phase")
    phase_sub = phase.add_subparsers(dest="phase_name", parser_class=Parser)
    upload = phase_sub.add_parser("upload-certs")
    _common(upload)
    upload.add_argument("--upload-certs", action="store_true", default=None)
    upload.add_argument("--certificate-key")
    upload.add_argument("--skip-certificate-key-print", action="store_true", default=None)

    join = sub.add_parser("join")
    _common(join)
    join.add_argument("endpoint", nargs="?")
    join.add_argument("--token")
    join.add_argument("--discovery-token")
    join.add_argument("--tls-bootstrap-token")
    join.add_argument("--discovery-token-ca-cert-hash", action="append", default=None)
    join.add_argument("--discovery-token-unsafe-skip-ca-verification", action="store_true", default=None)
    join.add_argument("--control-plane", action="store_true", default=None)
    join.add_argument("--certificate-key")
    join.add_argument("--apiserver-advertise-address")
    join.add_argument("--apiserver-bind-port", type=int)
    join.add_argument("--node-name")
    join.add_argument("--cri-socket")
    join.add_argument("--skip-phases", action="append", default=None)

    upgrade = sub.add_parser("upgrade")
    up_sub = upgrade.add_subparsers(dest="upgrade_command", parser_class=Parser)
    for name in ("plan", "apply", "node"):
        p = up_sub.add_parser(name)
        _common(p)
        p.add_argument("--certificate-renewal", default=None)
        p.add_argument("--etcd-upgrade", default=None)
        p.add_argument("--skip-phases", action="append", default=None)
        if name != "node":
            p.add_argument("version", nargs="?")
            p.add_argument("--allow-experimental-upgrades", action="store_true", default=None)
            p.add_argument("--allow-release-candidate-upgrades", action="store_true", default=None)
        if name == "apply":
            p.add_argument("-y", "--yes", action="store_true", default=None)
            p.add_argument("-f", "--force", action="store_true", default=None)
            p.add_argument("--print-config", action="store_true", default=None)

    reset = sub.add_parser("reset")
    _common(reset)
    reset.add_argument("-f", "--force", action="store_true", default=None)
    reset.add_argument("--cri-socket")
    reset.add_argument("--cleanup-tmp-dir", action="store_true", default=None)
    reset.add_argument("--skip-phases", action="append", default=None)

    token = sub.add_parser("token")
    tok_sub = token.add_subparsers(dest="token_command", parser_class=Parser)
    create = tok_sub.add_parser("create")
    _common(create)
    create.add_argument("token", nargs="?")
    create.add_argument("--print-join-command", action="store_true", default=None)
    create.add_argument("--ttl", default=None)
    create.add_argument("--description", default=None)
    create.add_argument("--groups", default=None)
    create.add_argument("--usages", default=None)
    create.add_argument("--certificate-key", default=None)
    tok_sub.add_parser("list").add_argument("--kubeconfig")

    certs = sub.add_parser("certs")
    certs_sub = certs.add_subparsers(dest="certs_command", parser_class=Parser)
    check = certs_sub.add_parser("check-expiration")
    _common(check)
    check.add_argument("--cert-dir")
    renew = certs_sub.add_parser("renew")
    _common(renew)
    renew.add_argument("name")
    renew.add_argument("--cert-dir")
    certs_sub.add_parser("certificate-key")
    return root


def parse(argv: list[str]) -> argparse.Namespace:
    return parser().parse_args(argv)


def check_mixed(args: argparse.Namespace, positional: tuple[str, ...] = ()) -> None:
    """Refuse flags that must come from the config file when ``--config`` is given."""
    if not getattr(args, "config", None):
        return
    mixed = [
        name.replace("_", "-")
        for name, value in vars(args).items()
        if value is not None
        and value is not False
        and name not in ALLOWED_WITH_CONFIG
        and not name.startswith("skip_")
        and name not in positional
        and name
        not in ("command", "phase", "phase_name", "upgrade_command", "token_command", "certs_command")
    ]
    if mixed:
        raise KubeadmError(f"can not mix '--config' with arguments [{' '.join(sorted(mixed))}]")


def listed(values: list[str] | None) -> list[str]:
    """A repeatable, comma-separated flag as one list."""
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


def skipped(phase: str, skip: set[str]) -> bool:
    """True when ``phase`` (``addon/coredns``) or one of its parents (``addon``) is to be skipped."""
    parts = phase.split("/")
    return any("/".join(parts[: i + 1]) in skip for i in range(len(parts))) or f"{parts[0]}/all" in skip
