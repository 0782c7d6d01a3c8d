"""A conditioning dataset for text-to-audio training from analysed tracks: training crops of
exact length (``placement``: where; ``cutting``: the per-track job), prompts from the features
(``prompts``), and a Stable Audio Tools dataset config with its metadata module (``sat``);
``files`` reads and writes the dataset's audio, ``.INFO`` and ``.BEATS_GRID`` files. The
commands are in ``commands``."""
