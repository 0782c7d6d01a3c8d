"""Models: run after the Essentia network on the analysed audio, in three rooms.

Running (what a run imports): stage.py (the model stage of a profile: outputs handed to
their family, missing models, the result hash), family.py (the protocol every family's
runner follows, and the table from a lock entry's ``kind`` to its family), one module per
family (tf_family.py: Essentia TensorFlow graphs, with infer.py; clap_family.py: CLAP, with
clap.py), classes.py (class probabilities as Essentia's highlevel layout).
Supplying (supply/): the lock file, the model cache, fetching, MTG's metadata.
Converting (convert/): tools run as their own process by a fetch; never imported by a run.
commands.py: `extractor models list|fetch|verify`.
The plan of a profile's ``models:`` section is the compiler's (runner.compile.models).
"""
