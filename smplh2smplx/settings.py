"""The settings of both stages: one typed schema, read from config.py, YAML and flags.

- `config.py` holds the user's paths. It is read as data (literal assignments only), never
  run, so a stray statement in it cannot do anything.
- Stage 1 (`ExtractOptions`) takes its paths from config.py, overridden by flags.
- Stage 2 (`TransferOptions`) reads `my_smplh2smplx.yaml` (the official transfer_model keys
  plus our `fit` section) with OmegaConf; its path entries are `${config:NAME}`
  interpolations of config.py, so every path is written once. Precedence, lowest first:
  config.py, the shipped YAML, the file given with --exp-cfg, --exp-opts, dedicated flags.

Values typed on the command line are taken literally and converted by the schema's type of
their entry (`parse_value`), never by YAML's rules: `010` is ten (YAML 1.1 reads it as octal
eight), `yes` is no boolean, and a path such as `0123` stays the text `0123`.
"""
import ast
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .errors import InputError
from .fit.fitter import FIT_PRESETS, FitSettings, preset_settings
from .formats.body_models import GENDERS
from .family import KINDS, same_topology
from .formats import smpl_params, smplx_params

REPO_ROOT = Path(__file__).resolve().parent.parent
USER_CONFIG = REPO_ROOT / "config.py"
EXPERIMENT_CONFIG = REPO_ROOT / "my_smplh2smplx.yaml"
UNSET = "TODO"  # what config.py holds for a path the user has not written yet


# ----------------------------------------------------------------- typed values

def parse_value(text, kind, name):
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
    return kind(text)


def _typed(value, kind, name):
    """A YAML value checked against `kind` (YAML already typed it); text goes through
    `parse_value`."""
    if value is None:
        raise InputError(f"{name} is empty")
    if isinstance(value, str):
        return parse_value(value, kind, name)
    if kind is bool and isinstance(value, bool):
        return value
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return parse_value(value, float, name)
    raise InputError(f"{name}: expected {kind.__name__}, got {value!r}")


# ----------------------------------------------------------------- config.py

def read_user_config(path=USER_CONFIG):
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


# ----------------------------------------------------------------- stage 1

OUTPUT_FORMATS = ("obj", "params")
BODY_MODELS = ("amass", "smplx")


@dataclass
class ExtractOptions:
    """Everything a stage-1 run needs.

    amass_dir: AMASS SMPL-H root (holding CMU/, BMLrub/, ...).
    posefix_dir, posescript_dir: release folders; posescript_dir None or "" leaves
        PoseScript-H out. The id mapping is read from the first that has it.
    smplh_model: SMPL-H model file or folder (see formats.body_models.load_body_model).
    output_dir: where `<pose_id:06d>.obj` and source_params.npz go.
    ids: explicit pose ids instead of PoseFix-H + PoseScript-H; all_poses: every id of
        the mapping instead.
    output_format: "obj" (meshes and source_params.npz) or "params" (source_params.npz only).
    body_model: "amass" (AMASS-codebase semantics: 16 zero betas, zero translation, no
        hand mean) or "smplx" (smplx.create on a smplx-codebase SMPLH file); same vertices.
    poses_per_batch: poses posed at once; overwrite: redo poses already written;
    keep_going: set bad ids aside (listed in the summary) instead of stopping.
    """
    amass_dir: Path
    posefix_dir: Path
    smplh_model: Path
    output_dir: Path
    posescript_dir: Path = None
    ids: list = None
    all_poses: bool = False
    output_format: str = "obj"
    body_model: str = "amass"
    poses_per_batch: int = 128
    overwrite: bool = False
    keep_going: bool = False

    def __post_init__(self):
        def as_path(value):
            return Path(value).expanduser() if value not in (None, "") else None

        self.amass_dir, self.posefix_dir, self.posescript_dir, self.smplh_model, \
            self.output_dir = map(as_path, (self.amass_dir, self.posefix_dir,
                                            self.posescript_dir, self.smplh_model,
                                            self.output_dir))
        if self.ids is not None:
            self.ids = sorted({int(pose_id) for pose_id in self.ids})

    def check(self):
        """Raise InputError for a missing folder or a value out of range."""
        if self.output_format not in OUTPUT_FORMATS:
            raise InputError(f"output format must be one of {OUTPUT_FORMATS}, got "
                             f"{self.output_format!r}")
        if self.body_model not in BODY_MODELS:
            raise InputError(f"body model must be one of {BODY_MODELS}, got "
                             f"{self.body_model!r}")
        if self.poses_per_batch < 1:
            raise InputError(f"poses per batch must be >= 1, got {self.poses_per_batch}")
        if None in (self.amass_dir, self.smplh_model, self.output_dir):
            raise InputError("the AMASS folder, the SMPL-H model and the output folder must "
                             "be given")
        for name, folder in [("AMASS", self.amass_dir), ("PoseFix", self.posefix_dir),
                             ("PoseScript", self.posescript_dir)]:
            if folder is not None and not folder.is_dir():
                raise InputError(f"{folder}: {name} folder not found")


# ----------------------------------------------------------------- stage 2

# Betas an output file holds, per target: (exact count or 0, most). The SMPL-X contract
# and the SMPL model files hold 10; SMPL-H files up to 16.
TARGET_BETAS = {"smpl": (smpl_params.NUM_BETAS, smpl_params.NUM_BETAS),
                "smplh": (0, 16),
                "smplx": (smplx_params.NUM_BETAS, smplx_params.NUM_BETAS)}

# The path entries of the stage-2 config every pair needs (and deformation_transfer_path
# unless SMPL <-> SMPL-H, mask_ids_fname for SMPL-X targets, fit.smplh_model with from_params).
PATH_KEYS = ("datasets.mesh_folder.data_folder", "output_folder", "body_model.folder")

@dataclass(frozen=True)
class TransferOptions:
    """Everything a stage-2 run needs (see my_smplh2smplx.yaml for each entry's meaning).

    mesh_dir: stage-1 folder (meshes and source_params.npz); output_dir: where .pkl go.
    source_model, target_model: the model kinds of the pair ("smpl", "smplh", "smplx");
        the meshes are the source's, the .pkl files the target's parameters.
    target_model_path: the target model file, or a folder holding it (e.g.
        smplx/SMPLX_<GENDER>.npz).
    deftrafo_path: the source-to-target deformation transfer setup (None for SMPL and
        SMPL-H, which share one mesh); mask_path: the valid target vertex ids (the SMPL-X
        mask; None: every vertex).
    shard_size, shard_index: the slice of the sorted input list (shard_size 0: all); in
        the YAML the official keys datasets.mesh_folder.batch_size and batch_index.
    poses_per_batch: poses fitted at once; device: "cpu", "cuda", "cuda:N" or "auto".
    flag_threshold_mm: poses whose v2v_mean_mm exceeds it are flagged in errors.csv.
    from_params: pose SMPL-H from source_params.npz instead of reading meshes (SMPL-H
        sources only); smplh_model: the SMPL-H model used then.
    """
    mesh_dir: Path
    output_dir: Path
    target_model_path: Path
    deftrafo_path: Path = None
    mask_path: Path = None
    gender: str = "neutral"
    source_model: str = "smplh"
    target_model: str = "smplx"
    shard_size: int = 0
    shard_index: int = 0
    overwrite: bool = False
    poses_per_batch: int = 512
    device: str = "auto"
    fit: FitSettings = field(default_factory=lambda: FIT_PRESETS["fast"])
    flag_threshold_mm: float = 15.0
    from_params: bool = False
    smplh_model: Path = None

    @classmethod
    def from_config(cls, config):
        """Options from a resolved stage-2 configuration (`load_experiment_config`)."""
        def value(key, kind):
            node = config
            for part in key.split("."):
                try:
                    node = node[part]
                except Exception:       # a section replaced by a scalar or left empty
                    raise InputError(f"config entry {key} is missing: its section "
                                     f"{key.rpartition('.')[0] or key} is not a mapping "
                                     "of entries") from None
            return _typed(node, kind, f"config entry {key}")

        def path(key):
            text = value(key, str)
            if text.strip() in ("", UNSET):
                raise InputError(f"config entry {key} is not set: write its path in config.py "
                                 f"or give --exp-opts {key}=PATH")
            return Path(text).expanduser()

        source, target = value("fit.source_model", str), value("body_model.model_type", str)
        for key, kind in (("fit.source_model", source), ("body_model.model_type", target)):
            if kind not in KINDS:
                raise InputError(f"config entry {key}: expected one of {', '.join(KINDS)}, got "
                                 f"{kind!r}")
        needed = (PATH_KEYS
                  + (() if same_topology(source, target) else ("deformation_transfer_path",))
                  + (("mask_ids_fname",) if target == "smplx" else ())
                  + (("fit.smplh_model",) if value("fit.from_params", bool) else ()))
        unset = [key for key in needed if value(key, str).strip() in ("", UNSET)]
        if len(unset) == 1:
            raise InputError(f"config entry {unset[0]} is not set: write its path in config.py "
                             f"or give --exp-opts {unset[0]}=PATH")
        if unset:
            raise InputError(f"config entries {', '.join(unset)} are not set: write their "
                             "paths in config.py or give --exp-opts KEY=PATH for each")
        num_betas = value(f"body_model.{target}.betas.num", int)
        preset = value("fit.preset", str)
        if preset not in FIT_PRESETS:
            raise InputError(f"config entry fit.preset: expected one of "
                             f"{', '.join(FIT_PRESETS)}, got {preset!r}")
        # A knob left out or null takes the preset's value.
        knobs = {entry.name: value(f"fit.{entry.name}", entry.type)
                 for entry in fields(FitSettings) if entry.name != "num_betas"
                 and config.get("fit", {}).get(entry.name) is not None}
        fit = preset_settings(preset, num_betas=num_betas, **knobs)
        from_params = value("fit.from_params", bool)
        options = cls(
            mesh_dir=path("datasets.mesh_folder.data_folder"),
            output_dir=path("output_folder"),
            target_model_path=path("body_model.folder"),
            # SMPL and SMPL-H share one mesh: no deformation transfer to read.
            deftrafo_path=(None if same_topology(source, target)
                           else path("deformation_transfer_path")),
            # The mask of the config is SMPL-X's: other targets use every vertex.
            mask_path=path("mask_ids_fname") if target == "smplx" else None,
            gender=value("body_model.gender", str),
            source_model=source,
            target_model=target,
            shard_size=value("datasets.mesh_folder.batch_size", int),
            shard_index=value("datasets.mesh_folder.batch_index", int),
            overwrite=value("overwrite", bool),
            poses_per_batch=value("fit.poses_per_batch", int),
            device=value("fit.device", str),
            fit=fit,
            flag_threshold_mm=value("fit.flag_threshold_mm", float),
            from_params=from_params,
            smplh_model=path("fit.smplh_model") if from_params else None)
        options.check()
        return options

    def check(self):
        """Raise InputError for values out of range."""
        if self.shard_size < 0 or self.shard_index < 0:
            raise InputError("datasets.mesh_folder.batch_size and batch_index must be >= 0, got "
                             f"{self.shard_size} and {self.shard_index}")
        if self.poses_per_batch < 1:
            raise InputError(f"fit.poses_per_batch must be >= 1, got {self.poses_per_batch}")
        if self.gender not in GENDERS:
            raise InputError(f"body_model.gender must be one of {', '.join(GENDERS)}, got "
                             f"{self.gender!r}")
        for name, kind in (("source", self.source_model), ("target", self.target_model)):
            if kind not in KINDS:
                raise InputError(f"{name} model must be one of {', '.join(KINDS)}, got {kind!r}")
        betas_limit = TARGET_BETAS[self.target_model]
        if not 1 <= self.fit.num_betas <= betas_limit[1] or (
                betas_limit[0] and self.fit.num_betas != betas_limit[0]):
            wanted = (f"{betas_limit[0]}" if betas_limit[0]
                      else f"between 1 and {betas_limit[1]}")
            raise InputError(f"config entry body_model.{self.target_model}.betas.num: the "
                             f"{KINDS[self.target_model].label} output holds {wanted} betas, "
                             f"got {self.fit.num_betas}")
        if self.deftrafo_path is None and not same_topology(self.source_model,
                                                            self.target_model):
            raise InputError(f"{KINDS[self.source_model].label} to "
                             f"{KINDS[self.target_model].label} needs a deformation transfer "
                             "(deformation_transfer_path)")
        if self.from_params and self.source_model != "smplh":
            raise InputError("from_params poses SMPL-H from source_params.npz: the source "
                             f"model must be smplh, got {self.source_model}")
        if self.from_params and self.smplh_model is None:
            raise InputError("from_params needs the SMPL-H model (--smplh-model or config.py)")
        if self.fit.max_iterations < 0 or self.fit.refine_iterations < 0:
            raise InputError("fit.max_iterations and fit.refine_iterations must be >= 0")
        if not 0.0 < self.fit.tolerance < 1.0:      # a fraction of the loss; NaN fails too
            raise InputError(f"fit.tolerance must be a fraction between 0 and 1 (exclusive), "
                             f"got {self.fit.tolerance}")
        if self.fit.fit_vertices < 0:
            raise InputError(f"fit.fit_vertices must be >= 0 (0: the whole mask), got "
                             f"{self.fit.fit_vertices}")


@dataclass(frozen=True)
class ShapeOptions:
    """A shape-only conversion: betas of the source model -> betas of the target model.

    source_model, target_model: model kinds; source_model_path, target_model_path: their
    files or folders; deftrafo_path, mask_path: as in `TransferOptions`; num_betas: target
    betas fitted.
    """
    source_model: str
    target_model: str
    source_model_path: Path
    target_model_path: Path
    deftrafo_path: Path = None
    mask_path: Path = None
    gender: str = "neutral"
    num_betas: int = 10

    @classmethod
    def from_config(cls, config, source_model_path=None):
        """Options from a resolved stage-2 configuration; the source model's file or folder
        is `source_model_path`, else fit.smplh_model for SMPL-H sources."""
        def text(key):
            return str(OmegaConf.select(config, key, default="") or "").strip()

        def path(key):
            if text(key) in ("", UNSET):
                raise InputError(f"config entry {key} is not set: write its path in config.py "
                                 f"or give --exp-opts {key}=PATH")
            return Path(text(key)).expanduser()

        source, target = text("fit.source_model"), text("body_model.model_type")
        for key, kind in (("fit.source_model", source), ("body_model.model_type", target)):
            if kind not in KINDS:
                raise InputError(f"config entry {key}: expected one of {', '.join(KINDS)}, got "
                                 f"{kind!r}")
        if source_model_path is None:
            if source != "smplh":
                raise InputError(f"the shape of a {KINDS[source].label} source needs its model "
                                 "(--source-body-model PATH)")
            source_model_path = path("fit.smplh_model")
        return cls(source_model=source, target_model=target,
                   source_model_path=Path(source_model_path).expanduser(),
                   target_model_path=path("body_model.folder"),
                   deftrafo_path=(None if same_topology(source, target)
                                  else path("deformation_transfer_path")),
                   mask_path=path("mask_ids_fname") if target == "smplx" else None,
                   gender=_typed(config.body_model.gender, str, "body_model.gender"),
                   num_betas=_typed(OmegaConf.select(config, f"body_model.{target}.betas.num"),
                                    int, f"body_model.{target}.betas.num"))


def _read_yaml(path):
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: config file not found")
    try:
        config = OmegaConf.load(path)
    except Exception as error:           # YAML syntax errors come in several types
        raise InputError(f"{path}: not a readable YAML config: {error}") from None
    if not isinstance(config, DictConfig):
        raise InputError(f"{path}: expected a mapping of keys at the top level")
    return config


def _kind_of(config, key):
    """The type an entry's value must have: that of the value the shipped file gives it
    (a fit knob left null there, to take its preset's value: its `FitSettings` type)."""
    current = OmegaConf.select(config, key, throw_on_missing=False,
                               throw_on_resolution_failure=False)
    knob_types = {f"fit.{entry.name}": entry.type for entry in fields(FitSettings)}
    if current is None and key in knob_types:
        return knob_types[key]
    if isinstance(current, bool):
        return bool
    if isinstance(current, int):
        return int
    if isinstance(current, float):
        return float
    return str


def load_experiment_config(exp_cfg=None, exp_opts=(), flags=None, user_config=None):
    """The resolved stage-2 configuration.

    Args:
        exp_cfg: a YAML file in the my_smplh2smplx.yaml schema (an official transfer_model
            config works too); its entries override the shipped my_smplh2smplx.yaml, which
            gives every key a default. None: the shipped file alone.
        exp_opts: dotted overrides, `["datasets.mesh_folder.batch_index=3", ...]`; a key the
            configuration does not have is an error (typos must not pass silently), and a
            value is converted to its entry's type by `parse_value`.
        flags: {dotted key: value} from dedicated command-line flags; applied last.
        user_config: mapping NAME -> value behind `${config:NAME}`; None reads config.py.
    Returns:
        an OmegaConf DictConfig with every interpolation resolved.
    Raises:
        InputError for an unreadable file, a malformed or unknown override, a value of the
        wrong type, or a `${config:NAME}` with no such entry.
    """
    if user_config is None:
        user_config = read_user_config()
    config = _read_yaml(EXPERIMENT_CONFIG)
    if exp_cfg is not None and Path(exp_cfg).resolve() != EXPERIMENT_CONFIG:
        mine = _read_yaml(exp_cfg)
        # Official sections may carry keys of the official tool; our own must be known.
        ours = set(_dotted_keys(config))
        unknown = sorted(key for key in _dotted_keys(mine)
                         if key.startswith("fit.") and key not in ours)
        if unknown:
            raise InputError(f"{exp_cfg}: unknown key(s) {', '.join(unknown)} (the fit "
                             f"section's keys are those of {EXPERIMENT_CONFIG.name})")
        config = _merge(config, mine, exp_cfg)
    known = set(_dotted_keys(config))
    for option in exp_opts:
        key, sep, text = option.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError(f"--exp-opts: '{option}' is not of the form key=value")
        if key not in known:
            raise InputError(f"--exp-opts: unknown key {key}")
        OmegaConf.update(config, key, parse_value(text, _kind_of(config, key),
                                                  f"--exp-opts {key}"))
    for key, value in (flags or {}).items():
        if key not in known:
            raise ValueError(f"flag for unknown config entry {key}")     # a bug, not input
        OmegaConf.update(config, key, value)
    missing = []

    def from_user_config(name):
        if name not in user_config:
            missing.append(name)
        return user_config.get(name)

    _register_resolver("config", from_user_config)
    try:
        OmegaConf.resolve(config)
    except Exception as error:          # e.g. an interpolation to a key that does not exist
        message = str(getattr(error, "msg", error)).splitlines()[0]
        raise InputError(f"config entry {getattr(error, 'full_key', '?')}: {message}") from None
    finally:
        OmegaConf.clear_resolver("config")
    if missing:
        raise InputError(f"config.py has no entry {missing[0]} (asked for by "
                         f"${{config:{missing[0]}}} in the YAML config)")
    return config


def _merge(config, overrides, origin):
    """OmegaConf.merge, with an error naming `origin` when a section of the config is
    given as a list or another type that cannot replace it."""
    try:
        return OmegaConf.merge(config, overrides)
    except Exception as error:          # OmegaConf raises several kinds
        message = str(getattr(error, "msg", error)).splitlines()[0]
        raise InputError(f"{origin}: cannot apply it to the config: {message}") from None


def _register_resolver(name, function):
    """OmegaConf >= 2.4 names it register_resolver; 2.3 register_new_resolver (its
    register_resolver is the legacy one)."""
    if hasattr(OmegaConf, "legacy_register_resolver"):
        OmegaConf.register_resolver(name, function, replace=True)
    else:
        OmegaConf.register_new_resolver(name, function, replace=True)


def _dotted_keys(config):
    """Dotted names of the leaves of a DictConfig (interpolations left unresolved)."""
    def walk(node, prefix):
        for key, value in node.items():
            if isinstance(value, dict):
                yield from walk(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}"
    return list(walk(OmegaConf.to_container(config, resolve=False), ""))
