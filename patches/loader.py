"""Import the official `transfer_model` package from a clone, unedited, on Python 3.11+.

Three obstacles stand between a fresh clone of github.com/vchoutas/smplx and `import
transfer_model` today; each has one function here:

- its config dataclasses use instances as field defaults, which Python 3.11 refuses
  ("mutable default ... use default_factory"): `defaults_to_factories` rewrites those
  defaults while the module is compiled, the file on disk is never touched;
- `transfer_model.utils` imports `open3d` (only to write meshes) and its mesh dataset
  imports `psbody.mesh` (never used): `stub_missing_modules` lends placeholders for the
  duration of the import when they are not installed;
- `torchtrustncg` (its default optimiser) and `loguru` are not project requirements:
  `require_official_dependencies` says how to install them instead of a bare ImportError.

`load_transfer_model(repo)` puts the three together. Only the `transfer_model` package is
taken from the clone; `smplx` stays the installed package (see `official.py`).
"""
import ast
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from smplh2smplx.errors import InputError
from smplh2smplx.runtime import is_installed

PACKAGE = "transfer_model"

# The official modules the patched run uses; importing them all up front means no import
# of the clone happens later, outside the hooks below.
OFFICIAL_MODULES = (
    "transfer_model.config.defaults",
    "transfer_model.data",
    "transfer_model.transfer_model",
    "transfer_model.utils",
)

TORCHTRUSTNCG_HINT = (
    "the official transfer_model optimises with trust-region Newton-CG from the package "
    "torchtrustncg, which is not on PyPI; install it with\n"
    "    pip install --no-build-isolation git+https://github.com/vchoutas/torch-trust-ncg\n"
    "(its setup.py imports torch, hence --no-build-isolation)")


# ----------------------------------------------------------------- dataclass defaults

def _is_dataclass_decorator(node):
    """True for `@dataclass`, `@dataclasses.dataclass` and either one called with options."""
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Name):
        return node.id == "dataclass"
    return isinstance(node, ast.Attribute) and node.attr == "dataclass"


def _default_factory(expression):
    """AST of `dataclasses.field(default_factory=lambda: <expression>)`."""
    field_function = ast.Attribute(
        value=ast.Call(func=ast.Name("__import__", ast.Load()),
                       args=[ast.Constant("dataclasses")], keywords=[]),
        attr="field", ctx=ast.Load())
    factory = ast.Lambda(
        args=ast.arguments(posonlyargs=[], args=[], vararg=None, kwonlyargs=[],
                           kw_defaults=[], kwarg=None, defaults=[]),
        body=expression)
    return ast.Call(func=field_function, args=[],
                    keywords=[ast.keyword(arg="default_factory", value=factory)])


class _FactoryDefaults(ast.NodeTransformer):
    """Rewrites `name: T = <call or name>` in dataclass bodies into default factories."""

    def visit_ClassDef(self, node):
        self.generic_visit(node)
        if any(_is_dataclass_decorator(decorator) for decorator in node.decorator_list):
            for statement in node.body:
                if (isinstance(statement, ast.AnnAssign)
                        and isinstance(statement.value, (ast.Call, ast.Name, ast.Attribute))):
                    statement.value = _default_factory(statement.value)
        return node


def defaults_to_factories(source, filename="<source>"):
    """Compile module source with every non-literal dataclass default made a default factory.

    Replaces the published fix of editing `transfer_model/config/*.py` by hand. A default
    such as `pca: PCA = PCA()` or `optim: OptimConfig = optim_cfg` (an OmegaConf object)
    becomes `field(default_factory=lambda: PCA())`: Python 3.11 accepts it, and
    `OmegaConf.structured` builds the same config as before, since it copies the values.
    Literal defaults (numbers, strings, tuples) are left as they are.

    Args:
        source: the module's source text (str or bytes).
        filename: shown in tracebacks.
    Returns:
        a code object.
    """
    tree = _FactoryDefaults().visit(ast.parse(source, filename=filename))
    return compile(ast.fix_missing_locations(tree), filename, "exec", dont_inherit=True)


class _CloneLoader(importlib.machinery.SourceFileLoader):
    """Loads a clone's module through `defaults_to_factories`, without bytecode caches.

    Refusing `path_stats` makes the import system neither read nor write `__pycache__`:
    the clone stays as the user left it, and a later plain `python -m transfer_model`
    never picks up our rewritten bytecode.
    """

    def path_stats(self, path):
        raise OSError("no bytecode cache for patched modules")

    def source_to_code(self, data, path, *, _optimize=-1):
        return defaults_to_factories(data, path)


class _CloneFinder(importlib.abc.MetaPathFinder):
    """Finds `transfer_model` and its submodules in one clone, whatever sys.path holds."""

    def __init__(self, repo):
        self.repo = Path(repo)

    def find_spec(self, fullname, path=None, target=None):
        if fullname != PACKAGE and not fullname.startswith(PACKAGE + "."):
            return None
        base = self.repo.joinpath(*fullname.split("."))
        if (base / "__init__.py").is_file():
            filename, search = base / "__init__.py", [str(base)]
        elif base.with_suffix(".py").is_file():
            filename, search = base.with_suffix(".py"), None
        else:
            return None
        return importlib.util.spec_from_file_location(
            fullname, filename, loader=_CloneLoader(fullname, str(filename)),
            submodule_search_locations=search)


# ----------------------------------------------------------------- optional modules

def _placeholder(module, name):
    """A callable that stands for `module.name` and refuses to be used."""
    def unavailable(*args, **kwargs):
        raise RuntimeError(f"{module}.{name} was stubbed by patches/ because {module} is not "
                           f"installed; the patched run does not use it")
    unavailable.__name__ = name
    return unavailable


# module -> {attribute: submodule attributes or None}: what the official code touches at
# import time (`o3d.utility.Vector3dVector`, ...) or names in a `from ... import`.
STUBS = {
    "open3d": {"utility": ("Vector3dVector", "Vector3iVector"),
               "geometry": ("TriangleMesh",),
               "io": ("write_triangle_mesh", "read_triangle_mesh")},
    "psbody": {},
    "psbody.mesh": {"Mesh": None},
}


def _stub_module(name, attributes, is_package):
    module = types.ModuleType(name, f"placeholder for the missing module {name} (patches/)")
    if is_package:
        module.__path__ = []
    for attribute, inner in attributes.items():
        if inner is None:
            setattr(module, attribute, _placeholder(name, attribute))
        else:
            namespace = types.SimpleNamespace(
                **{item: _placeholder(f"{name}.{attribute}", item) for item in inner})
            setattr(module, attribute, namespace)
    return module


@contextmanager
def stub_missing_modules(stubs=None):
    """Lend placeholder modules for those of `stubs` (default `STUBS`) that are missing.

    Replaces the published fix of deleting the `open3d` and `psbody.mesh` imports from
    `transfer_model/utils/__init__.py` and `data/datasets/mesh.py`. An installed module is
    never shadowed, and the placeholders leave `sys.modules` when the block ends, so later
    code that probes for open3d still sees it missing; the official modules keep the
    references they took, and calling one raises a RuntimeError that names the module.
    """
    stubs = STUBS if stubs is None else stubs
    lent = []
    for name, attributes in stubs.items():
        if name not in sys.modules and not is_installed(name):
            is_package = any(other.startswith(name + ".") for other in stubs)
            sys.modules[name] = _stub_module(name, attributes, is_package)
            lent.append(name)
    try:
        yield lent
    finally:
        for name in lent:
            sys.modules.pop(name, None)


# ----------------------------------------------------------------- dependencies

def require_official_dependencies():
    """Raise an InputError saying how to install what the official code imports and we lack.

    Replaces the published instruction to install the official requirements by hand: the
    trust-region optimiser `torchtrustncg` (not on PyPI) and the logger `loguru`.
    """
    if not is_installed("torchtrustncg"):
        raise InputError(TORCHTRUSTNCG_HINT)
    if not is_installed("loguru"):
        raise InputError("the official transfer_model logs with loguru; install it with "
                         "`pip install loguru`")


# ----------------------------------------------------------------- the whole import

@dataclass(frozen=True)
class OfficialModules:
    """The official modules a patched run calls into."""
    repo: Path
    defaults: types.ModuleType     # transfer_model.config.defaults: `conf`, the default config
    fitting: types.ModuleType      # transfer_model.transfer_model: `run_fitting`
    utils: types.ModuleType        # transfer_model.utils: deformation transfer helpers
    minimize: types.ModuleType     # transfer_model.optimizers.minimize: the iteration loop


def check_clone(repo):
    """The clone's root as a resolved Path, or an InputError saying what is wrong."""
    if repo is None or str(repo) == "":
        raise InputError("the official engine needs the path of a clone of "
                         "https://github.com/vchoutas/smplx (--smplx-repo)")
    repo = Path(repo).expanduser().resolve()
    if not (repo / PACKAGE / "transfer_model.py").is_file():
        raise InputError(f"{repo}: not a clone of the smplx repository "
                         f"(no {PACKAGE}/transfer_model.py)")
    return repo


def _loaded_from(repo):
    """Whether the `transfer_model` in sys.modules is this clone's, loaded by us."""
    spec = getattr(sys.modules.get(PACKAGE), "__spec__", None)
    return (spec is not None and isinstance(spec.loader, _CloneLoader)
            and Path(spec.origin).resolve().parent == repo / PACKAGE)


def _forget_transfer_model():
    for name in [name for name in sys.modules
                 if name == PACKAGE or name.startswith(PACKAGE + ".")]:
        del sys.modules[name]


def load_transfer_model(repo):
    """Import the official modules of the clone at `repo`, patched as described above.

    A `transfer_model` already imported from elsewhere (another clone, an installed copy)
    is dropped from sys.modules first; this clone's modules, once imported, are reused.

    Returns:
        OfficialModules.
    Raises:
        InputError when `repo` is not a clone or a dependency is missing.
    """
    repo = check_clone(repo)
    require_official_dependencies()
    if not _loaded_from(repo):
        _forget_transfer_model()
        finder = _CloneFinder(repo)
        sys.meta_path.insert(0, finder)
        try:
            with stub_missing_modules():
                for name in OFFICIAL_MODULES:
                    importlib.import_module(name)
        except ModuleNotFoundError as error:
            _forget_transfer_model()
            raise InputError(f"{repo}: the official transfer_model needs the module "
                             f"{error.name!r}; install it (pip install {error.name})") from None
        except BaseException:
            _forget_transfer_model()
            raise
        finally:
            sys.meta_path.remove(finder)
    return OfficialModules(
        repo=repo,
        defaults=sys.modules["transfer_model.config.defaults"],
        fitting=sys.modules["transfer_model.transfer_model"],
        utils=sys.modules["transfer_model.utils"],
        minimize=sys.modules["transfer_model.optimizers.minimize"],
    )
