"""User settings: config.py (the paths), and for stage 2 my_smplh2smplx.yaml with overrides.

Stage 2 reads my_smplh2smplx.yaml (the official transfer_model schema plus our `fit`
section) with OmegaConf. Its path entries are `${config:NAME}` interpolations that read NAME
from config.py, so every path is written once. Precedence, lowest first: config.py, the
shipped my_smplh2smplx.yaml, the file given with --exp-cfg, --exp-opts, the dedicated flags.
"""
import importlib.util
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .errors import InputError

REPO_ROOT = Path(__file__).resolve().parent.parent
USER_CONFIG = REPO_ROOT / "config.py"


def read_user_config(path=USER_CONFIG):
    """The upper-case names defined in config.py, as a dict."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location("_user_config", path)
    if spec is None or not path.is_file():
        raise InputError(f"{path}: config file not found")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        raise InputError(f"{path}: cannot be read: {error!r}") from None
    return {name: value for name, value in vars(module).items() if name.isupper()}


# ----------------------------------------------------------------- stage 2: the YAML config

EXPERIMENT_CONFIG = REPO_ROOT / "my_smplh2smplx.yaml"


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


def _parse_dotted(options, origin):
    """`["a.b=1", ...]` -> DictConfig, with an error naming the malformed option."""
    for option in options:
        key, sep, _value = option.partition("=")
        if not sep or not key.strip():
            raise InputError(f"{origin}: '{option}' is not of the form key=value")
    try:
        return OmegaConf.from_dotlist(list(options))
    except Exception as error:
        raise InputError(f"{origin}: cannot parse {list(options)}: {error}") from None


def load_experiment_config(exp_cfg=None, exp_opts=(), flags=None, user_config=None):
    """The resolved stage-2 configuration.

    Args:
        exp_cfg: a YAML file in the my_smplh2smplx.yaml schema (an official transfer_model
            config works too); its entries override the shipped my_smplh2smplx.yaml, which
            gives every key a default. None: the shipped file alone.
        exp_opts: dotted overrides, `["datasets.mesh_folder.batch_index=3", ...]`; a key the
            configuration does not have is an error (typos must not pass silently).
        flags: {dotted key: value} from dedicated command-line flags; applied last.
        user_config: mapping NAME -> value behind `${config:NAME}`; None reads config.py.
    Returns:
        an OmegaConf DictConfig with every interpolation resolved.
    Raises:
        InputError for an unreadable file, a malformed or unknown override, or a
        `${config:NAME}` with no such entry.
    """
    if user_config is None:
        user_config = read_user_config()
    config = _read_yaml(EXPERIMENT_CONFIG)
    if exp_cfg is not None and Path(exp_cfg).resolve() != EXPERIMENT_CONFIG:
        config = _merge(config, _read_yaml(exp_cfg), exp_cfg)
    known = set(_dotted_keys(config))
    overrides = _parse_dotted(exp_opts, "--exp-opts")
    unknown = sorted(set(_dotted_keys(overrides)) - known)
    if unknown:
        raise InputError(f"--exp-opts: unknown key(s) {', '.join(unknown)}")
    config = _merge(config, overrides, "--exp-opts")
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
