"""The official run's configuration, built from the project's config without argv.

The official `parse_args` copies its default config and merges the YAML given with
`--exp-cfg` into it. The project hands us that YAML already read (my_smplh2smplx.yaml, the
official schema plus our own sections), so `official_config` does the same merge from an
OmegaConf object, and `ShardSettings` reads the keys the official schema lacks (the shard of
the PoseScript/PoseFix instructions, and our `overwrite`).
"""
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from smplh2smplx.errors import InputError


def _known_keys(config, schema):
    """The part of `config` whose keys (recursively) exist in `schema`, as a plain dict."""
    kept = {}
    for key, value in config.items():
        if key not in schema:
            continue
        if isinstance(value, DictConfig) and isinstance(schema[key], DictConfig):
            kept[key] = _known_keys(value, schema[key])
        else:
            kept[key] = OmegaConf.to_container(value, resolve=True) \
                if isinstance(value, DictConfig) else value
    return kept


def official_config(config, defaults, verbose=False):
    """The config `run_fitting` expects: the official defaults, overridden by `config`.

    Replaces `transfer_model.config.parse_args` (which reads sys.argv). Keys the official
    schema does not know (our `fit` section, `overwrite`, the shard keys under
    `datasets.mesh_folder`) are left out, since the typed official config would refuse
    them; see `ShardSettings` for the shard. The official `interactive` flag only makes
    the optimiser log and evaluate a summary every `summary_steps` iterations; it is
    turned off unless `verbose`, which changes no fitted value.

    Args:
        config: DictConfig in the official schema (interpolations resolved or resolvable).
        defaults: the official default config (`transfer_model.config.defaults.conf`).
    Returns:
        a new DictConfig; `defaults` is not modified.
    Raises:
        InputError when a value does not fit the official schema's type.
    """
    merged = defaults.copy()
    try:
        merged.merge_with(_known_keys(config, defaults))
    except Exception as error:          # OmegaConf raises several validation error types
        raise InputError(f"the config does not fit the official transfer_model schema: "
                         f"{error}") from None
    if not verbose:
        merged.interactive = False
    return merged


@dataclass(frozen=True)
class ShardSettings:
    """Which meshes a run converts.

    Attributes:
        size: meshes per shard over the sorted mesh list; 0 means the whole list
            (`datasets.mesh_folder.batch_size`).
        index: the shard converted, 0-based (`datasets.mesh_folder.batch_index`).
        overwrite: convert again meshes whose parameter file exists (`overwrite`).
    """
    size: int = 0
    index: int = 0
    overwrite: bool = False

    @classmethod
    def from_config(cls, config):
        """Read the settings from a config in the my_smplh2smplx.yaml schema."""
        folder = OmegaConf.select(config, "datasets.mesh_folder") or {}
        size = folder.get("batch_size", 0) or 0
        index = folder.get("batch_index", 0) or 0
        overwrite = OmegaConf.select(config, "overwrite", default=False)
        try:
            size, index = int(size), int(index)
        except (TypeError, ValueError):
            raise InputError(f"datasets.mesh_folder.batch_size and batch_index must be "
                             f"integers, got {size!r} and {index!r}") from None
        if size < 0 or index < 0:
            raise InputError(f"datasets.mesh_folder.batch_size ({size}) and batch_index "
                             f"({index}) must not be negative")
        return cls(size=size, index=index, overwrite=bool(overwrite))
