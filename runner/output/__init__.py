"""Output (the last step of the pipeline): the result document, its schema, the files.

document.py builds a file's document (descriptors nested by name, and its metadata) from the
aggregated values; schema.py derives the JSON Schema every document of a profile must match
and checks each one; files.py writes them (JSON or YAML, always atomically).
"""

from __future__ import annotations

from runner.output.document import document, equal_loudness, frames_document, metadata
from runner.output.files import (
    FORMATS,
    check_writable,
    names_folder,
    output_format,
    prepare_folder,
    render,
    write_atomic,
    write_bytes_atomic,
    write_in_place,
    write_npy_atomic,
)
from runner.output.schema import output_schema, validate_output, validator

__all__ = [
    "FORMATS",
    "check_writable",
    "document",
    "equal_loudness",
    "frames_document",
    "metadata",
    "names_folder",
    "output_format",
    "output_schema",
    "prepare_folder",
    "render",
    "validate_output",
    "validator",
    "write_atomic",
    "write_bytes_atomic",
    "write_in_place",
    "write_npy_atomic",
]
