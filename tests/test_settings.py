"""Settings: one schema (settings.py) for every command, config.py, YAML, --exp-opts, flags."""
import argparse
from dataclasses import fields

import pytest
from omegaconf import OmegaConf

import convert_sequences
import extract_to_obj
import run_transfer
from smplh2smplx.cli import RUN_FLAGS, settings_yaml
from smplh2smplx.errors import InputError
from smplh2smplx.fit.fitter import FitSettings
from smplh2smplx.settings import (EXPERIMENT_CONFIG, ExtractOptions, TransferOptions,
                                  load_settings, read_user_config, setting_defaults,
                                  setting_types)

USER_CONFIG = {
    "MESH_DIR": "meshes", "SMPLX_OUTPUT_DIR": "out", "SMPLX_MODEL": "models",
    "DEFTRAFO_PATH": "transfer/deftrafo.pkl", "MASK_IDS_PATH": "transfer/mask.npy",
    "SMPLH_MODEL": "TODO", "SMPL_MODEL": "TODO", "AMASS_DIR": "TODO",
}
SCHEMAS = (TransferOptions, ExtractOptions)


def load(exp_cfg=None, exp_opts=(), flags=None, user_config=USER_CONFIG):
    return load_settings(TransferOptions, exp_cfg, exp_opts, flags, user_config)


# ----------------------------------------------------------------- defaults written once

def defaults_written_again(yaml_path, schema):
    """The keys of a YAML file whose value is the schema's default: a second copy."""
    written = OmegaConf.to_container(OmegaConf.load(yaml_path), resolve=False) or {}
    defaults = setting_defaults(schema)

    def leaves(node, prefix=""):
        for key, value in node.items():
            if isinstance(value, dict):
                yield from leaves(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value
    return [key for key, value in leaves(written) if key in defaults and defaults[key] == value]


def test_the_shipped_yaml_repeats_no_default():
    assert defaults_written_again(EXPERIMENT_CONFIG, TransferOptions) == []
    load(EXPERIMENT_CONFIG)                        # and every key it sets is a schema key


def test_a_default_written_again_is_found(tmp_path):
    copy = tmp_path / "copy.yaml"
    copy.write_text("poses_per_batch: 512\ndevice: cuda\nfit:\n  max_iterations: 20\n")
    assert defaults_written_again(copy, TransferOptions) == ["poses_per_batch",
                                                             "fit.max_iterations"]


def parsers(with_sequences=True):
    """The commands' parsers. convert_sequences.py keeps its own SequenceOptions (its model
    pairs are being reworked on another branch) and takes only the run flags and the flag
    names from the schema so far."""
    commands = {"run_transfer": run_transfer, "extract_to_obj": extract_to_obj}
    if with_sequences:
        commands["convert_sequences"] = convert_sequences
    return {name: command.build_parser() for name, command in commands.items()}


def options_of(parser):
    """{flag: argparse action} of a parser's visible options."""
    return {flag: action for action in parser._actions if action.help != argparse.SUPPRESS
            for flag in action.option_strings}


def test_no_flag_carries_a_second_default():
    """A flag of a schema setting defaults to None: the value comes from the schema."""
    keys = {key for schema in SCHEMAS for key in setting_types(schema)}
    for name, parser in parsers(with_sequences=False).items():
        for action in parser._actions:
            if action.dest in keys:
                assert action.default is None, f"{name} {action.option_strings}"


def test_every_setting_has_one_help_and_every_path_its_config_entry():
    config_names = read_user_config()
    for schema in SCHEMAS:
        for entry in fields(schema):
            assert entry.metadata.get("help"), f"{schema.__name__}.{entry.name}"
            if "config" in entry.metadata:
                assert entry.metadata["config"] in config_names, entry.name


# ----------------------------------------------------------------- the same flags everywhere

def test_a_flag_means_the_same_in_every_command():
    """A flag found in several commands stores the same setting with the same help (paths
    differ only by their config.py entry: --output-dir is each command's own folder)."""
    by_flag = {}
    for name, parser in parsers().items():
        for flag, action in options_of(parser).items():
            by_flag.setdefault(flag, []).append((name, action))
    shared = {flag: uses for flag, uses in by_flag.items() if len(uses) > 1}
    assert {"--overwrite", "--keep-going", "--shard-size", "--shard-index", "--device",
            "--smplh-model", "--smplx-model", "--mask", "--deformation-transfer",
            "--output-dir"} <= set(shared)
    for flag, uses in shared.items():
        schema_uses = [action for name, action in uses if name != "convert_sequences"]
        assert len({action.dest for action in schema_uses}) <= 1, flag
        # --exp-cfg: run_transfer.py reads my_smplh2smplx.yaml by default, the others none.
        if flag not in ("--output-dir", "--smplh-model", "--smplx-model", "--mask",
                        "--deformation-transfer", "--help", "-h", "--exp-cfg"):
            # The default may differ by command (stage 1 poses 128 poses at once, stage 2
            # fits 512): the meaning may not.
            meanings = {action.help.split(" (default:")[0] for action in schema_uses}
            assert len(meanings) <= 1, flag


def test_run_flags_in_every_converting_command():
    commands = parsers()
    for name in ("run_transfer", "convert_sequences"):
        flags = options_of(commands[name])
        for key in RUN_FLAGS:
            action = flags["--" + key.replace("_", "-")]
            assert action.dest == key and action.default is None, (name, key)
            same = options_of(commands["run_transfer"])[action.option_strings[0]]
            assert action.help == same.help, (name, key)
    assert {"--overwrite", "--keep-going"} <= set(options_of(parsers()["extract_to_obj"]))


@pytest.mark.parametrize("command, schema", [(run_transfer, TransferOptions),
                                             (extract_to_obj, ExtractOptions)])
def test_every_path_is_a_flag(command, schema):
    flags = options_of(command.build_parser())
    for entry in fields(schema):
        if "config" in entry.metadata:
            flag = "--" + entry.name.replace("_", "-")
            assert flag in flags and entry.metadata["config"] in flags[flag].help


def test_path_flags_reach_the_options(tmp_path):
    paths = {"--mesh-dir": "m", "--output-dir": "o", "--smpl-model": "a", "--smplh-model": "b",
             "--smplx-model": "c", "--deformation-transfer": "d.pkl", "--mask": "e.npy"}
    args = run_transfer.parse_args([item for pair in paths.items() for item in pair])
    options = run_transfer.load_command_settings(TransferOptions, args, run_transfer.FLAGS,
                                                 USER_CONFIG)
    assert [str(getattr(options, flag[2:].replace("-", "_"))) for flag in paths] == list(
        paths.values())


def test_modes_and_their_old_spellings():
    assert run_transfer.parse_args([]).mode == "transfer"
    assert run_transfer.parse_args(["--mode", "shape"]).mode == "shape"
    assert run_transfer.parse_args(["--shape-only"]).mode == "shape"
    assert run_transfer.parse_args(["--report"]).mode == "report"
    help_text = run_transfer.build_parser().format_help()
    for mode in ("transfer", "shape", "report"):
        assert f"\n  {mode}" in help_text


# ----------------------------------------------------------------- sources and precedence

def test_paths_come_from_config_py():
    options = load()
    assert str(options.mesh_dir) == "meshes" and str(options.output_dir) == "out"
    assert str(options.smplx_model) == "models"
    assert str(options.deformation_transfer) == "transfer/deftrafo.pkl"
    assert str(options.mask) == "transfer/mask.npy"
    assert options.model_path("smplx") == options.smplx_model
    assert (options.shard_size, options.target_model) == (0, "smplx")


def test_real_config_py_feeds_the_settings():
    user_config = read_user_config()
    options = load_settings(TransferOptions, EXPERIMENT_CONFIG)
    assert str(options.mesh_dir) == user_config["MESH_DIR"]
    assert str(options.output_dir) == user_config["SMPLX_OUTPUT_DIR"]


def test_precedence_defaults_config_py_yaml_exp_opts_flags(tmp_path):
    exp_cfg = tmp_path / "mine.yaml"
    exp_cfg.write_text("output_dir: from_yaml\nmask: ${config:MESH_DIR}/m.npy\n"
                       "poses_per_batch: 64\ndevice: cpu\n")
    options = load(exp_cfg, ["poses_per_batch=32", "device=cuda"], {"poses_per_batch": "16"})
    assert str(options.output_dir) == "from_yaml"        # YAML over config.py
    assert str(options.mask) == "meshes/m.npy"            # a YAML value may read config.py
    assert options.device == "cuda"                       # --exp-opts over YAML
    assert options.poses_per_batch == 16                  # flags over --exp-opts
    assert options.fit == TransferOptions().fit           # unset keys: the schema's defaults


def test_show_settings_reads_back_to_the_same_options(tmp_path, capsys):
    options = load(exp_opts=["shard_size=7", "fit.tolerance=0.01", "official.max_iterations=3"])
    saved = tmp_path / "saved.yaml"
    saved.write_text(settings_yaml(options))
    assert load(saved, user_config={}) == options
    assert run_transfer.main(["--show-settings", "--device", "cpu"], USER_CONFIG) == 0
    printed = OmegaConf.create(capsys.readouterr().out)
    assert printed.device == "cpu" and printed.mesh_dir == "meshes"


# ----------------------------------------------------------------- bad keys and values

def test_unknown_key_in_a_yaml_file_is_refused_with_its_new_name(tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text("datasets:\n  mesh_folder:\n    batch_size: 1000\n")  # the official keys
    with pytest.raises(InputError, match="old.yaml: key datasets.*now mesh_dir, shard_size"):
        load(old)
    old.write_text("fit:\n  poses_per_batch: 64\n")
    with pytest.raises(InputError, match="old.yaml: key fit.poses_per_batch.*now poses_per"):
        load(old)
    old.write_text("fit:\n  bacth: 64\n")
    with pytest.raises(InputError, match="old.yaml: key fit.bacth"):
        load(old)


@pytest.mark.parametrize("exp_opts, message", [
    (["fit.bacth_size=3"], "unknown key fit.bacth_size"),
    (["datasets.mesh_folder.batch_size=3"], "unknown key datasets.*now mesh_dir, shard_size"),
    (["fit.device=cpu"], "unknown key fit.device .now device"),
    (["fit=3"], "unknown key fit"),
    (["output_dir"], "key=value"),
    (["=3"], "key=value"),
])
def test_bad_overrides_are_named(exp_opts, message):
    with pytest.raises(InputError, match=message):
        load(exp_opts=exp_opts)


def test_missing_config_py_entry_and_bad_files_are_named(tmp_path):
    reading = tmp_path / "reads.yaml"
    reading.write_text("mask: ${config:NOPE}\n")
    with pytest.raises(InputError, match="config.py has no entry NOPE"):
        load(reading)
    with pytest.raises(InputError, match="nope.yaml"):
        load(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("fit: [unclosed\n")
    with pytest.raises(InputError, match="broken.yaml"):
        load(broken)
    wrong_type = tmp_path / "wrong.yaml"
    wrong_type.write_text("shard_size: many\n")
    with pytest.raises(InputError, match="wrong.yaml: key shard_size"):
        load(wrong_type)


def test_pair_options():
    """The pair selects the transfer and the mask: SMPL <-> SMPL-H reads no deformation
    transfer, and only SMPL-X targets read the (SMPL-X) mask; the target's model is looked
    up by its kind."""
    def options(*exp_opts):
        return load(exp_opts=exp_opts).for_pair()
    default = options()
    assert (default.source_model, default.target_model) == ("smplh", "smplx")
    assert default.mask is not None and default.deformation_transfer is not None
    to_smpl = options("source_model=smplx", "target_model=smpl", "smpl_model=s")
    assert to_smpl.deformation_transfer is not None and to_smpl.mask is None
    assert str(to_smpl.model_path(to_smpl.target_model)) == "s"
    same_mesh = options("source_model=smpl", "target_model=smplh")
    assert same_mesh.deformation_transfer is None and same_mesh.mask is None


def test_fit_preset_and_knob_overrides():
    def fit(*options):
        return load(exp_opts=list(options)).fit

    assert fit() == FitSettings(learned_start=True)           # the default preset: fast
    floor = fit("preset=floor")
    assert (floor.max_iterations, floor.tolerance, floor.fit_vertices) == (100, 1e-6, 0)
    tuned = fit("preset=floor", "fit.max_iterations=7")       # a knob set overrides its preset
    assert (tuned.max_iterations, tuned.tolerance, tuned.fit_vertices) == (7, 1e-6, 0)
    same = fit("preset=floor", "fit.max_iterations=20")       # even to the default's value
    assert (same.max_iterations, same.fit_vertices) == (20, 0)
    with pytest.raises(InputError, match="preset: expected one of fast, floor"):
        fit("preset=slow")
    with pytest.raises(InputError, match="--exp-opts fit.fit_vertices: expected"):
        fit("fit.fit_vertices=1e3")


def test_options_from_exp_opts():
    options = load(exp_opts=["shard_size=100", "shard_index=2", "fit.max_iterations=7",
                             "fit.fit_betas=false", "keep_going=true"],
                   flags={"poses_per_batch": "16"})
    options.check()
    assert (options.shard_size, options.shard_index, options.poses_per_batch) == (100, 2, 16)
    assert options.fit.max_iterations == 7 and options.fit.fit_betas is False
    assert options.keep_going is True


@pytest.mark.parametrize("exp_opts, message", [
    (["from_params=true"], "SMPLH_MODEL .or --smplh-model"),         # SMPLH_MODEL is TODO
    (["poses_per_batch=many"], "poses_per_batch: expected a decimal integer"),
    (["poses_per_batch=0"], "poses_per_batch must be >= 1"),
    (["fit.fit_betas=maybe"], "fit.fit_betas: expected true or false"),
    (["target_model=mano"], "target_model must be one of smpl, smplh, smplx"),
    (["source_model=smplx", "from_params=true", "smplh_model=h.npz"],
     "source model must be smplh"),
    (["target_model=smplh", "fit.num_betas=17", "smplh_model=h"], "between 1 and 16"),
    (["fit.num_betas=16"], "10 betas"),
    (["shard_index=-1"], "shard_index must be >= 0"),
    (["gender=other"], "gender must be one of"),
])
def test_bad_option_values_are_named(exp_opts, message):
    with pytest.raises(InputError, match=message):
        load(exp_opts=exp_opts).check()


def test_every_bad_value_is_listed_at_once():
    with pytest.raises(InputError) as error:
        load(exp_opts=["shard_index=-1", "poses_per_batch=0", "gender=other",
                       "fit.max_iterations=-3"]).check()
    assert str(error.value).splitlines() == [
        "bad settings:", "  shard_index must be >= 0, got -1",
        "  poses_per_batch must be >= 1, got 0", "  fit.max_iterations must be >= 0, got -3",
        "  gender must be one of neutral, male, female, got 'other'"]


def test_command_line_values_are_taken_literally():
    """Issue 9, item 2: YAML 1.1 would read 010 as octal 8 (shard 010 converting shard 8's
    poses) and 0123 as the number 83 (a folder named 83); values are decimal or text, and
    `${...}` typed on the command line is text, not an interpolation."""
    options = load(exp_opts=["shard_size=10", "shard_index=010", "output_dir=0123",
                             "fit.tolerance=1e-4", "mesh_dir=${config:SMPLX_MODEL}"],
                   flags={"smplx_model": "${oc.env:HOME}"})
    assert (options.shard_size, options.shard_index) == (10, 10)
    assert str(options.output_dir) == "0123" and options.fit.tolerance == 1e-4
    assert str(options.mesh_dir) == "${config:SMPLX_MODEL}"
    assert str(options.smplx_model) == "${oc.env:HOME}"


@pytest.mark.parametrize("option", ["shard_index=0x10", "shard_index=1e3", "overwrite=yes",
                                    "overwrite=off", "fit.tolerance=nan"])
def test_non_decimal_and_yaml_booleans_are_refused(option):
    key = option.split("=")[0]
    with pytest.raises(InputError, match=f"--exp-opts {key}: expected"):
        load(exp_opts=[option])


def test_flag_values_are_literal_too():
    args = run_transfer.parse_args(["--shard-index", "010", "--overwrite"])
    options = run_transfer.load_command_settings(TransferOptions, args, run_transfer.FLAGS,
                                                 USER_CONFIG)
    assert options.shard_index == 10 and options.overwrite is True
    args = run_transfer.parse_args(["--shard-index", "0x10"])
    with pytest.raises(InputError, match="--shard-index: expected a decimal integer"):
        run_transfer.load_command_settings(TransferOptions, args, run_transfer.FLAGS,
                                           USER_CONFIG)


def test_extract_settings_from_config_py_and_flags():
    config = {"AMASS_DIR": "a", "POSEFIX_DIR": "f", "POSESCRIPT_DIR": "", "SMPLH_MODEL": "h",
              "MESH_DIR": "m"}
    args = extract_to_obj.parse_args(["--output-format", "params", "--poses-per-batch", "8",
                                      "--ids", "3,1"])
    options = extract_to_obj.options_from_args(args, config)
    assert str(options.amass_dir) == "a" and options.posescript_dir is None   # "": left out
    assert (options.output_format, options.poses_per_batch, options.ids) == ("params", 8, [1, 3])
    old = extract_to_obj.options_from_args(extract_to_obj.parse_args(["--format", "params"]),
                                           config)
    assert old.output_format == "params"          # the spelling before --output-format


def test_config_py_paths_are_literal_too():
    options = load(user_config=dict(USER_CONFIG, MESH_DIR="${oc.env:HOME}/meshes"))
    assert str(options.mesh_dir) == "${oc.env:HOME}/meshes"
