"""Supplying models: which models exist and where their verified files are.

lock.py (models.lock.json, the one list of models and their pins), cache.py (lookup and
verification in the model cache), fetch.py (downloads and conversions, only when a person
asks), metadata.py (the fields of MTG's metadata JSON inference needs). Nothing here runs a
model or imports numpy, Essentia, torch or TensorFlow: the compiler, the output schema and
`extractor models` read it as well as the model stage.
"""
