"""The cluster spec: models, validation, loading. See ``models`` for the fields and their defaults."""

from capstan.spec.load import dump_spec, load_spec, parse_spec, parse_spec_text
from capstan.spec.models import API_VERSION, Cluster, Host

__all__ = ["API_VERSION", "Cluster", "Host", "dump_spec", "load_spec", "parse_spec", "parse_spec_text"]
