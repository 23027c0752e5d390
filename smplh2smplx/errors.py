"""The one exception type for bad user input."""


class InputError(ValueError):
    """A file, folder or pose id given by the user is missing or malformed.

    The message always names the offending file or id and says what is wrong.
    """
