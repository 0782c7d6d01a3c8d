"""Derive functions of the conditioning profile (profiles/conditioning.yaml, docs/conditioning.md).

Importing this package registers them with runner.derive, beside the built-in ones; the
compiler and the value stages import it (runner.compile.nodes, runner.analysis.values).
"""

from runner.conditioning import (  # noqa: F401  (registers the functions)
    beats_and_onsets,
    features,
    rhythm,
    timbral,
    true_peak,
)
