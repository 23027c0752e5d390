"""Every command line of ours in a ```bash block or an inline `python ...` of README.md and
docs/*.md parses with that command's own argument parser, so a renamed or removed flag in
the documents fails here.

A line is ours when it runs `python <script>.py` (a script of the repository) or `python -m
benchmarks.<name>` / `python -m synthetic_kit.demo`. Lines ended by `\\` are joined, comments
dropped, shell variables ($SLURM_ARRAY_TASK_ID, ${X}) replaced by a number, and `&&`, `||`,
`;` and `|` separate commands. Only the parsers are built: nothing runs.
"""
import importlib
import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BASH_BLOCK = re.compile(r"^```bash\n(.*?)^```", re.MULTILINE | re.DOTALL)
INLINE_COMMAND = re.compile(r"`(python3? [^`]+)`")
SHELL_VARIABLE = re.compile(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?")
PYTHON = re.compile(r"(.*/)?python3?(\.\d+)?")
MODULES = re.compile(r"benchmarks\.\w+|synthetic_kit\.demo")
SEPARATORS = {"&&", "||", ";", "|", "&"}


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


def documented_commands():
    found = []
    for document in DOCUMENTS:
        text = document.read_text()
        shown = [match.group(1) for match in BASH_BLOCK.finditer(text)]
        shown += INLINE_COMMAND.findall(text)
        for block in shown:
            for words in shell_commands(block):
                command = our_command(words)
                if command is not None:
                    found.append(pytest.param(*command, id=f"{document.name}: {shlex.join(words)}"))
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
    assert {"run_transfer", "convert_sequences", "synthetic_kit.demo"} <= shown
    assert any(module.startswith("benchmarks.") for module in shown)


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
