"""extractor-profiles: declarative music-analysis profiles run as Essentia streaming networks.

Data flow, one module per step:
profile.load -> profile.validate -> compile -> run -> aggregate -> output (validate, write).
"""

__version__ = "0.1.0"
