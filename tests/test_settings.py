"""Settings: config.py, and for stage 2 my_smplh2smplx.yaml with --exp-opts and flags."""
import pytest

import run_transfer
from smplh2smplx.errors import InputError
from smplh2smplx.fit.fitter import FitSettings
from smplh2smplx.settings import EXPERIMENT_CONFIG, load_experiment_config, read_user_config
from smplh2smplx.settings import TransferOptions

# ----------------------------------------------------------------- stage 2: my_smplh2smplx.yaml

USER_CONFIG = {
    "MESH_DIR": "meshes", "SMPLX_OUTPUT_DIR": "out", "SMPLX_MODEL": "models",
    "DEFTRAFO_PATH": "transfer/deftrafo.pkl", "MASK_IDS_PATH": "transfer/mask.npy",
    "SMPLH_MODEL": "TODO", "AMASS_DIR": "TODO",
}


def test_yaml_paths_come_from_config_py_through_the_resolver():
    config = load_experiment_config(user_config=USER_CONFIG)
    assert config.datasets.mesh_folder.data_folder == "meshes"
    assert config.output_folder == "out"
    assert config.body_model.folder == "models"
    assert config.deformation_transfer_path == "transfer/deftrafo.pkl"
    assert config.mask_ids_fname == "transfer/mask.npy"
    assert config.datasets.mesh_folder.batch_size == 0 and config.body_model.model_type == "smplx"


def test_real_config_py_feeds_the_shipped_yaml():
    user_config = read_user_config()
    config = load_experiment_config()
    assert config.datasets.mesh_folder.data_folder == user_config["MESH_DIR"]
    assert config.output_folder == user_config["SMPLX_OUTPUT_DIR"]


def test_every_yaml_entry_is_commented():
    """Each key with a value carries a comment on its line or on the line above."""
    lines = EXPERIMENT_CONFIG.read_text().splitlines()
    for number, line in enumerate(lines):
        key, colon, value = line.split("#")[0].partition(":")
        if not colon or not key.strip() or not value.strip():
            continue                                   # comments, blanks, section headers
        assert "#" in line or lines[number - 1].strip().startswith("#"), line


def test_precedence_config_py_yaml_exp_opts_flags(tmp_path):
    exp_cfg = tmp_path / "mine.yaml"
    exp_cfg.write_text("output_folder: from_yaml\nfit:\n  poses_per_batch: 64\n  device: cpu\n")
    config = load_experiment_config(exp_cfg, ["fit.poses_per_batch=32", "fit.device=cuda"],
                                    {"fit.poses_per_batch": 16}, user_config=USER_CONFIG)
    assert config.output_folder == "from_yaml"          # YAML over config.py
    assert config.fit.device == "cuda"                  # --exp-opts over YAML
    assert config.fit.poses_per_batch == 16             # flags over --exp-opts
    assert config.fit.max_iterations == load_experiment_config(
        user_config=USER_CONFIG).fit.max_iterations     # unset keys: the shipped defaults


def test_unknown_key_of_our_section_in_a_yaml_file_is_refused(tmp_path):
    exp_cfg = tmp_path / "old.yaml"
    exp_cfg.write_text("fit:\n  batch_size: 64\n")      # the key's name before poses_per_batch
    with pytest.raises(InputError, match="old.yaml: unknown key.*fit.batch_size"):
        load_experiment_config(exp_cfg, user_config=USER_CONFIG)


def test_dotted_overrides_and_official_extra_keys(tmp_path):
    official = tmp_path / "smplh2smplx_as.yaml"
    official.write_text("datasets:\n  mesh_folder:\n    data_folder: m\nsummary_steps: 100\n"
                        "body_model:\n  use_compressed: false\n")
    config = load_experiment_config(official, ["datasets.mesh_folder.batch_size=1000",
                                               "datasets.mesh_folder.batch_index=3"],
                                    user_config=USER_CONFIG)
    assert config.summary_steps == 100 and config.datasets.mesh_folder.data_folder == "m"
    assert config.datasets.mesh_folder.batch_size == 1000
    assert config.datasets.mesh_folder.batch_index == 3


@pytest.mark.parametrize("exp_opts, message", [
    (["fit.bacth_size=3"], "unknown key.*fit.bacth_size"),
    (["output_folder"], "key=value"),
    (["=3"], "key=value"),
])
def test_bad_overrides_are_named(exp_opts, message):
    with pytest.raises(InputError, match=message):
        load_experiment_config(exp_opts=exp_opts, user_config=USER_CONFIG)


def test_missing_config_py_entry_and_bad_files_are_named(tmp_path):
    partial = {key: value for key, value in USER_CONFIG.items() if key != "MASK_IDS_PATH"}
    with pytest.raises(InputError, match="MASK_IDS_PATH"):
        load_experiment_config(user_config=partial)
    with pytest.raises(InputError, match="nope.yaml"):
        load_experiment_config(tmp_path / "nope.yaml", user_config=USER_CONFIG)
    broken = tmp_path / "broken.yaml"
    broken.write_text("fit: [unclosed\n")
    with pytest.raises(InputError, match="broken.yaml"):
        load_experiment_config(broken, user_config=USER_CONFIG)


def test_flags_map_onto_config_entries():
    args = run_transfer.parse_args(["--device", "cpu", "--poses-per-batch", "8", "--overwrite",
                                    "--from-params", "--smplh-model", "h.npz"])
    assert run_transfer.flag_overrides(args) == {
        "fit.device": "cpu", "fit.poses_per_batch": 8, "overwrite": True, "fit.from_params": True,
        "fit.smplh_model": "h.npz"}
    assert run_transfer.flag_overrides(run_transfer.parse_args([])) == {}
    args = run_transfer.parse_args(["--source-model", "smplx", "--target-model", "smpl"])
    assert run_transfer.flag_overrides(args) == {"fit.source_model": "smplx",
                                                 "body_model.model_type": "smpl"}


def test_pair_options_from_config():
    """The pair selects the transfer and the mask: SMPL <-> SMPL-H reads no deformation
    transfer, and only SMPL-X targets read the (SMPL-X) mask."""
    def options(**flags):
        return TransferOptions.from_config(load_experiment_config(flags=flags,
                                                                  user_config=USER_CONFIG))
    default = options()
    assert (default.source_model, default.target_model) == ("smplh", "smplx")
    assert default.mask_path is not None and default.deftrafo_path is not None
    to_smpl = options(**{"fit.source_model": "smplx", "body_model.model_type": "smpl"})
    assert to_smpl.deftrafo_path is not None and to_smpl.mask_path is None
    same_mesh = options(**{"fit.source_model": "smpl", "body_model.model_type": "smplh"})
    assert same_mesh.deftrafo_path is None and same_mesh.mask_path is None



def test_fit_preset_and_knob_overrides():
    def fit(*options):
        config = load_experiment_config(exp_opts=list(options), user_config=USER_CONFIG)
        return TransferOptions.from_config(config).fit

    assert fit() == FitSettings(learned_start=True)           # the shipped preset: fast
    floor = fit("fit.preset=floor")
    assert (floor.max_iterations, floor.tolerance, floor.fit_vertices) == (100, 1e-6, 0)
    tuned = fit("fit.preset=floor", "fit.max_iterations=7")   # a knob set overrides its preset
    assert (tuned.max_iterations, tuned.tolerance, tuned.fit_vertices) == (7, 1e-6, 0)
    with pytest.raises(InputError, match="fit.preset: expected one of fast, floor"):
        fit("fit.preset=slow")
    with pytest.raises(InputError, match="--exp-opts fit.fit_vertices: expected"):
        fit("fit.fit_vertices=1e3")

def test_options_from_config():
    config = load_experiment_config(exp_opts=["datasets.mesh_folder.batch_size=100",
                                              "datasets.mesh_folder.batch_index=2",
                                              "fit.max_iterations=7", "fit.fit_betas=false"],
                                    flags={"fit.poses_per_batch": 16}, user_config=USER_CONFIG)
    options = TransferOptions.from_config(config)
    assert (options.shard_size, options.shard_index, options.poses_per_batch) == (100, 2, 16)
    assert options.fit.max_iterations == 7 and options.fit.fit_betas is False
    assert str(options.mesh_dir) == "meshes" and str(options.deftrafo_path) == "transfer/deftrafo.pkl"
    assert options.smplh_model is None                # only needed with from_params


@pytest.mark.parametrize("exp_opts, message", [
    (["fit.from_params=true"], "fit.smplh_model is not set.*config.py"),  # SMPLH_MODEL is TODO
    (["fit.poses_per_batch=many"], "fit.poses_per_batch: expected a decimal integer"),
    (["fit.poses_per_batch=0"], "fit.poses_per_batch must be >= 1"),
    (["fit.fit_betas=maybe"], "fit.fit_betas: expected true or false"),
    (["body_model.model_type=mano"], "model_type: expected one of smpl, smplh, smplx"),
    (["fit.source_model=smplx", "fit.from_params=true", "fit.smplh_model=h.npz"],
     "source model must be smplh"),
    (["body_model.model_type=smplh", "body_model.smplh.betas.num=17"], "between 1 and 16"),
    (["body_model.smplx.betas.num=16"], "10 betas"),
    (["datasets.mesh_folder.batch_index=-1"], "batch_index must be >= 0"),
])
def test_bad_option_values_are_named(exp_opts, message):
    with pytest.raises(InputError, match=message):
        TransferOptions.from_config(load_experiment_config(exp_opts=exp_opts,
                                                           user_config=USER_CONFIG))


def test_command_line_values_are_taken_literally():
    """Issue 9, item 2: YAML 1.1 would read 010 as octal 8 (shard 010 converting shard 8's
    poses) and 0123 as the number 83 (a folder named 83); values are decimal or text."""
    config = load_experiment_config(exp_opts=["datasets.mesh_folder.batch_size=10",
                                              "datasets.mesh_folder.batch_index=010",
                                              "output_folder=0123", "fit.tolerance=1e-4"],
                                    user_config=USER_CONFIG)
    options = TransferOptions.from_config(config)
    assert (options.shard_size, options.shard_index) == (10, 10)
    assert str(options.output_dir) == "0123" and options.fit.tolerance == 1e-4


@pytest.mark.parametrize("option", ["datasets.mesh_folder.batch_index=0x10",
                                    "datasets.mesh_folder.batch_index=1e3",
                                    "overwrite=yes", "overwrite=off", "fit.tolerance=nan"])
def test_non_decimal_and_yaml_booleans_are_refused(option):
    key = option.split("=")[0]
    with pytest.raises(InputError, match=f"--exp-opts {key}: expected"):
        load_experiment_config(exp_opts=[option], user_config=USER_CONFIG)
