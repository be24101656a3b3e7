"""Tests of tfseg.io.images: real TIFF/PNG/JPEG/BMP files written with tifffile and Pillow."""
import os

import numpy as np
import pytest
import tifffile
from PIL import Image

from tfseg.errors import ConfigError, DataError
from tfseg.io.images import read_image, read_mask, write_png


@pytest.fixture
def rgb():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)


def test_read_tiff_rgb_and_gray(tmp_path, rgb):
    path = tmp_path / "TCGA_CS_4941_19960909_1.tif"
    tifffile.imwrite(path, rgb, photometric="rgb")
    image = read_image(path)
    assert image.dtype == np.uint8 and image.shape == (12, 10, 3)
    np.testing.assert_array_equal(image, rgb)
    gray = (np.arange(120, dtype=np.uint16) * 500).reshape(12, 10)
    tifffile.imwrite(tmp_path / "g.tiff", gray)
    out = read_image(tmp_path / "g.tiff")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, gray)


def test_read_tiff_planar_is_moved_to_channels_last(tmp_path, rgb):
    path = tmp_path / "planar.tif"
    tifffile.imwrite(path, np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(read_image(path), rgb)


def test_read_pil_formats(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(rgb).save(tmp_path / "a.bmp")
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), rgb)
    np.testing.assert_array_equal(read_image(tmp_path / "a.bmp"), rgb)
    Image.fromarray(rgb).save(tmp_path / "a.jpg", quality=95)
    jpeg = read_image(tmp_path / "a.jpg")
    assert jpeg.shape == rgb.shape and jpeg.dtype == np.uint8
    # a palette PNG is expanded to RGB, a 1-bit image to 0/255
    Image.fromarray(rgb).convert("P").save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").shape == (12, 10, 3)
    Image.fromarray(np.eye(4, dtype=bool)).save(tmp_path / "b.png")
    assert read_image(tmp_path / "b.png").tolist() == (np.eye(4) * 255).astype(int).tolist()


def test_write_png_round_trip_and_atomic(tmp_path, rgb):
    write_png(tmp_path / "sub" / "rgb.png", rgb)
    np.testing.assert_array_equal(read_image(tmp_path / "sub" / "rgb.png"), rgb)
    gray16 = (np.arange(30, dtype=np.uint16) * 2000).reshape(5, 6)
    write_png(tmp_path / "g16.png", gray16[..., None])
    out = read_image(tmp_path / "g16.png")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, gray16)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    write_png(tmp_path / "rgba.png", rgba)
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png"), rgba)
    assert sorted(os.listdir(tmp_path)) == ["g16.png", "rgba.png", "sub"]  # no temporary files left


@pytest.mark.parametrize("array, message", [
    (np.zeros((4, 4), np.float32), "uint8 or uint16"),
    (np.zeros((4, 4, 3), np.uint16), "grayscale"),
    (np.zeros((4, 4, 2), np.uint8), "shape"),
    (np.zeros((0, 4), np.uint8), "empty"),
])
def test_write_png_rejects_bad_arrays(tmp_path, array, message):
    with pytest.raises(ConfigError, match=message):
        write_png(tmp_path / "x.png", array)
    assert not os.listdir(tmp_path)


def test_write_png_needs_png_suffix(tmp_path):
    with pytest.raises(ConfigError, match=".png"):
        write_png(tmp_path / "x.tif", np.zeros((2, 2), np.uint8))


def test_read_mask_binary_variants(tmp_path):
    mask = np.zeros((6, 5), np.uint8)
    mask[2:4, 1:3] = 1
    tifffile.imwrite(tmp_path / "m255.tif", mask * 255)
    tifffile.imwrite(tmp_path / "m1.tif", mask)
    tifffile.imwrite(tmp_path / "m16.tif", mask.astype(np.uint16) * 65535)
    Image.fromarray(np.dstack([mask * 255] * 3)).save(tmp_path / "rgb.png")
    Image.fromarray(np.dstack([mask * 255] * 3 + [np.full_like(mask, 255)])).save(tmp_path / "rgba.png")
    for name in ("m255.tif", "m1.tif", "m16.tif", "rgb.png", "rgba.png"):
        out = read_mask(tmp_path / name)
        assert out.dtype == np.uint8 and out.shape == (6, 5), name
        np.testing.assert_array_equal(out, mask, err_msg=name)
    tifffile.imwrite(tmp_path / "empty.tif", np.zeros((3, 3), np.uint8))
    assert read_mask(tmp_path / "empty.tif").max() == 0


def test_read_mask_other_values(tmp_path):
    labels = np.array([[0, 1, 2], [0, 128, 255]], np.uint8)
    tifffile.imwrite(tmp_path / "labels.tif", labels)
    with pytest.raises(DataError, match=r"labels.tif: expected a binary mask .* 0, 1, 2, 128, 255"):
        read_mask(tmp_path / "labels.tif")
    np.testing.assert_array_equal(read_mask(tmp_path / "labels.tif", binary=False), labels)
    np.testing.assert_array_equal(read_mask(tmp_path / "labels.tif", threshold=127), labels > 127)
    with pytest.raises(ConfigError, match="threshold"):
        read_mask(tmp_path / "labels.tif", binary=False, threshold=127)
    tifffile.imwrite(tmp_path / "big.tif", np.array([[0, 300]], np.uint16))
    with pytest.raises(DataError, match="0..255"):
        read_mask(tmp_path / "big.tif", binary=False)
    tifffile.imwrite(tmp_path / "frac.tif", np.array([[0, 0.5]], np.float32))
    with pytest.raises(DataError, match="integer labels"):
        read_mask(tmp_path / "frac.tif", binary=False)


def test_read_mask_colour_channels_must_agree(tmp_path):
    colour = np.zeros((4, 4, 3), np.uint8)
    colour[0, 0] = (255, 0, 0)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    with pytest.raises(DataError, match="colour.png: mask has 3 colour channels that differ"):
        read_mask(tmp_path / "colour.png")


def test_missing_empty_folder_and_unknown_type(tmp_path):
    with pytest.raises(DataError, match="nope.tif: file not found"):
        read_image(tmp_path / "nope.tif")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DataError, match="empty.png: file is empty"):
        read_image(tmp_path / "empty.png")
    (tmp_path / "d.tif").mkdir()
    with pytest.raises(DataError, match="not a file"):
        read_image(tmp_path / "d.tif")
    (tmp_path / "a.gif").write_bytes(b"GIF89a")
    with pytest.raises(DataError, match="unsupported file type '.gif'"):
        read_image(tmp_path / "a.gif")


@pytest.mark.parametrize("name", ["slice.tif", "slice.png", "slice.jpg", "slice.bmp"])
def test_truncated_files(tmp_path, rgb, name):
    path = tmp_path / name
    big = np.tile(rgb, (8, 8, 1))
    if name.endswith(".tif"):
        tifffile.imwrite(path, big, photometric="rgb")
    else:
        Image.fromarray(big).save(path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(DataError, match=name.replace(".", r"\.") + ": cannot decode image data, truncated"):
        read_image(path)


def test_garbage_and_wrong_shapes(tmp_path):
    (tmp_path / "text.png").write_text("not an image at all")
    with pytest.raises(DataError, match="text.png: not a readable PNG"):
        read_image(tmp_path / "text.png")
    (tmp_path / "text.tif").write_text("not an image at all")
    with pytest.raises(DataError, match="text.tif: not a readable TIF"):
        read_image(tmp_path / "text.tif")
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((5, 8, 8), np.uint8), photometric="minisblack")
    with pytest.raises(DataError, match="stack.tif: TIFF holds 5 pages"):
        read_image(tmp_path / "stack.tif")
    tifffile.imwrite(tmp_path / "five.tif", np.zeros((8, 8, 5), np.uint8), photometric="minisblack",
                     planarconfig="contig")
    with pytest.raises(DataError, match=r"five.tif: expected one 2D image .* shape \(8, 8, 5\)"):
        read_image(tmp_path / "five.tif")


# ----------------------------------------------------------------------------- files nobody here wrote
SKIMAGE_DATA = os.path.join(os.path.dirname(__import__("skimage").__file__), "data")


@pytest.mark.parametrize("name", ["camera.png", "astronaut.png", "coins.png", "retina.jpg", "logo.png"])
def test_images_shipped_with_scikit_image_match_its_reader(name):
    import skimage.io

    path = os.path.join(SKIMAGE_DATA, name)
    if not os.path.isfile(path):
        pytest.skip(f"scikit-image does not ship {name} in this version")
    ours = read_image(path)
    theirs = skimage.io.imread(path)
    assert ours.dtype == theirs.dtype
    np.testing.assert_array_equal(np.squeeze(ours), np.squeeze(theirs))


def test_multipage_tiff_shipped_with_scikit_image_is_refused_by_name():
    path = os.path.join(SKIMAGE_DATA, "multipage.tif")
    if not os.path.isfile(path):
        pytest.skip("scikit-image does not ship multipage.tif in this version")
    with pytest.raises(DataError, match="multipage.tif"):
        read_image(path)
