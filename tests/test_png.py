"""runtime/png.py: the zlib PNG writer that vae-sample uses instead of Pillow gives back exactly its pixels."""
import io

import numpy as np
import pytest
from PIL import Image

from vae_edge.runtime.images import make_grid, save_grid
from vae_edge.runtime.png import ROWS_PER_BAND, write_png


@pytest.fixture
def rng():
    return np.random.default_rng()


def _read(data: bytes):
    with Image.open(io.BytesIO(data)) as im:
        im.verify()  # checks every chunk's CRC
    with Image.open(io.BytesIO(data)) as im:
        return im.format, im.mode, np.asarray(im)


@pytest.mark.parametrize("shape,mode", [((7, 5), "L"), ((7, 5, 1), "L"), ((6, 9, 3), "RGB"), ((4, 3, 4), "RGBA"),
                                        ((1, 1), "L"), ((ROWS_PER_BAND * 2 + 3, 17, 3), "RGB")])
def test_pillow_reads_back_exactly_the_pixels_written(rng, shape, mode):
    pixels = rng.integers(0, 256, shape, dtype=np.uint8)
    f = io.BytesIO()
    write_png(f, pixels)
    fmt, got_mode, got = _read(f.getvalue())
    assert (fmt, got_mode) == ("PNG", mode)
    np.testing.assert_array_equal(got, pixels.reshape(got.shape))


@pytest.mark.parametrize("pixels", [np.zeros((4, 4), np.float32), np.zeros((4, 4, 2), np.uint8),
                                    np.zeros((0, 4), np.uint8), np.zeros(4, np.uint8)])
def test_anything_but_8_bit_gray_rgb_or_rgba_is_refused(pixels):
    with pytest.raises(ValueError, match="a PNG needs uint8 pixels"):
        write_png(io.BytesIO(), pixels)


@pytest.mark.parametrize("c", [1, 3, 4])
def test_save_grid_png_has_the_pixels_that_pillow_would_have_written(rng, tmp_path, c):
    x = rng.random((10, c, 9, 7), dtype=np.float32)
    save_grid(x, tmp_path / "ours.png", nrow=4)
    pixels = make_grid(x, nrow=4)
    Image.fromarray(pixels[:, :, 0] if c == 1 else pixels, {1: "L", 3: "RGB", 4: "RGBA"}[c]).save(tmp_path / "pil.png")
    with Image.open(tmp_path / "ours.png") as ours, Image.open(tmp_path / "pil.png") as pil:
        assert (ours.format, ours.mode, ours.size) == (pil.format, pil.mode, pil.size)
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(pil))


def test_save_grid_still_writes_jpeg_through_pillow(rng, tmp_path):
    save_grid(rng.random((4, 4, 8, 8), dtype=np.float32), tmp_path / "g.jpg")
    with Image.open(tmp_path / "g.jpg") as im:
        assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (4 * 10 + 2, 12))
