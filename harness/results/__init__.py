"""Results: the schema of results.json, its writer/reader, JUnit XML and provenance."""

from .junit import write_junit
from .provenance import collect_provenance
from .schema import SCHEMA, SCHEMA_VERSION, check_document, missing_keys
from .writer import read_results, write_results

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "check_document",
    "collect_provenance",
    "missing_keys",
    "read_results",
    "write_junit",
    "write_results",
]
