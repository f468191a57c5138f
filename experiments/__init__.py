"""The command line: ``python -m experiments fit|validate|test|predict|compare|data``."""
