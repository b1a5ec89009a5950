"""Helpers shared by the lab stand-ins: flags, kubeconfigs, a tiny API client, certificates.

Only the standard library, PyYAML and cryptography may be imported here: the stand-ins run with the
lab host's system Python and are packaged as zipapps without the rest of capstan.
"""
