"""Shared fixtures: a tiny synthetic Market-1501 written once per session to a temp dir."""

import pytest

from reid_tf import synthetic


@pytest.fixture(scope="session")
def market_dir(tmp_path_factory):
    """16 identities (8 train, 8 test), 3 cameras, 2 images per camera, at 64x32."""
    root = tmp_path_factory.mktemp("market")
    synthetic.make_synthetic_market(
        str(root), num_ids=16, num_cameras=3, images_per_camera=2, height=64, width=32,
        seed=3, num_junk=3, num_distractors=3,
    )
    return str(root)
