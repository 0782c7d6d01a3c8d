"""``python -m runner.cli``: the ``extractor`` command."""

import sys

from runner.cli import main

sys.exit(main())
