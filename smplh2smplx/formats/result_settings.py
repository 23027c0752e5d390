"""The settings that define a folder's results, recorded beside them (`result_settings.json`).

No run replaces or mixes in results it did not produce with the same settings (target
model, number of betas, gender, frame rate...). A run calls `check_result_settings` before
any work (nothing is written) and `record_result_settings` just before its first output:

- the folder records other settings: the run refuses (InputError naming the folder and
  each differing setting), unless `overwrite`, which replaces the record (and the results,
  as they are redone);
- the folder records nothing (new, or written before the record existed): the results
  already there are compared one by one with what each file tells of its settings
  (`existing`, given by the caller: e.g. the target model and number of betas of a `.pkl`,
  the gender and frame rate of a sequence file); any difference is refused the same way.

A stage gives its settings as a flat {name: value} dict of JSON values, so a new stage or
model pair only passes its own names.
"""
import json
from pathlib import Path
from typing import Callable, Iterable, Mapping

from ..errors import InputError, listed, one_line
from .files import atomic_write, exclusive_lock, open_regular, shown_text

RESULT_SETTINGS = "result_settings.json"

# What each file of `existing` tells: (file, {setting: value}); settings it cannot tell
# are left out.
FileSettings = Iterable[tuple[Path, Mapping[str, object]]]


def _read_record(path: Path) -> dict | None:
    """The recorded settings, None when there is no record; InputError when damaged."""
    try:
        with open_regular(path, "r", max_bytes=1 << 20, encoding="utf-8") as handle:
            record = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as error:     # RecursionError: too deep
        raise InputError(f"{path}: not a readable settings record ({one_line(error)}); remove "
                         "it only if the results beside it were made with this run's "
                         "settings") from None
    if not isinstance(record, dict):
        raise InputError(f"{path}: not a settings record (a JSON object)")
    return record


def _differences(recorded: Mapping, settings: Mapping) -> list[str]:
    """'name X (this run: Y)' for each setting that differs."""
    def shown(values, name):
        return shown_text(values[name]) if name in values else "unset"

    return [f"{shown_text(name)} {shown(recorded, name)} (this run: {shown(settings, name)})"
            for name in sorted(set(recorded) | set(settings))
            if recorded.get(name) != settings.get(name)]


def _refusal(folder: Path, where: str, differences: list[str]) -> InputError:
    return InputError(f"{folder}: {where} made with other settings (give another output "
                      "folder, or --overwrite to replace them):" + listed(differences))


def check_result_settings(folder: Path, settings: Mapping, overwrite: bool,
                          existing: Callable[[], FileSettings] = lambda: ()) -> None:
    """Raise InputError when `folder` holds results of settings other than `settings`.

    Args:
        folder: the output folder (missing: nothing to check).
        settings: {name: JSON value} that define this run's results.
        overwrite: the user asked to replace results: nothing is refused.
        existing: called only when the folder records no settings; yields each result
            file already there with the settings it shows.
    """
    folder = Path(folder)
    if overwrite or not folder.is_dir():
        return
    recorded = _read_record(folder / RESULT_SETTINGS)
    if recorded is not None:
        differences = _differences(recorded, settings)
        if differences:
            raise _refusal(folder, f"holds results ({RESULT_SETTINGS})", differences)
        return
    for path, shown in existing():
        differences = _differences(shown, {name: settings.get(name) for name in shown})
        if differences:
            raise _refusal(folder, f"holds {path.name}", differences)


def record_result_settings(folder: Path, settings: Mapping, overwrite: bool) -> None:
    """Write `settings` as the folder's record (under a lock: shards start at once).

    A record of other settings written meanwhile (another run) is refused as in
    `check_result_settings`; with `overwrite` any record (even a damaged one) is replaced.
    """
    path = Path(folder) / RESULT_SETTINGS
    with exclusive_lock(path):
        recorded = None if overwrite else _read_record(path)
        if recorded == dict(settings):
            return
        if recorded is not None:
            raise _refusal(Path(folder), f"holds results ({RESULT_SETTINGS})",
                           _differences(recorded, settings))
        with atomic_write(path, "w") as handle:
            json.dump(dict(settings), handle, indent=1, sort_keys=True)
            handle.write("\n")
