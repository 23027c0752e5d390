"""The one exception type for bad user input."""


class InputError(ValueError):
    """A file, folder or pose id given by the user is missing or malformed.

    The message always names the offending file or id and says what is wrong.
    """


class OutputError(Exception):
    """An output file or folder cannot be written (read-only or full disk, a path that is a
    file or lies under one, a planted link). The message names the path and the reason;
    the command-line tools exit with status 3 on it.
    """
