"""The official run's configuration, translated from the project's settings without argv.

The official `parse_args` copies its default config and merges the YAML given with
`--exp-cfg` into it. Here the settings are the project's `TransferOptions`;
`official_settings` gives each its official key name (the one place those names live) and
`official_config` merges them into the official defaults.
"""

from smplh2smplx.errors import InputError


def _text(path):
    return "" if path is None else str(path)


def official_settings(options) -> dict:
    """The entries of the official schema that `options` (a `TransferOptions`) sets.

    The shard, `overwrite`, the source model and the device are not official keys: the
    run reads them from `options` itself.
    """
    target, official = options.target_model, options.official
    return {
        "datasets": {"mesh_folder": {"data_folder": _text(options.mesh_dir)}},
        "output_folder": _text(options.output_dir),
        "deformation_transfer_path": _text(options.deformation_transfer),
        "mask_ids_fname": _text(options.mask),
        "batch_size": official.meshes_per_batch,
        "optim": {"type": official.optimizer, "maxiters": official.max_iterations,
                  "gtol": official.gradient_tolerance},
        "edge_fitting": {"per_part": official.per_part_edges},
        "body_model": {"model_type": target, "gender": options.gender,
                       "folder": _text(options.model_path(target)),
                       "use_face_contour": official.face_contour,
                       target: {"betas": {"num": options.fit.num_betas}}},
    }


def official_config(options, defaults, verbose=False):
    """The config `run_fitting` expects: the official defaults, overridden by `options`.

    Replaces `transfer_model.config.parse_args` (which reads sys.argv). The official
    `interactive` flag only makes the optimiser log and evaluate a summary every
    `summary_steps` iterations; it is turned off unless `verbose`, which changes no fitted
    value.

    Args:
        options: the run's `TransferOptions`.
        defaults: the official default config (`transfer_model.config.defaults.conf`).
    Returns:
        a new DictConfig; `defaults` is not modified.
    Raises:
        InputError when a value does not fit the official schema's type.
    """
    merged = defaults.copy()
    try:
        merged.merge_with(official_settings(options))
    except Exception as error:          # OmegaConf raises several validation error types
        raise InputError(f"the settings do not fit the official transfer_model schema: "
                         f"{error}") from None
    if not verbose:
        merged.interactive = False
    return merged
