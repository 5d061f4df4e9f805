"""Reading the YAML or JSON files that describe runs and sweeps, with one-line errors that name the file."""
from __future__ import annotations

import json
from pathlib import Path


def parse_mapping_file(path: Path, text: str, what: str, install_hint: str, error=ValueError):
    """``text`` (the contents of ``path``) parsed as YAML (``.yaml``/``.yml``, needs pyyaml) or JSON (``.json``),
    by ``path``'s suffix. Errors are ``error`` (a ``ValueError`` subclass) with messages that start with
    ``what`` (e.g. ``"--config run.yaml"``); ``install_hint`` says how to get pyyaml."""
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise error(f"{what}: YAML needs pyyaml ({install_hint}), or use JSON") from None
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise error(f"{what} is not valid YAML: {' '.join(str(exc).split())}") from None
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except ValueError as exc:
            raise error(f"{what} is not valid JSON: {exc}") from None
    raise error(f"{what} must be .yaml, .yml or .json")
