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


def png_claiming(width: int, height: int, idat: bytes | None = None) -> bytes:
    """An 8-bit grayscale PNG whose header claims width x height; its pixel data is `idat`
    (default: a few zero bytes, far fewer than the header promises)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = zlib.compress(b"\0" * 16) if idat is None else idat
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
