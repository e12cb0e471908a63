"""Examples that run from an installed package: ``python -m auxnas.examples.<name> --help``."""
