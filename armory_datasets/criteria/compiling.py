"""What every query backend needs to know about a criterion beyond its shape.

Example:
    >>> from armory_datasets.criteria import parse
    >>> nullable_fields(parse("batch < 2 & confidence < 0.5"))
    ['confidence']
"""

from __future__ import annotations

from armory_datasets.criteria.nodes import Criterion
from armory_datasets.schema import VOCABULARY


def nullable_fields(node: Criterion) -> list[str]:
    """Names of the nullable columns a comparison reads, in reading order: its result must
    be false where one is null (unknown and dynamic columns are nullable)."""
    names = (f.require_name() for f in node.fields())
    return [name for name in names if VOCABULARY.is_nullable(name)]


def not_compilable(node: Criterion) -> ValueError:
    """The error for a criterion no query backend can run (an upstream-style function)."""
    return ValueError(f"{node}: cannot be compiled for a query; only export-time criteria "
                      "built from callables are opaque — use criteria constructors instead")
