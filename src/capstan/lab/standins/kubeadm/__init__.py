"""kubeadm stand-in: the subcommands capstan runs, with real kubeadm's refusals and on-disk effects.

Entry point ``main(argv, version)``; ``version`` is baked into the zipapp the lab mirror serves, so
``kubeadm version`` reports it and the version rules (init, join, upgrade) are checked against it. A
refusal prints ``error execution phase <phase>: <reason>`` (or the bare reason before any phase) on
stderr and exits 1, as real kubeadm does. Set ``CAPSTAN_STANDIN_ROOT`` to act on a folder instead of
``/`` (unit tests).
"""

from __future__ import annotations

import json
import sys

from capstan.lab.standins.common.client import ApiError
from capstan.lab.standins.kubeadm.base import PKI_DIR, KubeadmError, Version


def version_output(version: Version, output: str) -> str:
    if output == "short":
        return str(version)
    info = {
        "major": str(version.major),
        "minor": str(version.minor),
        "gitVersion": str(version),
        "gitCommit": "capstan-lab-standin",
        "gitTreeState": "clean",
        "buildDate": "1980-01-01T00:00:00Z",
        "goVersion": "python3",
        "compiler": "cpython",
        "platform": "linux/amd64",
    }
    if output == "json":
        return json.dumps({"clientVersion": info}, indent=2)
    if output == "yaml":
        return "clientVersion:\n" + "".join(f"  {k}: {v}\n" for k, v in info.items()).rstrip()
    if output:
        raise KubeadmError(
            f'invalid output format: {output}; valid formats are "", "short", "json" and "yaml"'
        )
    return (
        "kubeadm version: &version.Info{"
        + ", ".join(f'{k[0].upper()}{k[1:]}:"{v}"' for k, v in info.items())
        + "}"
    )


def dispatch(argv: list[str], binary: Version) -> int:
    from capstan.lab.standins.kubeadm import certscmd, cli, init, join, reset, upgrade

    args = cli.parse(argv)
    command = args.command
    if command == "version":
        print(version_output(binary, args.output))
        return 0
    if command == "init":
        if args.phase == "phase" and args.phase_name == "upload-certs":
            return init.upload_certs_phase(args)
        if args.phase is not None:
            raise KubeadmError("only 'kubeadm init phase upload-certs' is modelled by the lab stand-in")
        return init.run(args, binary)
    if command == "join":
        return join.run(args, binary)
    if command == "reset":
        return reset.reset(args)
    if command == "upgrade":
        handler = {"plan": upgrade.plan, "apply": upgrade.apply, "node": upgrade.node}.get(
            args.upgrade_command
        )
        if handler is None:
            raise KubeadmError("kubeadm upgrade needs a subcommand: plan, apply or node")
        return handler(args, binary)
    if command == "token":
        if args.token_command == "create":
            return reset.token_create(args)
        if args.token_command == "list":
            return reset.token_list(args)
        raise KubeadmError("kubeadm token needs a subcommand: create or list")
    if command == "certs":
        if args.certs_command == "check-expiration":
            return certscmd.check_expiration(args.cert_dir or PKI_DIR)
        if args.certs_command == "renew":
            return certscmd.renew(args.name, args.cert_dir or PKI_DIR)
        if args.certs_command == "certificate-key":
            from capstan.lab.standins.kubeadm.uploadcerts import new_certificate_key

            print(new_certificate_key())
            return 0
        raise KubeadmError("kubeadm certs needs a subcommand: check-expiration, renew or certificate-key")
    raise KubeadmError("kubeadm needs a command: version, init, join, upgrade, reset, token or certs")


def main(argv: list[str], version: str) -> int:
    binary = Version.parse(version)
    try:
        return dispatch(argv, binary)
    except KubeadmError as exc:
        print(str(exc), file=sys.stderr)
        print("To see the stack trace of this error execute with --v=5 or higher", file=sys.stderr)
        return 1
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
