"""The Aegis policy language: parsing, formatting, loading and validating policy sets.

Usage::

    from aegis.lang import load_texts, format_policy, parse_policy

    policies = load_texts({"ops.aegis": 'allow "read" { action == "read" }'})
    print(policies.version)
    print(format_policy(parse_policy('allow "a" {action=="read"}')))
"""

from aegis.lang import ast
from aegis.lang._parser import MAX_DEPTH, MAX_FILE_BYTES
from aegis.lang.diagnostics import Diagnostic, Severity, Span
from aegis.lang.errors import PolicyError, PolicyLoadError, SchemaError
from aegis.lang.formatter import format_expr, format_policy, format_rule
from aegis.lang.loader import (
    PolicySet,
    collect_policy_files,
    load_paths,
    load_texts,
    parse_policy,
)
from aegis.lang.schema import Schema, load_schema, parse_schema
from aegis.lang.validator import validate

__all__ = [
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "Diagnostic",
    "PolicyError",
    "PolicyLoadError",
    "PolicySet",
    "Schema",
    "SchemaError",
    "Severity",
    "Span",
    "ast",
    "collect_policy_files",
    "format_expr",
    "format_policy",
    "format_rule",
    "load_paths",
    "load_schema",
    "load_texts",
    "parse_policy",
    "parse_schema",
    "validate",
]
