"""The headless matplotlib renderer, on the synthetic kit's SMPL-H body."""
import numpy as np

from smplh2smplx.render import RenderMesh, render_views, view_rotation


def test_render_views_writes_a_shaded_picture(tmp_path, kit):
    from PIL import Image
    with np.load(kit.smplh_npz) as smplh:
        smplh = {key: smplh[key] for key in smplh.files}
    faces = smplh["f"].astype(np.int64)
    error = np.linalg.norm(smplh["v_template"], axis=1) * 1000
    path = render_views([RenderMesh(smplh["v_template"], faces, values=error, vmax=800)],
                        tmp_path / "error.png", views=("front", "side"),
                        colorbar_label="distance (mm)", title="test", height_inches=3, dpi=80)
    image = np.asarray(Image.open(path).convert("RGB")).astype(float)
    assert image.shape[0] == 240 and image.shape[1] > 240
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 50        # shaded, coloured
    blank = render_views([(smplh["v_template"] + 5.0, faces, "red")], tmp_path / "r.png",
                         views=("front",), height_inches=2, dpi=50)
    red = np.asarray(Image.open(blank).convert("RGB")).astype(int)
    assert np.any((red[..., 0] > 150) & (red[..., 1] < 80))


def test_view_rotations():
    np.testing.assert_allclose(view_rotation("front"), np.eye(3), atol=1e-12)
    # Seen from the side, the body's front (+z) is on the right (+x of the camera).
    np.testing.assert_allclose(view_rotation("side") @ [0, 0, 1], [1, 0, 0], atol=1e-12)
    # Seen from above, the head (+y) points at the camera (+z).
    np.testing.assert_allclose(view_rotation("top") @ [0, 1, 0], [0, 0, 1], atol=1e-12)
    # An AMASS body (z up) is turned upright.
    np.testing.assert_allclose(view_rotation("front", up="z") @ [0, 0, 1], [0, 1, 0],
                               atol=1e-12)
