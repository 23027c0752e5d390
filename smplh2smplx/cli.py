"""What every command shares: its exit codes and how an error is printed.

Exit status: 0 done; 1 some inputs failed (each listed); 2 bad input (an `InputError`, one
line naming the file or id); 3 an output cannot be written (an `OutputError` or an OS error,
one line naming the path); 130 interrupted (the same command resumes).
"""
import sys

from .errors import InputError, OutputError


def one_line(error):
    """The message of an error on one line; an OS error names its path."""
    if isinstance(error, OSError):
        return f"{error.filename or 'output'}: {error.strerror or error}"
    return " ".join(str(error).splitlines())


def run_command(work):
    """Run `work()` and return the command's exit status.

    `work` returns an exit status itself, or a summary whose `lines()` are printed and
    whose `failed` count makes the status 1.
    """
    # A file name that is not valid UTF-8 is printed with escapes, never a traceback.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        outcome = work()
    except InputError as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    except (OutputError, OSError) as error:      # readers turn theirs into InputError
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    if isinstance(outcome, int):
        return outcome
    print("\n".join(outcome.lines()))
    return 1 if outcome.failed else 0
