"""Every ```python block of README.md and docs/*.md runs as written on the synthetic kit.

Paths in the snippets are placeholders "/path/to/<something>"; `placeholders` maps each to
a file or folder of the kit (or one written here), and a placeholder it does not know
fails the test, so the documentation cannot drift from the code.
"""
import re
from pathlib import Path

import pytest
import torch

from smplh2smplx.family import KINDS
from smplh2smplx.formats.param_files import write_parameters

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
PLACEHOLDER = re.compile(r"/path/to/[^\"'\s]*")


def snippets():
    found = []
    for document in DOCUMENTS:
        for index, match in enumerate(BLOCK.finditer(document.read_text())):
            found.append(pytest.param(match.group(1), id=f"{document.name}#{index}"))
    return found


@pytest.fixture(scope="module")
def placeholders(kit, tmp_path_factory):
    """Placeholder -> path of the kit (or a per-pose file written here for each target)."""
    folder = tmp_path_factory.mktemp("doc_outputs")
    table = {
        "/path/to/models": kit.body_models,
        "/path/to/transfer/smplh2smplx_deftrafo_setup.pkl": kit.deftrafo,
        "/path/to/transfer/smpl2smplx_deftrafo_setup.pkl":
            kit.deftrafo.parent / "smpl2smplx_deftrafo_setup.pkl",
        "/path/to/transfer/smplx_mask_ids.npy": kit.mask,
        "/path/to/amass/CMU/01/01_01_poses.npz": kit.amass / "CMU" / "03" / "03_01_poses.npz",
        "/path/to/amass/CMU/01/01_02_poses.npz": kit.amass / kit.sequences[1],
        "/path/to/smplx_sequences/CMU/01/01_01_stageii.npz": kit.amass_smplx,
    }
    generator = torch.Generator().manual_seed(0)
    for kind, model in KINDS.items():
        path = folder / f"{kind}_params" / "000000.pkl"
        path.parent.mkdir()
        write_parameters(path, kind, 0.2 * torch.randn(model.num_joints, 3, generator=generator),
                         torch.randn(model.betas[0] or 10, generator=generator),
                         torch.tensor([0.1, 0.9, -0.2]))
        table[f"/path/to/{kind}_params/000000.pkl"] = path
    return {name: str(path) for name, path in table.items()}


def test_the_documents_hold_snippets():
    assert len(snippets()) >= 3           # README's API, FORMATS' read-back, SEQUENCES'


@pytest.mark.parametrize("code", snippets())
def test_snippet_runs_on_the_kit(code, placeholders, tmp_path, monkeypatch):
    unknown = sorted(set(PLACEHOLDER.findall(code)) - set(placeholders))
    assert not unknown, f"placeholders without a kit file: {unknown}"
    for name in sorted(placeholders, key=len, reverse=True):   # longer names first
        code = code.replace(name, placeholders[name])
    monkeypatch.chdir(tmp_path)           # whatever a snippet writes stays in tmp_path
    exec(compile(code, "<snippet>", "exec"), {"__name__": "__snippet__"})
