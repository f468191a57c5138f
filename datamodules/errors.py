"""The one error type for bad user data, shared by every datamodule and the command line."""


class DataError(ValueError):
    """Bad user data. The message names the file, the line or row, the field and the value."""
