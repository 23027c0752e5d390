"""The deformation transfer: loading checks, and the sparse product against plain sums."""
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from smplh2smplx.body.deformation import DeformationTransfer, load_deformation_transfer
from smplh2smplx.errors import InputError

NUM_SMPLH, NUM_SMPLX = 6890, 10475


def random_sparse(rows, columns, nnz_per_row, seed, fmt="csc"):
    rng = np.random.default_rng(seed)
    row_ids = np.repeat(np.arange(rows), nnz_per_row)
    column_ids = rng.integers(0, columns, size=row_ids.size)
    values = rng.normal(size=row_ids.size)
    return sp.coo_matrix((values, (row_ids, column_ids)), shape=(rows, columns)).asformat(fmt)


def random_convex(rows, nnz_per_row, seed, fmt="csc"):
    """A (rows, 2 * NUM_SMPLH) setup matrix whose vertex part has convex rows (positive
    weights summing to 1), as load_deformation_transfer requires on the mask."""
    vertex_part = abs(random_sparse(rows, NUM_SMPLH, nnz_per_row, seed, "csr"))
    vertex_part = sp.diags(1.0 / np.asarray(vertex_part.sum(axis=1)).ravel()) @ vertex_part
    other_part = random_sparse(rows, NUM_SMPLH, 1, seed + 100, "csr")
    return sp.hstack([vertex_part, other_part]).asformat(fmt)


def reference_apply(matrix, vertices):
    """target[b, i] = sum over the stored entries (i, j, m) of m * source[b, j], summed
    entry by entry (duplicates included), independently of any sparse product."""
    coo = sp.coo_matrix(matrix)
    target = np.zeros((vertices.shape[0], matrix.shape[0], 3))
    np.add.at(target, (slice(None), coo.row), coo.data[:, None] * vertices[:, coo.col])
    return target


def write_setup(folder, contents, mask_ids):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "smplh2smplx_deftrafo_setup.pkl").write_bytes(pickle.dumps(contents, protocol=2))
    np.save(folder / "smplx_mask_ids.npy", mask_ids)
    return folder / "smplh2smplx_deftrafo_setup.pkl", folder / "smplx_mask_ids.npy"


def test_apply_matches_dense_product_on_small_data():
    rng = np.random.default_rng(0)
    dense = rng.normal(size=(9, 7)) * (rng.random((9, 7)) < 0.4)
    transfer = DeformationTransfer(matrix=sp.csr_matrix(dense), mask_ids=np.arange(9))
    vertices = rng.normal(size=(4, 7, 3))
    expected = np.einsum("tv,bvc->btc", dense, vertices)

    np.testing.assert_allclose(transfer.apply(vertices), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(transfer.apply(vertices[2]), expected[2], rtol=1e-12, atol=1e-12)
    single = transfer.apply(vertices.astype(np.float32))
    assert single.dtype == np.float32 and single.flags.c_contiguous
    np.testing.assert_allclose(single, expected, rtol=1e-5, atol=1e-5)
    assert transfer.apply(np.ones((7, 3), np.int64)).dtype == np.float64

    for dtype, tolerance in [(torch.float64, 1e-12), (torch.float32, 1e-5)]:
        result = transfer.apply(torch.as_tensor(vertices, dtype=dtype))
        assert isinstance(result, torch.Tensor) and result.dtype == dtype
        assert result.shape == (4, 9, 3) and result.is_contiguous()
        np.testing.assert_allclose(result.numpy(), expected, rtol=tolerance, atol=tolerance)
        unbatched = transfer.apply(torch.as_tensor(vertices[1], dtype=dtype))
        np.testing.assert_allclose(unbatched.numpy(), expected[1], rtol=tolerance, atol=tolerance)
    cached = transfer.torch_matrix("cpu", torch.float32)
    assert transfer.torch_matrix(torch.device("cpu"), torch.float32) is cached
    assert transfer.apply(np.zeros((0, 7, 3))).shape == (0, 9, 3)
    assert transfer.apply(torch.zeros(0, 7, 3)).shape == (0, 9, 3)


def test_apply_masked_takes_vertex_major_vertices():
    rng = np.random.default_rng(4)
    dense = rng.normal(size=(9, 7)) * (rng.random((9, 7)) < 0.4)
    mask_ids = np.array([8, 0, 3, 5])                       # not sorted: the file's order
    transfer = DeformationTransfer(matrix=sp.csr_matrix(dense), mask_ids=mask_ids)
    vertices = rng.normal(size=(4, 7, 3))
    expected = np.einsum("tv,bvc->tcb", dense[mask_ids], vertices)       # (M, 3, B)

    for dtype, tolerance in [(torch.float64, 1e-12), (torch.float32, 1e-5)]:
        vertex_major = torch.as_tensor(vertices.transpose(1, 2, 0).copy(), dtype=dtype)
        result = transfer.apply_masked(vertex_major)
        assert result.dtype == dtype and result.shape == (4, 3, 4)
        np.testing.assert_allclose(result.numpy(), expected, rtol=tolerance, atol=tolerance)
    assert transfer.apply_masked(torch.zeros(7, 3, 0)).shape == (4, 3, 0)


def test_apply_rejects_wrong_shapes():
    transfer = DeformationTransfer(matrix=sp.csr_matrix(np.eye(4)), mask_ids=np.arange(4))
    for shape in [(4,), (5, 3), (2, 4, 2), (1, 2, 4, 3)]:
        with pytest.raises(ValueError, match=r"\(B, 4, 3\)"):
            transfer.apply(np.zeros(shape))


@pytest.mark.parametrize("fmt", ["csc", "csr", "coo"])
def test_load_and_apply_full_size(tmp_path, fmt):
    full = random_convex(NUM_SMPLX, 3, seed=1, fmt=fmt)
    mask_ids = np.random.default_rng(2).permutation(NUM_SMPLX)[:8000]
    setup_path, mask_path = write_setup(tmp_path, {"mtx": full, "other": np.zeros(2)}, mask_ids)

    transfer = load_deformation_transfer(setup_path, mask_path)

    assert transfer.deftrafo_path == setup_path and transfer.mask_path == mask_path
    assert transfer.matrix.format == "csr" and transfer.matrix.dtype == np.float64
    assert transfer.matrix.shape == (NUM_SMPLX, NUM_SMPLH)
    assert transfer.mask_ids.dtype == np.int64
    np.testing.assert_array_equal(transfer.mask_ids, mask_ids)
    vertices = np.random.default_rng(3).normal(size=(2, NUM_SMPLH, 3))
    expected = reference_apply(sp.csc_matrix(full)[:, :NUM_SMPLH], vertices)
    np.testing.assert_allclose(transfer.apply(vertices), expected, rtol=1e-10, atol=1e-12)
    result = transfer.apply(torch.as_tensor(vertices, dtype=torch.float32))
    assert result.shape == (2, NUM_SMPLX, 3)
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-4, atol=1e-4)


def test_dense_matrix_key(tmp_path):
    dense = np.zeros((NUM_SMPLX, NUM_SMPLH), np.uint8)
    dense[[0, 5, NUM_SMPLX - 1], [3, 0, NUM_SMPLH - 1]] = [1, 2, 3]
    setup_path, mask_path = write_setup(tmp_path, {"matrix": dense}, np.array([0]))

    transfer = load_deformation_transfer(setup_path, mask_path)

    assert sp.issparse(transfer.matrix) and transfer.matrix.nnz == 3
    vertices = np.random.default_rng(4).normal(size=(NUM_SMPLH, 3))
    result = transfer.apply(vertices)
    np.testing.assert_array_equal(result[[0, 5, NUM_SMPLX - 1]],
                                  vertices[[3, 0, NUM_SMPLH - 1]] * [[1], [2], [3]])
    assert np.count_nonzero(np.abs(result).sum(axis=1)) == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_apply_on_gpu(tmp_path):
    full = random_convex(NUM_SMPLX, 3, seed=5)
    transfer = load_deformation_transfer(*write_setup(tmp_path, {"mtx": full}, np.arange(5)))
    vertices = torch.randn(3, NUM_SMPLH, 3, dtype=torch.float64)
    expected = transfer.apply(vertices.numpy())

    result = transfer.apply(vertices.cuda())

    assert result.device.type == "cuda" and result.dtype == torch.float64
    np.testing.assert_allclose(result.cpu().numpy(), expected, rtol=1e-10, atol=1e-10)
    assert transfer.torch_matrix(result.device, torch.float64).device == result.device


@pytest.fixture(scope="module")
def small_full_matrix():
    return random_sparse(NUM_SMPLX, 2 * NUM_SMPLH, 1, seed=6)


@pytest.mark.parametrize("contents, message", [
    ({"mtx_": None}, "'mtx'"),
    ([1, 2], "'mtx'"),
    ({"mtx": sp.csr_matrix((NUM_SMPLX, 100))}, r"shape \(10475, 100\), expected \(10475, 13780\)"),
    ({"mtx": sp.csr_matrix((NUM_SMPLH, 2 * NUM_SMPLH))}, r"shape \(6890, 13780\)"),
    ({"matrix": np.zeros(5)}, "1-d"),
    ({"mtx": sp.csr_matrix(([np.nan], ([0], [0])), shape=(NUM_SMPLX, NUM_SMPLH))}, "non-finite"),
])
def test_malformed_setup(tmp_path, contents, message):
    setup_path, mask_path = write_setup(tmp_path, contents, np.arange(10))
    with pytest.raises(InputError, match=message) as error:
        load_deformation_transfer(setup_path, mask_path)
    assert str(setup_path) in str(error.value)


@pytest.mark.parametrize("mask_ids, message", [
    (np.array([0, 5, NUM_SMPLX]), "from 0 to 10475"),
    (np.array([-1, 5]), "from -1 to 5"),
    (np.array([3, 4, 3, 3]), r"repeat \(2 duplicates\)"),
    (np.array([1.0, 2.0]), "integer"),
    (np.arange(6).reshape(2, 3), "1-d"),
    (np.zeros(0, np.int64), "non-empty"),
])
def test_malformed_mask(tmp_path, small_full_matrix, mask_ids, message):
    setup_path, mask_path = write_setup(tmp_path, {"mtx": small_full_matrix}, mask_ids)
    with pytest.raises(InputError, match=message) as error:
        load_deformation_transfer(setup_path, mask_path)
    assert str(mask_path) in str(error.value)


def test_missing_and_unreadable_files(tmp_path, small_full_matrix):
    setup_path, mask_path = write_setup(tmp_path, {"mtx": small_full_matrix}, np.arange(3))
    with pytest.raises(InputError, match="not found") as error:
        load_deformation_transfer(tmp_path / "absent.pkl", mask_path)
    assert "absent.pkl" in str(error.value)
    with pytest.raises(InputError, match="not found") as error:
        load_deformation_transfer(setup_path, tmp_path / "absent.npy")
    assert "absent.npy" in str(error.value)
    mask_path.write_bytes(b"0 1 2\n")
    with pytest.raises(InputError, match="not a readable .npy") as error:
        load_deformation_transfer(setup_path, mask_path)
    assert str(mask_path) in str(error.value)


def test_kit_deformation_transfer_loads(request):
    """The synthetic kit's setup and mask (fixture `kit` of tests/conftest.py) load."""
    pytest.importorskip("synthetic_kit", reason="synthetic kit not written yet")
    kit = request.getfixturevalue("kit")
    transfer_folder = Path(kit if isinstance(kit, (str, Path)) else kit.root) / "transfer"
    transfer = load_deformation_transfer(transfer_folder / "smplh2smplx_deftrafo_setup.pkl",
                                         transfer_folder / "smplx_mask_ids.npy")
    assert transfer.matrix.shape == (NUM_SMPLX, NUM_SMPLH) and transfer.mask_ids.size > 0
    vertices = np.random.default_rng(7).normal(size=(2, NUM_SMPLH, 3))
    expected = reference_apply(transfer.matrix, vertices)
    np.testing.assert_allclose(transfer.apply(vertices), expected, rtol=1e-10, atol=1e-10)
