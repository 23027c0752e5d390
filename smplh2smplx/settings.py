"""The settings of every command: one typed schema, its defaults written once.

Each command's settings are one dataclass below (`ExtractOptions` for stage 1,
`TransferOptions` for stage 2, its shape-only mode and its report); its fields, with their
defaults and help (`setting`, `path_setting`), are the schema, read by OmegaConf as a
structured config. `load_settings` fills an instance from, lowest first:

1. the field defaults (the one place a default is written);
2. config.py, for the path fields (`path_setting("NAME")`: config.py's NAME is the default);
3. a YAML file (`--exp-cfg`, e.g. my_smplh2smplx.yaml) holding only what a user changes;
4. `--exp-opts key=value` (dotted keys of the schema) and the command's own flags.

config.py is read as data (literal assignments only), never run. Values typed on the
command line are taken literally and converted by the schema's type of their key
(`parse_value`), never by YAML's rules: `010` is ten, `yes` is no boolean, a path such as
`0123` stays the text `0123`, and `${...}` is text, not an interpolation. Unknown keys are
refused. The official transfer_model's key names exist only in `patches/config.py`.
"""
import ast
import math
import re
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, List, Optional, Sequence, Union

from omegaconf import DictConfig, OmegaConf

from .errors import InputError, below_least, listed
from .family import KINDS, STAGE1_MODEL, same_topology
from .fit.fitter import FIT_PRESETS, FitSettings
from .formats.body_models import GENDERS
from .formats.files import open_regular
from .formats.param_files import betas_problem

REPO_ROOT = Path(__file__).resolve().parent.parent
USER_CONFIG = REPO_ROOT / "config.py"
EXPERIMENT_CONFIG = REPO_ROOT / "my_smplh2smplx.yaml"
UNSET = "TODO"  # what config.py holds for a path the user has not written yet


# ----------------------------------------------------------------- typed values

def parse_value(text: str, kind: type, name: str) -> Any:
    """`text` as a value of `kind` (int, float, bool, str or Path); InputError naming `name`.

    Integers are decimal (`010` is 10; `0x10` and `1e3` are refused), booleans are `true` or
    `false` (any case), floats must be finite, and text is taken as it is.
    """
    text = str(text).strip()
    if kind is int:
        if not re.fullmatch(r"[+-]?[0-9]+", text):
            raise InputError(f"{name}: expected a decimal integer, got {text!r}")
        return int(text, 10)
    if kind is float:
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise InputError(f"{name}: expected a finite number, got {text!r}")
        return number
    if kind is bool:
        if text.lower() not in ("true", "false"):
            raise InputError(f"{name}: expected true or false, got {text!r}")
        return text.lower() == "true"
    if kind is Path:
        return Path(text) if text else None         # "" leaves an optional folder out
    if kind is str:
        return text
    raise InputError(f"{name}: cannot be set from the command line")


# ----------------------------------------------------------------- config.py

def read_user_config(path=USER_CONFIG) -> dict:
    """The upper-case names config.py assigns, as {NAME: value}.

    Only literal assignments (`NAME = "text"`, or `NAME = OTHER` for a name assigned
    before) are read; the file is never executed.
    """
    path = Path(path)
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except FileNotFoundError:
        raise InputError(f"{path}: config file not found") from None
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError) as error:
        raise InputError(f"{path}: cannot be read: {error}") from None
    values = {}
    for statement in tree.body:
        if not (isinstance(statement, ast.Assign) and len(statement.targets) == 1
                and isinstance(statement.targets[0], ast.Name)):
            continue
        name, node = statement.targets[0].id, statement.value
        if not name.isupper():
            continue
        if isinstance(node, ast.Name) and node.id in values:
            values[name] = values[node.id]
        elif isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float)):
            values[name] = node.value
        else:
            raise InputError(f"{path}, line {statement.lineno}: {name} must be a plain value "
                             "such as \"/path/to/folder\"")
    return values


# ----------------------------------------------------------------- the schema

def setting(default, help: str, *, choices=None, factory=None):
    """A field of the schema: its one default, its meaning (shown by --help) and, for text,
    the values it may take."""
    metadata = {"help": help} if choices is None else {"help": help, "choices": choices}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def path_setting(config_name: str, help: str):
    """A path field whose default is config.py's `config_name` (None until it is written)."""
    return field(default=None, metadata={"help": help, "config": config_name})


def is_unset(path) -> bool:
    """A path nobody gave: None, or config.py's TODO."""
    return path is None or str(path) == UNSET


def _as_path(value):
    """A path field's value as a Path; None and "" stay None (nothing given)."""
    return None if value in (None, "") else Path(value).expanduser()


def _refuse(problems: list) -> None:
    """InputError listing `problems` (settings out of range), if there are any."""
    if problems:
        raise InputError("bad settings:" + listed(problems))


def _missing_paths(options, names):
    """InputError listing the fields of `names` that are unset, with where to set each."""
    unset = [entry for entry in fields(options) if entry.name in names
             and is_unset(getattr(options, entry.name))]
    if unset:
        raise InputError(f"paths not set yet (write them in {USER_CONFIG}, or give the flags):"
                         + listed(f"{entry.metadata['config']} (or --"
                                  f"{entry.name.replace('_', '-')})" for entry in unset))


# ----------------------------------------------------------------- stage 1

OUTPUT_FORMATS = ("obj", "params")
BODY_MODELS = ("amass", "smplx")


@dataclass
class ExtractOptions:
    """Everything a stage-1 run (extract_to_obj.py) needs.

    With explicit `ids` or `all_poses` one of the PoseFix and PoseScript folders is enough
    (for the id mapping); posescript_dir "" in config.py leaves PoseScript-H out.
    """
    amass_dir: Optional[Path] = path_setting(
        "AMASS_DIR", "AMASS SMPL-H root, holding CMU/, BMLrub/, ...")
    posefix_dir: Optional[Path] = path_setting("POSEFIX_DIR", "PoseFix release folder")
    posescript_dir: Optional[Path] = path_setting(
        "POSESCRIPT_DIR", 'PoseScript release folder; "" leaves PoseScript-H out')
    smplh_model: Optional[Path] = path_setting("SMPLH_MODEL", "SMPL-H model file or folder")
    output_dir: Optional[Path] = path_setting(
        "MESH_DIR", "where <pose_id:06d>.obj and source_params.npz are written")
    ids: Optional[List[int]] = setting(
        None, "these pose ids instead of PoseFix-H + PoseScript-H")
    all_poses: bool = setting(False, "every pose of the 100k id mapping")
    output_format: str = setting(
        "obj", "obj: meshes and source_params.npz; params: source_params.npz only",
        choices=OUTPUT_FORMATS)
    body_model: str = setting(
        "amass", "amass: AMASS-codebase semantics (any SMPL-H file); smplx: the smplx "
        "package on a SMPLH_NEUTRAL.pkl/.npz (the same vertices)", choices=BODY_MODELS)
    poses_per_batch: int = setting(128, "poses processed at once (memory grows with it)")
    overwrite: bool = setting(False, "convert again inputs whose output already exists")
    keep_going: bool = setting(
        False, "a bad input fails alone and is listed at the end (exit 1); without it the "
        "first bad input stops the run (exit 2)")

    def __post_init__(self):
        for name in ("amass_dir", "posefix_dir", "posescript_dir", "smplh_model",
                     "output_dir"):
            setattr(self, name, _as_path(getattr(self, name)))
        if self.ids is not None:
            self.ids = sorted({int(pose_id) for pose_id in self.ids})

    def check(self) -> None:
        """Raise InputError for an unset or missing folder, or listing every value out of
        range (one per line)."""
        problems = []
        if self.output_format not in OUTPUT_FORMATS:
            problems.append(f"output format must be one of {OUTPUT_FORMATS}, got "
                            f"{self.output_format!r}")
        if self.body_model not in BODY_MODELS:
            problems.append(f"body model must be one of {BODY_MODELS}, got "
                            f"{self.body_model!r}")
        if self.poses_per_batch < 1:
            problems.append(f"poses_per_batch must be >= 1, got {self.poses_per_batch}")
        _refuse(problems)
        mapping = [name for name in ("posefix_dir", "posescript_dir")
                   if str(getattr(self, name)) == UNSET]        # None: left out on purpose
        if (self.ids is not None or self.all_poses) and len(mapping) < 2:
            for name in mapping:        # one folder is enough for the id mapping
                setattr(self, name, None)
            mapping = []
        _missing_paths(self, ["amass_dir", "smplh_model", "output_dir", *mapping])
        for name, folder in [("AMASS", self.amass_dir), ("PoseFix", self.posefix_dir),
                             ("PoseScript", self.posescript_dir)]:
            if folder is not None and not folder.is_dir():
                raise InputError(f"{folder}: {name} folder not found")


# ----------------------------------------------------------------- stage 2

MODES = ("transfer", "shape", "report")


@dataclass(frozen=True)
class OfficialSettings:
    """The official transfer_model's own knobs (--engine official only); patches/config.py
    gives them their official names."""
    optimizer: str = setting("trust-ncg", "optimiser (official: optim.type)")
    max_iterations: int = setting(
        100, "iterations per optimisation stage (official: optim.maxiters)")
    gradient_tolerance: float = setting(
        1e-6, "gradient norm that ends a stage (official: optim.gtol)")
    per_part_edges: bool = setting(
        False, "fit the mesh edges part by part first (official: edge_fitting.per_part)")
    meshes_per_batch: int = setting(
        1, "meshes optimised together; the published code needs 1 (official: batch_size)")
    face_contour: bool = setting(
        True, "face contour landmarks in the joints (official: body_model.use_face_contour)")


@dataclass(frozen=True)
class TransferOptions:
    """Everything stage 2 (run_transfer.py) needs: the transfer, the shape-only mode and the
    report. The model path of a kind is `model_path(kind)`: smpl_model, smplh_model or
    smplx_model."""
    mesh_dir: Optional[Path] = path_setting(
        "MESH_DIR", "stage-1 folder: <pose_id:06d>.obj/.ply meshes and source_params.npz")
    output_dir: Optional[Path] = path_setting(
        "SMPLX_OUTPUT_DIR", "where <pose_id:06d>.pkl and errors.csv are written")
    smpl_model: Optional[Path] = path_setting("SMPL_MODEL", "SMPL model file or folder")
    smplh_model: Optional[Path] = path_setting("SMPLH_MODEL", "SMPL-H model file or folder")
    smplx_model: Optional[Path] = path_setting("SMPLX_MODEL", "SMPL-X model file or folder")
    deformation_transfer: Optional[Path] = path_setting(
        "DEFTRAFO_PATH", "the official <source>2<target> deformation transfer setup, or the "
        "folder of the official files (not read for SMPL <-> SMPL-H, which share one mesh)")
    mask: Optional[Path] = path_setting(
        "MASK_IDS_PATH", "SMPL-X vertex ids with a valid correspondence (SMPL-X targets "
        "only; others use every vertex)")
    source_model: str = setting("smplh", "model of the input meshes", choices=tuple(KINDS))
    target_model: str = setting("smplx", "model fitted and written", choices=tuple(KINDS))
    gender: str = setting("neutral", "gender of the target's model", choices=tuple(GENDERS))
    # The run's flags, shared by every command that converts (cli.RUN_FLAGS): their help
    # speaks of inputs (meshes here, motion files in convert_sequences.py).
    shard_size: int = setting(0, "inputs per shard of the sorted input list; 0: all")
    shard_index: int = setting(0, "the shard this run converts, 0-based")
    overwrite: bool = setting(False, "convert again inputs whose output already exists")
    keep_going: bool = setting(
        False, "a bad input fails alone and is listed at the end (exit 1); without it the "
        "first bad input stops the run (exit 2)")
    poses_per_batch: int = setting(512, "poses processed at once (memory grows with it)")
    device: str = setting("auto", "cpu, cuda, cuda:N or auto (cuda when available)")
    flag_threshold_mm: float = setting(
        15.0, "errors.csv flags a pose whose v2v_mean_mm exceeds this")
    from_params: bool = setting(
        False, "pose SMPL-H from source_params.npz instead of reading meshes (SMPL-H "
        "sources; needs smplh_model)")
    preset: str = setting(
        "fast", "named setting of the fit (fit/fitter.py FIT_PRESETS): fast, within 1% of "
        "the error floor at the most poses per second; floor, the lowest error the fit "
        "reaches, several times slower. The fit.* keys given override it",
        choices=tuple(FIT_PRESETS))
    fit: FitSettings = setting(None, "our fitter's knobs (smplh2smplx/fit/fitter.py); "
                               "their defaults are the preset's",
                               factory=lambda: FIT_PRESETS["fast"])
    official: OfficialSettings = setting(None, "the official engine's knobs",
                                         factory=OfficialSettings)

    def __post_init__(self):
        for entry in fields(self):
            if "config" in entry.metadata:
                object.__setattr__(self, entry.name, _as_path(getattr(self, entry.name)))

    def model_path(self, kind: str) -> Optional[Path]:
        """The model file or folder of `kind` ("smpl", "smplh" or "smplx")."""
        return getattr(self, f"{kind}_model")

    def needed_paths(self, mode: str = "transfer") -> list:
        """The path fields a run in `mode` reads."""
        pair = [f"{self.target_model}_model"]
        if not same_topology(self.source_model, self.target_model):
            pair.append("deformation_transfer")
        if KINDS[self.target_model].uses_mask:
            pair.append("mask")
        if mode == "shape":
            return [f"{self.source_model}_model"] + pair
        if mode == "report":
            return ["mesh_dir", "output_dir"] + pair
        return (["mesh_dir", "output_dir"] + pair
                + ([f"{STAGE1_MODEL.name}_model"] if self.from_params else []))

    def for_pair(self) -> "TransferOptions":
        """These options without the files the pair does not read (the transfer of SMPL <->
        SMPL-H, the mask of non-SMPL-X targets)."""
        return replace(
            self, deformation_transfer=(None if same_topology(self.source_model,
                                                             self.target_model)
                                        else self.deformation_transfer),
            mask=self.mask if KINDS[self.target_model].uses_mask else None)

    def check(self, mode: str = "transfer"):
        """Raise InputError for an unset path `mode` needs, or listing every value out of
        range (one per line)."""
        problems = []
        for name, kind in (("source_model", self.source_model),
                           ("target_model", self.target_model)):
            if kind not in KINDS:
                problems.append(f"{name} must be one of {', '.join(KINDS)}, got {kind!r}")
        if mode not in MODES:
            problems.append(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        problems += below_least((("shard_size", self.shard_size, 0),
                                 ("shard_index", self.shard_index, 0),
                                 ("poses_per_batch", self.poses_per_batch, 1)))
        problems += self.fit.problems("fit.")
        if self.gender not in GENDERS:
            problems.append(f"gender must be one of {', '.join(GENDERS)}, got "
                            f"{self.gender!r}")
        if (self.target_model in KINDS and isinstance(self.fit.num_betas, int)
                and betas_problem(self.target_model, self.fit.num_betas)):
            exact, most = KINDS[self.target_model].betas
            wanted = f"{exact}" if exact else f"between 1 and {most}"
            problems.append(f"fit.num_betas: the {KINDS[self.target_model].label} output "
                            f"holds {wanted} betas, got {self.fit.num_betas}")
        if self.from_params and self.source_model != STAGE1_MODEL.name:
            problems.append(f"from_params poses {STAGE1_MODEL.label} from source_params.npz: "
                            f"the source model must be {STAGE1_MODEL.name}, got "
                            f"{self.source_model}")
        _refuse(problems)
        _missing_paths(self, self.needed_paths(mode))


# ----------------------------------------------------------------- loading

def setting_types(schema) -> dict:
    """{dotted key: type} of every leaf of a schema dataclass (Optional[X] gives X)."""
    types = {}
    for entry in fields(schema):
        kind = typing.get_type_hints(schema)[entry.name]
        if typing.get_origin(kind) is typing.Union:
            kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
        if is_dataclass(kind):
            types.update({f"{entry.name}.{key}": value
                          for key, value in setting_types(kind).items()})
        else:
            types[entry.name] = kind
    return types


def setting_defaults(schema) -> dict:
    """{dotted key: default} of every leaf of a schema dataclass (a path: None)."""
    return dict(_walk(OmegaConf.to_container(OmegaConf.structured(schema)), ""))


def load_settings(schema: type, exp_cfg: Optional[Union[str, Path]] = None,
                  exp_opts: Sequence[str] = (), flags: Optional[dict] = None,
                  user_config: object = None) -> object:
    """An instance of `schema` (`ExtractOptions` or `TransferOptions`), not yet checked.

    Args:
        schema: the options dataclass.
        exp_cfg: a YAML file of the schema's keys (their values override the defaults and
            config.py; `${config:NAME}` reads config.py's NAME), or None.
        exp_opts: dotted overrides, `["shard_index=3", "fit.max_iterations=7"]`.
        flags: {dotted key: text} from the command's flags; applied last.
        user_config: {NAME: value} standing for config.py; None reads config.py.
    Raises:
        InputError for an unreadable file, an unknown key, a malformed override or a value
        of the wrong type, each naming where it came from.
    """
    if user_config is None:
        user_config = read_user_config()
    # config.py's "" is a path left out on purpose (POSESCRIPT_DIR), TODO one not set yet.
    from_config_py = {entry.name: _literal(user_config[entry.metadata["config"]]) or None
                      for entry in fields(schema) if "config" in entry.metadata
                      and entry.metadata["config"] in user_config}
    layers = [(from_config_py, USER_CONFIG.name)]
    if exp_cfg is not None:
        layers.append((_read_yaml(exp_cfg), exp_cfg))
    types = setting_types(schema)
    typed = {}
    for option in exp_opts:
        key, sep, text = option.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError(f"--exp-opts: '{option}' is not of the form key=value")
        if key not in types:
            raise InputError(f"--exp-opts: unknown key {key}{_renamed_hint(key)}")
        typed[key] = parse_value(text, types[key], f"--exp-opts {key}")
    for key, text in (flags or {}).items():
        flag = "--" + key.replace("_", "-")
        typed[key] = parse_value(text, types[key], flag)      # an unknown key is a bug
    command_line = {}
    for key, value in typed.items():
        if isinstance(value, (str, Path)):
            value = _literal(value)
        *sections, name = key.split(".")
        node = command_line
        for section in sections:
            node = node.setdefault(section, {})
        node[name] = value
    layers.append((command_line, "the command line"))
    config = _layered(OmegaConf.structured(schema), layers)
    if "preset" in config:
        # The preset's fit values lie under every layer: a fit.* key given anywhere wins.
        if config.preset not in FIT_PRESETS:
            raise InputError(f"setting preset: expected one of {', '.join(FIT_PRESETS)}, got "
                             f"{config.preset!r}")
        base = _merge(OmegaConf.structured(schema),
                      {"fit": asdict(FIT_PRESETS[config.preset])}, "the preset")
        config = _layered(base, layers)
    return _to_options(config, user_config)


def _layered(config, layers):
    """`config` with each (values, origin) of `layers` merged on top, in order."""
    for values, origin in layers:
        config = _merge(config, values, origin)
    return config


def _literal(value) -> str:
    """`value` as text that OmegaConf reads back as it is: each `${` escaped as `\\${`, and
    the backslashes already before it doubled (OmegaConf reads `\\\\${` as `\\` + `${`)."""
    return re.sub(r"(\\*)\$\{", lambda match: match.group(1) * 2 + "\\${", str(value))


def _first_line(error):
    return (str(getattr(error, "msg", None) or error) or type(error).__name__).splitlines()[0]


def _read_yaml(path):
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: config file not found")
    try:
        with open_regular(path, "r", max_bytes=1 << 20, encoding="utf-8") as handle:
            config = OmegaConf.load(handle)          # a settings file is a few kB
    except InputError:
        raise
    except Exception as error:           # YAML syntax errors come in several types
        raise InputError(f"{path}: not a readable YAML config: {error}") from None
    if not isinstance(config, DictConfig):
        raise InputError(f"{path}: expected a mapping of keys at the top level")
    return config


def _merge(config, overrides, origin):
    """OmegaConf.merge into the schema, with an error naming `origin` and the key for an
    unknown key or a value of the wrong type."""
    try:
        return OmegaConf.merge(config, overrides)
    except Exception as error:          # OmegaConf raises several kinds
        key = getattr(error, "full_key", None)
        raise InputError(f"{origin}: {'key ' + key + ': ' if key else ''}"
                         f"{_first_line(error)}{_renamed_hint(key or '')}") from None


def _renamed_hint(key):
    """Where an old or official key went, e.g. " (now shard_size: ...)"; "" if unknown."""
    renamed = _RENAMED.get(key) or _RENAMED.get(key.split(".")[0])
    return f" (now {renamed}: see docs/ARCHITECTURE.md, Settings)" if renamed else ""


def _to_options(config, user_config):
    """The options dataclass of `config`, its `${config:NAME}` entries (from a YAML file)
    read from config.py's entries."""
    missing = []

    def from_user_config(name):
        if name not in user_config:
            missing.append(name)
            return None
        value = user_config[name]
        return None if value == "" else str(value)

    _register_resolver("config", from_user_config)
    try:
        options = OmegaConf.to_object(config)
    except Exception as error:          # an interpolation to a key that does not exist
        if missing:
            raise InputError(f"config.py has no entry {missing[0]} (asked for by "
                             f"${{config:{missing[0]}}} in the YAML config)") from None
        raise InputError(f"setting {getattr(error, 'full_key', '?')}: "
                         f"{_first_line(error)}") from None
    finally:
        OmegaConf.clear_resolver("config")
    if missing:
        raise InputError(f"config.py has no entry {missing[0]} (asked for by "
                         f"${{config:{missing[0]}}} in the YAML config)")
    return options


def _register_resolver(name, function):
    """OmegaConf >= 2.4 names it register_resolver; 2.3 register_new_resolver (its
    register_resolver is the legacy one)."""
    if hasattr(OmegaConf, "legacy_register_resolver"):
        OmegaConf.register_resolver(name, function, replace=True)
    else:
        OmegaConf.register_new_resolver(name, function, replace=True)


def _walk(node, prefix):
    for key, value in node.items():
        if isinstance(value, dict):
            yield from _walk(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


# The keys of the official transfer_model config and of this project's older
# my_smplh2smplx.yaml, with the key that replaced each: a file still using one is refused
# with its new name.
_RENAMED = {
    "datasets": "mesh_dir, shard_size and shard_index",
    "output_folder": "output_dir",
    "deformation_transfer_path": "deformation_transfer",
    "mask_ids_fname": "mask",
    "body_model": "target_model, gender, smplx_model (or smpl_model, smplh_model) and "
                  "fit.num_betas",
    "optim": "official.optimizer, official.max_iterations, official.gradient_tolerance",
    "edge_fitting": "official.per_part_edges",
    "batch_size": "official.meshes_per_batch (shards: shard_size)",
    "fit.source_model": "source_model",
    "fit.poses_per_batch": "poses_per_batch",
    "fit.device": "device",
    "fit.flag_threshold_mm": "flag_threshold_mm",
    "fit.from_params": "from_params",
    "fit.smplh_model": "smplh_model",
}
