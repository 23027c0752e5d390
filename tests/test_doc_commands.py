"""Every command line of ours that the documents show runs as they say.

The documents are README.md, docs/*.md and the entry scripts' own docstrings (their
`--help`). A line is ours when it runs `python <script>.py` (a script of the repository) or
`python -m benchmarks.<name>` / `python -m synthetic_kit.demo`, in a ```bash block, an
inline `python ...` of a document or an indented line of a docstring. Lines ended by `\\`
are joined, comments dropped, shell variables ($SLURM_ARRAY_TASK_ID, ${X}) replaced by a
number, and `&&`, `||`, `;` and `|` separate commands.

Every such line parses with its command's own argument parser, so a renamed or removed flag
fails here. The product's commands (stage 1, stage 2, the motions) also run, each in a fresh
copy of a user's folder laid out as the documents' paths say (`user_folder`: `/data/X` and
`/path/to/X` are its `X`) on the synthetic kit, with config.py's paths written; a `--mode
report` line first runs the conversion it reports. What cannot run here is answered as
documented: `--slurm` without `--local` on a machine without SLURM and `--device cuda`
without CUDA are one error line, exit 2. The demo and the benchmarks, whose documented runs
take minutes, run in their own tests on smaller inputs; `--engine official` needs a clone
of the smplx repository (test_patches.py).
"""
import argparse
import ast
import importlib
import json
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from smplh2smplx.body.lbs import BodyModel
from smplh2smplx.formats.body_models import load_body_model
from smplh2smplx.formats.deformation_files import OFFICIAL_TRANSFER_FILES
from smplh2smplx.formats.meshes import write_obj
from smplh2smplx.settings import UNSET, read_user_config

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SCRIPTS = [REPO / name for name in ("extract_to_obj.py", "run_transfer.py",
                                    "convert_sequences.py")]
BASH_BLOCK = re.compile(r"^```bash\n(.*?)^```", re.MULTILINE | re.DOTALL)
INLINE_COMMAND = re.compile(r"`(python3? [^`]+)`")
SHELL_VARIABLE = re.compile(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?")
PYTHON = re.compile(r"(.*/)?python3?(\.\d+)?")
MODULES = re.compile(r"benchmarks\.\w+|synthetic_kit\.demo")
SEPARATORS = {"&&", "||", ";", "|", "&"}
PRODUCT = {path.stem for path in SCRIPTS}
PLACEHOLDER_ROOTS = ("/data/", "/path/to/")


def shell_commands(text):
    """The commands (lists of words) of a bash block."""
    text = SHELL_VARIABLE.sub("3", text.replace("\\\n", " "))
    commands = []
    for line in text.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        command = []
        for word in lexer:
            if word in SEPARATORS:
                commands.append(command)
                command = []
            else:
                command.append(word)
        commands.append(command)
    return [command for command in commands if command]


def our_command(words):
    """(module name, arguments) when `words` run one of our commands, else None."""
    if len(words) < 2 or not PYTHON.fullmatch(words[0]):
        return None
    if words[1] == "-m":
        return (words[2], words[3:]) if MODULES.fullmatch(words[2]) else None
    if words[1].endswith(".py"):
        return Path(words[1]).with_suffix("").as_posix().replace("/", "."), words[2:]
    return None


def docstring_lines(script):
    """The command lines of a script's docstring (the examples its --help shows)."""
    text = ast.get_docstring(ast.parse(script.read_text())).replace("\\\n", " ")
    return "\n".join(line.strip() for line in text.splitlines()
                     if line.strip().startswith("python "))


def documented_commands():
    """pytest params (module name, arguments), one per line of ours a document shows."""
    shown = []
    for document in DOCUMENTS:
        text = document.read_text()
        shown += [(document.name, block)
                  for block in BASH_BLOCK.findall(text) + INLINE_COMMAND.findall(text)]
    shown += [(script.name, docstring_lines(script)) for script in SCRIPTS]
    found = []
    for name, block in shown:
        for words in shell_commands(block):
            command = our_command(words)
            if command is not None:
                found.append(pytest.param(*command, id=f"{name}: {shlex.join(words)}"))
    return found


def runnable_commands():
    """The product's documented lines, each once."""
    seen, found = set(), []
    for param in documented_commands():
        module_name, arguments = param.values
        key = (module_name, tuple(arguments))
        if module_name in PRODUCT and "official" not in arguments and key not in seen:
            seen.add(key)
            found.append(param)
    return found


def parse(module_name, arguments):
    """Parse `arguments` with the module's `build_parser()`; the parser's own message when
    it refuses them."""
    parser = importlib.import_module(module_name).build_parser()
    try:
        return parser.parse_args(arguments)
    except SystemExit:
        pytest.fail(f"{module_name} refuses {shlex.join(arguments)!r}")


def test_the_documents_show_each_command():
    shown = {module for module, _arguments in (param.values for param in documented_commands())}
    assert {"run_transfer", "convert_sequences", "extract_to_obj",
            "synthetic_kit.demo"} <= shown
    assert any(module.startswith("benchmarks.") for module in shown)
    names = {param.id.split(":")[0] for param in documented_commands()}
    assert {"README.md", "SEQUENCES.md"} | {script.name for script in SCRIPTS} <= names


@pytest.mark.parametrize("module_name, arguments", documented_commands())
def test_documented_command_parses(module_name, arguments):
    parse(module_name, arguments)


def test_a_removed_flag_fails():
    with pytest.raises(pytest.fail.Exception, match="refuses"):
        parse("run_transfer", ["--no-such-flag", "1"])


def test_shell_lines_are_joined_split_and_substituted():
    block = ("python run_transfer.py --shard-index $SLURM_ARRAY_TASK_ID \\\n"
             "    --shard-size ${SIZE}   # one shard\n"
             "python3 -m venv .venv && .venv/bin/python -m synthetic_kit.demo --device cpu\n")
    commands = shell_commands(block)
    assert commands == [
        ["python", "run_transfer.py", "--shard-index", "3", "--shard-size", "3"],
        ["python3", "-m", "venv", ".venv"],
        [".venv/bin/python", "-m", "synthetic_kit.demo", "--device", "cpu"]]
    assert [our_command(words) for words in commands] == [
        ("run_transfer", ["--shard-index", "3", "--shard-size", "3"]), None,
        ("synthetic_kit.demo", ["--device", "cpu"])]


# ----------------------------------------------------------------- running them

# config.py's downloads, where the user's folder has them (relative paths, as config.py allows).
CONFIG_PATHS = {
    "AMASS_DIR": "AMASS", "POSEFIX_DIR": "posefix", "POSESCRIPT_DIR": "posescript",
    "SMPLH_MODEL": "models/smplh", "SMPLX_MODEL": "models", "SMPL_MODEL": "models",
    "DEFTRAFO_PATH": "transfer/smplh2smplx_deftrafo_setup.pkl",
    "MASK_IDS_PATH": "transfer/smplx_mask_ids.npy"}


def write_release(root, sequence, pose_ids):
    """PoseFix and PoseScript releases of three `pose_ids` (frames of the AMASS `sequence`):
    the first two a PoseFix pair, the third PoseScript's."""
    id_map = {str(pose): ["AMASS", sequence, 2 * index] for index, pose in enumerate(pose_ids)}
    files = {
        "posefix/ids_2_dataset_sequence_and_frame_index_100k.json": id_map,
        "posefix/pair_id_2_pose_ids.json": [pose_ids[:2]],
        "posefix/posefix_human_6157.json": {"0": ["Bend your knees."]},
        "posescript/ids_2_dataset_sequence_and_frame_index_100k.json": id_map,
        "posescript/posescript_human_6293.json": {str(pose_ids[2]): ["The person stands."]}}
    for name, content in files.items():
        (root / name).parent.mkdir(exist_ok=True)
        (root / name).write_text(json.dumps(content))


def place(motion_file, destination, frames=8):
    """The first `frames` frames of a motion file (the fits and the report's animation
    cost time by the frame)."""
    with np.load(motion_file) as motion:
        arrays = dict(motion)
    length = len(arrays["poses"])
    arrays = {key: value[:frames] if value.ndim and len(value) == length else value
              for key, value in arrays.items()}
    if "mocap_time_length" in arrays:
        arrays["mocap_time_length"] = np.array(frames / arrays["mocap_frame_rate"])
    destination.parent.mkdir(parents=True, exist_ok=True)
    np.savez(destination, **arrays)


@pytest.fixture(scope="module")
def user_folder(kit, tmp_path_factory):
    """(folder, config) of a user who put the downloads where the documents' paths say,
    the kit's files standing in for them, wrote config.py and ran stage 1.

    A motion file of each model the documents name, one of a video pose estimator (no
    gender, no frame rate) as `clip.npz` and in `estimates/`, SMPL-X meshes in
    `smplx_meshes/`, and a PoseFix/PoseScript release whose ids include those the
    documents name (12 and 345).
    """
    root = tmp_path_factory.mktemp("user")
    (root / "models").symlink_to(kit.body_models)
    (root / "transfer").symlink_to(kit.deftrafo.parent)
    for file_name in OFFICIAL_TRANSFER_FILES.values():
        (root / file_name).symlink_to(kit.deftrafo.parent / file_name)
    place(kit.amass / "CMU/03/03_01_poses.npz", root / "AMASS/CMU/01/01_01_poses.npz")
    for subset in ("CMU/01/01_01", "KIT/3/walking_run03"):
        place(kit.smplx_motions / "CMU/03/03_01_stageii.npz",
              root / f"AMASS_SMPLX/{subset}_stageii.npz")
    place(kit.smpl_motions / "CMU/03/03_01_poses.npz", root / "vibe_smpl/clip_01_poses.npz")
    with np.load(root / "vibe_smpl/clip_01_poses.npz") as motion:
        estimate = {"global_orient": motion["poses"][:, :3], "body_pose": motion["poses"][:, 3:],
                    "transl": motion["trans"], "betas": motion["betas"][:10]}
    for path in (root / "clip.npz", root / "estimates/clip.npz"):
        path.parent.mkdir(exist_ok=True)
        np.savez(path, **estimate)
    data = load_body_model(kit.body_models, "smplx")
    pose = 0.2 * torch.randn(2, data.num_joints, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        meshes = BodyModel(data)(pose, torch.zeros(2, 10))[0].numpy()
    (root / "smplx_meshes").mkdir()
    for index, mesh in enumerate(meshes):
        write_obj(root / "smplx_meshes" / f"{index:06d}.obj", mesh, data.faces)
    write_release(root, "CMU/01/01_01_poses.npz", [12, 345, 1000])

    config = read_user_config()
    unset = {name for name, value in config.items() if value == UNSET and name != "TODO"}
    assert unset == set(CONFIG_PATHS)      # a new download in config.py needs its place here
    config.update(CONFIG_PATHS)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        assert importlib.import_module("extract_to_obj").main([], config) == 0
    return root, config


def in_user_folder(word):
    """A documented path `/data/X` or `/path/to/X` as the user folder's X."""
    for prefix in PLACEHOLDER_ROOTS:
        if word.startswith(prefix):
            return word[len(prefix):]
    return word


def refusal_here(arguments):
    """The message part of the error a documented line gets on this machine by design
    (no SLURM, no CUDA), else None."""
    if "--slurm" in arguments and "--local" not in arguments:
        if shutil.which("sbatch"):
            pytest.skip("this machine has SLURM, and the tests never submit jobs")
        return "sbatch"
    if "--device" in arguments and "cuda" in arguments[arguments.index("--device") + 1]:
        return None if torch.cuda.is_available() else "no CUDA device"
    return None


@pytest.mark.parametrize("module_name, arguments", runnable_commands())
def test_documented_command_runs(module_name, arguments, user_folder, tmp_path, monkeypatch,
                                 capsys):
    root, config = user_folder
    folder = tmp_path / "user"
    shutil.copytree(root, folder, symlinks=True)
    monkeypatch.chdir(folder)
    arguments = [in_user_folder(word) for word in arguments]
    main = importlib.import_module(module_name).main
    if "--mode" in arguments and arguments[arguments.index("--mode") + 1] == "report":
        conversion = [word for word in arguments if word not in ("--mode", "report")]
        assert main(conversion, config) == 0, capsys.readouterr().err
    refusal = refusal_here(arguments)
    status = main(arguments, config)
    output = capsys.readouterr()
    if refusal is None:
        assert status == 0, output.err
        assert "error:" not in output.err
    else:
        assert status == 2 and refusal in output.err, output.err


# Options of the programs our messages send users to (SLURM's sbatch and squeue).
OTHER_PROGRAMS_FLAGS = {"--array", "--me", "--noheader", "--format", "--mem"}


def test_every_flag_a_message_names_is_one_the_help_shows():
    """A flag in any text of the product (messages, help, docstrings) is an option that one
    of its commands shows in --help (not a hidden old spelling), or another program's."""
    shown = set()
    for module_name in PRODUCT:
        for action in importlib.import_module(module_name).build_parser()._actions:
            if action.help != argparse.SUPPRESS:
                shown.update(action.option_strings)
    sources = [*SCRIPTS, *sorted((REPO / "smplh2smplx").rglob("*.py"))]
    named = {}
    for source in sources:
        for node in ast.walk(ast.parse(source.read_text())):
            # A string that is a flag alone names an option as its parser declares it.
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and not re.fullmatch(r"--[a-z][a-z0-9-]*", node.value)):
                for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", node.value):
                    named.setdefault(flag, f"{source.name}, line {node.lineno}")
    unknown = {flag: where for flag, where in named.items()
               if flag not in shown | OTHER_PROGRAMS_FLAGS}
    assert not unknown
    assert {"--deformation-transfer", "--keep-going", "--source-fps"} <= set(named)
