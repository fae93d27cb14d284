"""`vaekit restore` and `vaekit inpaint` inputs that used to crash or be misread: absurd blur widths, masks of
text or complex numbers, an image whose header declares billions of pixels. One line, exit 2, no output."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from tests.reliability.conftest import assert_one_line_error, cli, snapshot

FAST = ["--steps", "2", "--limit", "4", "--threads", "1"]


@pytest.mark.parametrize("sigma", ["1e308", "1e5", "9"])
def test_a_blur_wider_than_the_image_is_refused(trained, tmp_path, capsys, sigma):
    pytest.importorskip("skimage", reason="vaekit restore scores with scikit-image")
    code, _, err = cli(capsys, "restore", trained, "--operator", f"blur:{sigma}", *FAST, "-o", tmp_path / "r.npy")
    assert_one_line_error(code, err, f"blur:{sigma}", "at most 8 pixels")
    assert not (tmp_path / "r.npy").exists()


def test_a_blur_as_wide_as_the_image_still_runs(trained, capsys):
    pytest.importorskip("skimage", reason="vaekit restore scores with scikit-image")
    code, out, err = cli(capsys, "restore", trained, "--operator", "blur:8", *FAST, "--json")
    assert code == 0, err


@pytest.mark.parametrize("values,needle", [
    (np.full((1, 8, 8), "a"), "text"),
    ((np.eye(8) + 1j * np.eye(8)).astype(np.complex64)[None], "complex"),
])
def test_a_mask_that_is_not_numbers_is_named(trained, tmp_path, capsys, values, needle):
    pytest.importorskip("skimage", reason="vaekit restore scores with scikit-image")
    mask = tmp_path / "mask.npy"
    np.save(mask, values)
    before = snapshot(tmp_path)
    code, _, err = cli(capsys, "restore", trained, "--operator", f"mask:{mask}", *FAST, "-o", tmp_path / "r.npy")
    assert_one_line_error(code, err, "mask.npy", needle, "0/1")
    code, _, err = cli(capsys, "inpaint", trained, "--mask", mask, "--first", "4", "-o", tmp_path / "r.npy")
    assert_one_line_error(code, err, "mask.npy", needle)
    assert snapshot(tmp_path) == before


def test_a_mask_png_declaring_billions_of_pixels(trained, tmp_path, capsys):
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    code, _, err = cli(capsys, "inpaint", trained, "--mask", bomb, "--first", "4", "-o", tmp_path / "r.npy")
    assert_one_line_error(code, err, "bomb.png", "pixels")
    assert not (tmp_path / "r.npy").exists()
