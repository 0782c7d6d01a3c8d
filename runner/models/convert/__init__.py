"""Conversion tools: build model files that Essentia runs from another format.

Each tool runs in a process of its own (``python -m runner.models.convert.<tool>``), started by
runner.models.supply.fetch or by the Nix model packages: it imports TensorFlow, which must never
share a process with essentia. Nothing that runs a profile imports this package.
"""
