"""Test package: a regular package, so that site-packages/tests (laion-clap 1.1.7 installs one)
cannot shadow it in `from tests.conftest import ...`."""
