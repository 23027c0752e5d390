"""The exceptions for bad input and unwritable output, and how an error reads on one line."""
from __future__ import annotations

import traceback


class InputError(ValueError):
    """A file, folder or pose id given by the user is missing or malformed.

    The message always names the offending file or id and says what is wrong.
    """


class SkipFile(InputError):
    """A file of the tree that is not a motion file to convert (shape.npz, a sequence
    already in the target model): skipped with this reason, not a failure."""


class OutputError(Exception):
    """An output file or folder cannot be written (read-only or full disk, a path that is a
    file or lies under one, a planted link). The message names the path and the reason;
    the command-line tools exit with status 3 on it.
    """


def one_line(error: BaseException) -> str:
    """The message of an error on one line; an OS error names its path."""
    if isinstance(error, OSError):
        return f"{error.filename or 'output'}: {error.strerror or error}"
    return " ".join(str(error).splitlines())


def unforeseen(error: object) -> str | None:
    """For an error no check foresaw (a bug: not a bad input, an unwritable output, an OS
    error or an interruption), the words that fail one input with it under --keep-going,
    `(IndexError: ...): an error no check foresaw`, its traceback printed to stderr for
    the report; None for any other error, which keeps its own way, and for a result."""
    if not isinstance(error, Exception) or isinstance(error, (InputError, OutputError,
                                                              OSError)):
        return None
    traceback.print_exception(type(error), error, error.__traceback__)
    return f"({type(error).__name__}: {one_line(error)}): an error no check foresaw"


def below_least(checks) -> list:
    """The problems of the (name, value, least) `checks` whose value is below its least:
    "--cpus must be >= 1, got 0"."""
    return [f"{name} must be >= {least}, got {value}" for name, value, least in checks
            if value < least]


def listed(items) -> str:
    """Items at the end of a message that lists them: " a" for one; for several, one per
    line, indented, as the commands print them (`error_text`)."""
    items = [" ".join(str(item).splitlines()) for item in items]
    return f" {items[0]}" if len(items) == 1 else "".join(f"\n  {item}" for item in items)


def error_text(error: BaseException) -> str:
    """An error as the commands print it: its message on one line, then one indented line
    per item it lists (`listed`); an OS error names its path."""
    if isinstance(error, OSError):
        return one_line(error)
    first, *rest = str(error).split("\n")
    return first + "".join(("\n" if line.startswith("  ") else " ") + line for line in rest)
