"""The published JSON Schemas, for tests: every bundle and trust file that the
tests and the demo produce is checked against them (docs/protocol.md §9, §10).

    from tests.schemas import assert_bundle, assert_trust
    assert_bundle(json.loads(path.read_text()))
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema


@cache
def _validator(name: str) -> jsonschema.protocols.Validator:
    schema = json.loads(files("protocol").joinpath("schema", name).read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _doc(doc_or_path: Any) -> Any:
    if isinstance(doc_or_path, (str, Path)):
        return json.loads(Path(doc_or_path).read_text(encoding="utf-8"))
    return doc_or_path


def assert_bundle(doc_or_path: Any) -> None:
    """Raise jsonschema.ValidationError unless the document (or file) is a valid bundle."""
    _validator("bundle.schema.json").validate(_doc(doc_or_path))


def assert_trust(doc_or_path: Any) -> None:
    """Raise jsonschema.ValidationError unless the document (or file) is a valid trust file."""
    _validator("trust.schema.json").validate(_doc(doc_or_path))


__all__ = ["assert_bundle", "assert_trust"]
