"""The errors a user's mistake raises. The command line prints any of them as one line, ``error: ...``, and
exits with status 2 before anything is written; the message names the file, line or option, and the value."""

NET = "model.net.init_args"  # where a net's options sit in a config: the messages that name one start with it


def first_line(err: BaseException, limit: int = 200) -> str:
    """What a library's error says, for one line of ours: its message's first non-blank line (its type's name when
    the message is empty); one over ``limit`` characters is cut at a word's end there and ends in "...", not
    mid-word."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    line = lines[0] if lines else type(err).__name__
    if len(line) <= limit:
        return line
    cut = line[:limit]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:") + "..."


class UserError(Exception):
    """A mistake in what the user gave: a file, an option, a config, a checkpoint."""


class DataError(UserError, ValueError):
    """Bad user data: the message names the file, the line or row, the field and the value."""


class EmptySplitError(DataError):
    """An evaluation split without examples asked to be evaluated (``test`` with ``test_fraction 0``)."""


class ConfigError(UserError, ValueError):
    """A bad config file, comparison file, option, trainer setting or checkpoint path."""


class PretrainedError(UserError, ValueError):
    """Pretrained weights missing, unreadable, or not matching the data (tokenizer, length)."""


class UnusedParametersError(UserError, RuntimeError):
    """Trainable parameters that receive no gradient from the loss."""


class NonFiniteLossError(UserError, FloatingPointError):
    """A NaN/Inf training loss (or weights): the message names the step and batch."""


class RunsFailedError(UserError, RuntimeError):
    """Runs of a comparison failed; the others were kept and tabled. Each failure names its log."""


def refuse_nulls(options, name: str) -> None:
    """A ConfigError for a field of a dataclass of options (``moe``, ``universal``) that a config set to null
    where its type takes no null (``moe: {experts: null}`` was a TypeError's traceback from the comparison)."""
    import dataclasses

    for field in dataclasses.fields(options):
        if getattr(options, field.name) is None and "None" not in str(field.type):
            raise ConfigError(f"{NET}.{name}.{field.name}: null where it takes {field.type} (leave it out for its "
                              f"default, {field.default!r})")  # fmt: skip
