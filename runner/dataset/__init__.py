"""A conditioning dataset for text-to-audio training from analysed tracks.

``conditioning`` is the per-track job of ``extractor conditioning`` (the profile on the mix
and its stems, into ``TRACK.INFO`` and ``TRACK.BEATS_GRID``); ``info`` merges features into
an INFO under a lock; ``stems`` finds a track's stems and checks them against the mix;
``separation`` makes them with Demucs. Training crops of exact length (``placement``: where;
``cutting``: the per-track job), prompts from the features (``prompts``), and a Stable Audio
Tools dataset config with its metadata module (``sat``); ``files`` reads and writes the
dataset's audio and beat grids. The commands are in ``conditioning_command`` and ``commands``.
"""
