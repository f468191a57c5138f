"""Errors the command line prints as one line (``error: ...``, exit status 2) instead of a traceback."""


class ConfigError(ValueError):
    """A bad comparison file, option or trainer setting; the message names the file or key and the value."""
