"""What every command shares: its settings flags, its exit codes and how an error is printed.

Flags: a setting `shard_size` of the schema (settings.py) is the flag `--shard-size` in every
command that has it, with the schema's help and default (`add_setting_flags`), so a flag
cannot mean two things or carry a second default. `--exp-cfg`, `--exp-opts` and
`--show-settings` come with `add_config_flags`; `load_command_settings` applies them.

Exit status: 0 done; 1 some inputs failed (each listed); 2 bad input (an `InputError`, one
line naming the file or id); 3 an output cannot be written (an `OutputError` or an OS error,
one line naming the path); 130 interrupted (the same command resumes).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, fields
from pathlib import Path
from typing import Callable, Iterable

from omegaconf import OmegaConf

from .errors import InputError, OutputError, error_text
from .settings import load_settings, parse_value, setting_defaults, setting_types

# The settings every command that converts has, under the same flags.
RUN_FLAGS = ("shard_size", "shard_index", "device", "overwrite", "keep_going")


def flag_name(key: str) -> str:
    """The flag of a setting key: `shard_size` -> `--shard-size`."""
    return "--" + key.replace("_", "-")


METAVARS = {int: "N", float: "X", bool: None}


def add_setting_flags(parser, schema, keys) -> None:
    """Add one flag per top-level setting in `keys` of the dataclass `schema`.

    The flag keeps its value as text (None when not given): `load_command_settings`
    converts it by the schema's type, and the default stays the schema's.
    """
    types, defaults = setting_types(schema), setting_defaults(schema)
    metadata = {entry.name: entry.metadata for entry in fields(schema)}
    for key in keys:
        text, config_name = metadata[key]["help"], metadata[key].get("config")
        if config_name:
            text += f" (config.py: {config_name})"
        elif types[key] is not bool:
            text += f" (default: {defaults[key]})"
        text = text.replace("%", "%%")
        if types[key] is bool:
            parser.add_argument(flag_name(key), dest=key, action="store_const",
                                const="true", help=text)
        else:
            parser.add_argument(flag_name(key), dest=key, help=text,
                                choices=metadata[key].get("choices"),
                                metavar="PATH" if config_name else METAVARS.get(types[key]))


def add_config_flags(parser, exp_cfg_default=None) -> None:
    """--exp-cfg (a YAML file of settings), --exp-opts (dotted overrides), --show-settings."""
    parser.add_argument("--exp-cfg", default=exp_cfg_default, metavar="YAML",
                        help="YAML file of settings (keys as in --show-settings)"
                             + (" (default: %(default)s)" if exp_cfg_default else ""))
    parser.add_argument("--exp-opts", nargs="*", default=[], metavar="KEY=VALUE",
                        help="dotted overrides of settings, e.g. fit.max_iterations=7; values "
                             "are literal: 010 is ten, booleans are true/false")
    parser.add_argument("--show-settings", action="store_true",
                        help="print every setting this run would use, as YAML, and stop")


def setting_flag_values(schema, args, keys) -> dict:
    """{key: value} of the flags of `keys`: the typed value given, else the schema's
    default. For a command whose options are not of the schema (convert_sequences.py)."""
    types, defaults = setting_types(schema), setting_defaults(schema)
    return {key: defaults[key] if getattr(args, key) is None
            else parse_value(getattr(args, key), types[key], flag_name(key)) for key in keys}


def load_command_settings(schema: type, args: argparse.Namespace, keys: Iterable[str],
                          user_config: object = None) -> object:
    """The options of a command: the schema's defaults, config.py, --exp-cfg, --exp-opts
    and the flags of `keys` given on the command line (applied last)."""
    flags = {key: getattr(args, key) for key in keys if getattr(args, key) is not None}
    return load_settings(schema, args.exp_cfg, args.exp_opts, flags, user_config)


def settings_yaml(options) -> str:
    """Options as the YAML that --show-settings prints (and --exp-cfg reads back)."""
    def plain(value):
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        return str(value) if isinstance(value, Path) else value
    return OmegaConf.to_yaml(plain(asdict(options)))


def run_command(work: Callable[[], object]) -> int:
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
        print(f"error: {error_text(error)}", file=sys.stderr)
        return 2
    except (OutputError, OSError) as error:      # readers turn theirs into InputError
        print(f"error: {error_text(error)}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    if isinstance(outcome, int):
        return outcome
    print("\n".join(outcome.lines()))
    return 1 if outcome.failed else 0
