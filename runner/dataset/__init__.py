"""A conditioning dataset for text-to-audio training from analysed tracks.

``conditioning`` is the per-track job of ``extractor conditioning`` (the profile on the mix
and its stems, into ``TRACK.INFO`` and ``TRACK.BEATS_GRID``); ``info`` merges features into
an INFO under a lock; ``stems`` finds a track's stems and checks them against the mix;
``separation`` makes them with Demucs. The command is in ``conditioning_command``.
"""
