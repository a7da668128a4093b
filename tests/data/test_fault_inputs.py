"""Fault injection for the data readers: files that are valid but awkward, or hostile.

Each case goes through the real paths: `read_array` (the one reader behind fit, evaluate and
predict), `prepare` (what fit uses to validate and cache every file) and, once, the CLI.
"""

from __future__ import annotations

import os
import struct
import unicodedata
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageFile
from typer.testing import CliRunner

from unetkit.data.prepare import PreparedData, prepare
from unetkit.data.readers import match_channels, read_array, read_image, read_raw_mask
from unetkit.errors import UnetkitError

ORIENTATION = 0x0112


# ---------------------------------------------------------------- helpers


def one_line(exc_info: pytest.ExceptionInfo) -> str:
    message = str(exc_info.value)
    assert "\n" not in message and message.endswith("."), message
    assert "Traceback" not in message
    return message


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def write_png(path: Path, array: np.ndarray, declared: tuple[int, int] | None = None) -> Path:
    """A PNG written byte by byte (PIL cannot write 16-bit colour): uint8 or uint16, HxW or
    HxWxC. `declared` (width, height) overrides the header size, the rows stay those given."""
    arr = array if array.ndim == 3 else array[..., None]
    h, w, c = arr.shape
    depth = 16 if arr.dtype == np.uint16 else 8
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    big_endian = arr.astype(">u2" if depth == 16 else np.uint8)
    raw = b"".join(b"\x00" + big_endian[y].tobytes() for y in range(h))
    dw, dh = declared or (w, h)
    header = struct.pack(">IIBBBBB", dw, dh, depth, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
                     + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b""))
    return path


def folder(root: Path) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    return root


def add_pair(root: Path, stem: str, mask01: np.ndarray, mask_stem: str | None = None) -> None:
    """images/<stem>.png bright on the mask, masks/<mask_stem or stem>.png as 0/255."""
    image = np.where(mask01[..., None] > 0, 220, 30).astype(np.uint8).repeat(3, axis=-1)
    Image.fromarray(image).save(root / "images" / f"{stem}.png")
    Image.fromarray((mask01 * 255).astype(np.uint8)).save(
        root / "masks" / f"{mask_stem or stem}.png")


def block_mask(size: tuple[int, int], top: int, left: int, side: int = 5) -> np.ndarray:
    mask = np.zeros(size, np.uint8)
    mask[top:top + side, left:left + side] = 1
    return mask


def by_name(data: PreparedData) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {n: (np.asarray(data.cache.image(i)), np.asarray(data.cache.mask(i)))
            for n, i in data.index_of().items()}


def exif(orientation: int) -> bytes:
    tags = Image.Exif()
    tags[ORIENTATION] = orientation
    return tags.tobytes()


# ---------------------------------------------------------------- 1. decompression bombs


def bomb_message(path: Path, width: int, height: int) -> str:
    return (f"{path} declares {width}x{height} pixels, more than the "
            f"{Image.MAX_IMAGE_PIXELS:,} an image may have, so it was not decoded (a possible "
            f"decompression bomb).")


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files PIL started decoding (ImageFile.load) while the test ran."""
    calls: list[str] = []
    real = ImageFile.ImageFile.load

    def load(self):
        calls.append(str(getattr(self, "filename", "?")))
        return real(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return calls


def test_png_bomb_is_refused_from_its_header(tmp_path: Path, decodes: list[str]) -> None:
    # 60000x60000 declared (3.6 GB as 8-bit grey), a few zero rows actually stored
    bomb = write_png(tmp_path / "bomb.png", np.zeros((4, 60000), np.uint8),
                     declared=(60000, 60000))
    assert bomb.stat().st_size < 2000
    with pytest.raises(UnetkitError) as exc:
        read_array(bomb)
    assert one_line(exc) == bomb_message(bomb, 60000, 60000)
    with pytest.raises(UnetkitError) as exc:
        read_raw_mask(bomb)
    assert one_line(exc) == bomb_message(bomb, 60000, 60000)
    assert decodes == []


def test_bomb_in_a_data_folder_is_named_by_prepare(tmp_path: Path, decodes: list[str]) -> None:
    root = folder(tmp_path / "f")
    for i in range(2):
        add_pair(root, f"ok{i}", block_mask((16, 16), 3 + i, 4))
    write_png(root / "images" / "huge.png", np.zeros((2, 30000), np.uint8),
              declared=(30000, 20000))
    Image.new("L", (16, 16)).save(root / "masks" / "huge.png")
    with pytest.raises(UnetkitError) as exc:
        prepare(root)
    bomb = root / "images" / "huge.png"
    assert one_line(exc) == bomb_message(bomb, 30000, 20000)[:-1] + " (--skip-bad leaves it out)."
    data = prepare(root, skip_bad=True)
    assert sorted(data.cache.names) == ["ok0", "ok1"]
    assert [b.name for b in data.bad] == ["huge"]
    assert str(bomb) not in decodes


def test_pixel_limit_holds_without_pils_own_check(tmp_path: Path, decodes: list[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Images between 1x and 2x the limit only warn in PIL; the warnings filter that makes
    that an error is process-wide (and the cache decodes in threads), so read_array checks
    the declared size itself."""
    path = write_png(tmp_path / "big.png", np.zeros((32, 40), np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 40x32 = 1280: the warning range
    with pytest.raises(UnetkitError) as exc:
        read_array(path)
    assert one_line(exc) == bomb_message(path, 40, 32)
    monkeypatch.setattr(Image, "_decompression_bomb_check", lambda *a, **k: None)
    with pytest.raises(UnetkitError) as exc:
        read_array(path)
    assert one_line(exc) == bomb_message(path, 40, 32)
    assert decodes == []
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1280)  # at the limit: fine
    assert read_array(path).shape == (32, 40)


# ---------------------------------------------------------------- 2. CMYK


def test_cmyk_jpeg_reads_as_rgb(tmp_path: Path) -> None:
    im = Image.new("CMYK", (24, 16), (0, 255, 255, 0))  # pure red in ink
    im.paste((255, 0, 255, 0), (12, 0, 24, 16))  # right half green
    path = tmp_path / "cmyk.jpg"
    im.save(path, quality=95)
    with Image.open(path) as check:
        assert check.mode == "CMYK"
    arr = read_array(path)
    assert arr.shape == (16, 24, 3) and arr.dtype == np.uint8
    np.testing.assert_allclose(arr[8, 4], (255, 0, 0), atol=8)
    np.testing.assert_allclose(arr[8, 20], (0, 255, 0), atol=8)
    assert read_image(path).shape == (16, 24, 3)


def test_cmyk_tiff_reads_as_rgb(tmp_path: Path) -> None:
    inks = np.zeros((8, 12, 4), np.uint8)
    inks[:, :6] = (0, 255, 255, 0)  # red
    inks[:, 6:] = (0, 0, 0, 128)  # half black: grey
    path = tmp_path / "cmyk.tif"
    tifffile.imwrite(path, inks, photometric="separated")
    arr = read_array(path)
    assert arr.shape == (8, 12, 3)
    assert arr[0, 0].tolist() == [255, 0, 0] and arr[0, 11].tolist() == [127, 127, 127]


# ---------------------------------------------------------------- 3. EXIF orientation


def rotated_jpeg(path: Path) -> Path:
    """Stored 32 wide x 16 tall, bright 5x5 block at the stored top-left; EXIF orientation
    6 (viewers turn it 90° clockwise: 16 wide x 32 tall, the block at the top right)."""
    stored = np.full((16, 32, 3), 30, np.uint8)
    stored[0:5, 0:5] = 220
    Image.fromarray(stored).save(path, quality=95, exif=exif(6))
    return path


def test_exif_rotated_jpeg_aligns_with_a_mask_drawn_as_displayed(tmp_path: Path) -> None:
    root = folder(tmp_path / "f")
    image = rotated_jpeg(root / "images" / "cell.jpg")
    displayed = block_mask((32, 16), 0, 11)  # the block where a viewer shows it
    Image.fromarray(displayed * 255).save(root / "masks" / "cell.png")
    assert read_array(image).shape == (32, 16, 3)
    img, mask = by_name(prepare(root))["cell"]
    assert img.shape == (32, 16, 3) and mask.shape == (32, 16)
    assert mask[2, 13] == 1 and img[2, 13].min() > 180  # the marker: mask and image agree
    assert mask[2, 2] == 0 and img[2, 2].max() < 80
    assert img[mask == 1].mean() > 180 and img[mask == 0].mean() < 60


def test_exif_rotation_explains_a_size_mismatch(tmp_path: Path) -> None:
    root = folder(tmp_path / "f")
    add_pair(root, "plain", block_mask((16, 16), 4, 4))
    image = rotated_jpeg(root / "images" / "cell.jpg")
    mask = root / "masks" / "cell.png"
    Image.fromarray(block_mask((16, 32), 0, 0) * 255).save(mask)  # drawn on stored pixels
    data = prepare(root, skip_bad=True)
    assert data.cache.names == ["plain"]
    assert [b.reason for b in data.bad] == [
        f"{mask} is 32x16 but its image cell.jpg is 16x32 (mask size mismatch; the EXIF "
        f"orientation tag of {image} turns it 90° clockwise, as viewers show it and unetkit "
        f"reads it, and unrotated it would match)."]


def test_mask_with_an_orientation_tag_is_turned_too(tmp_path: Path) -> None:
    root = folder(tmp_path / "f")
    add_pair(root, "cell", block_mask((32, 16), 0, 11))  # image displayed as is, no tag
    stored = block_mask((16, 32), 0, 0) * 255  # same block, stored unrotated + orientation 6
    Image.fromarray(stored).save(root / "masks" / "cell.png", exif=exif(6))
    img, mask = by_name(prepare(root))["cell"]
    assert mask.shape == (32, 16) and mask[2, 13] == 1 and mask[2, 2] == 0
    assert img[mask == 1].min() > 180


# ---------------------------------------------------------------- 4. 16-bit RGBA


def test_16bit_rgba_png_scales_like_its_8bit_twin(tmp_path: Path) -> None:
    rgba16 = np.zeros((16, 24, 4), np.uint16)
    rgba16[..., 0] = 65535
    rgba16[..., 1] = 30000
    rgba16[..., 2] = 0x1234
    rgba16[..., 3] = 65535
    rgba16[:4, :4, 3] = 0  # a transparent corner
    path16 = write_png(tmp_path / "rgba16.png", rgba16)
    arr = read_array(path16)
    assert arr.dtype == np.uint8 and arr.shape == (16, 24, 4)
    assert arr[8, 8].tolist() == [255, 117, 18, 255]  # the high byte: v * 255 / 65535, floored
    assert arr[0, 0].tolist() == [255, 117, 18, 0]
    twin = tmp_path / "rgba8.png"
    Image.fromarray((rgba16 >> 8).astype(np.uint8), "RGBA").save(twin)
    image = read_image(path16)
    np.testing.assert_array_equal(image, read_image(twin))
    rgb = match_channels(image, 3)  # what a 3-channel model gets: alpha dropped, as for 8-bit
    assert rgb.shape == (16, 24, 3) and rgb[0, 0].tolist() == [255, 117, 18]

    root = folder(tmp_path / "f")  # and through fit's validation pass
    write_png(root / "images" / "a.png", rgba16)
    Image.fromarray(block_mask((16, 24), 5, 5) * 255).save(root / "masks" / "a.png")
    img, _ = by_name(prepare(root))["a"]
    np.testing.assert_array_equal(img, read_image(twin))


def test_16bit_grey_png_keeps_its_depth_and_is_stretched(tmp_path: Path) -> None:
    grey = np.linspace(1000, 2000, 16 * 24).reshape(16, 24).astype(np.uint16)
    path = write_png(tmp_path / "grey16.png", grey)
    arr = read_array(path)
    assert arr.dtype == np.uint16 and arr[0, 0] == 1000
    image = read_image(path)
    assert image.shape == (16, 24, 1) and image.min() == 0 and image.max() == 255


def test_grey_alpha_png_reads_as_grey(tmp_path: Path) -> None:
    la = np.zeros((16, 16, 2), np.uint8)
    la[..., 0] = 90
    la[..., 1] = 200
    path = tmp_path / "la.png"
    Image.fromarray(la, "LA").save(path)
    arr = read_array(path)
    assert arr.shape == (16, 16) and (arr == 90).all()
    assert read_raw_mask(path).shape == (16, 16)


# ---------------------------------------------------------------- 5. palette masks


def palette_mask(path: Path, palette: list[int]) -> np.ndarray:
    """Indices 0 (background), 1 (left block) and 2 (right block) with the given palette."""
    index = np.zeros((16, 24), np.uint8)
    index[4:10, 2:8] = 1
    index[4:10, 14:20] = 2
    im = Image.fromarray(index, "P")
    im.putpalette(palette)
    im.save(path)
    with Image.open(path) as check:  # both duplicates survive the round trip
        assert check.mode == "P" and check.getpalette()[:9] == palette
    return index


def test_colour_palette_keeps_indices_even_for_a_shared_colour(tmp_path: Path) -> None:
    root = folder(tmp_path / "f")
    index = palette_mask(root / "masks" / "a.png", [0, 0, 0, 255, 0, 0, 255, 0, 0])
    Image.fromarray(np.full((16, 24, 3), 100, np.uint8)).save(root / "images" / "a.png")
    np.testing.assert_array_equal(read_raw_mask(root / "masks" / "a.png"), index)
    data = prepare(root)
    assert data.mask.kind == "index" and data.mask.num_classes == 3
    np.testing.assert_array_equal(by_name(data)["a"][1], index)


def test_grey_palette_means_grey_values_so_shared_greys_merge(tmp_path: Path) -> None:
    root = folder(tmp_path / "f")
    index = palette_mask(root / "masks" / "a.png", [0, 0, 0, 255, 255, 255, 255, 255, 255])
    Image.fromarray(np.full((16, 24, 3), 100, np.uint8)).save(root / "images" / "a.png")
    np.testing.assert_array_equal(read_raw_mask(root / "masks" / "a.png"),
                                  np.where(index > 0, 255, 0))
    data = prepare(root)
    assert data.mask.kind == "binary"
    np.testing.assert_array_equal(by_name(data)["a"][1], (index > 0).astype(np.uint8))


# ---------------------------------------------------------------- 6. values beyond the classes


def index_folder(root: Path, count: int) -> Path:
    """`count` 16x16 pairs with class-index masks 0..2 and a classes.txt naming 3 classes."""
    folder(root)
    (root / "classes.txt").write_text("background\ncell\nmembrane\n")
    for i in range(count):
        mask = np.zeros((16, 16), np.uint8)
        mask[2:6, 2:6] = 1
        mask[8:12, 8:12] = 2
        image = np.full((16, 16, 3), 60 + i, np.uint8)
        Image.fromarray(image).save(root / "images" / f"{i:02d}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i:02d}.png")
    return root


def test_value_beyond_classes_txt_names_the_mask(tmp_path: Path) -> None:
    root = index_folder(tmp_path / "f", 3)
    bad = root / "masks" / "01.png"
    mask = np.asarray(Image.open(bad)).copy()
    mask[0, 0], mask[15, 15] = 7, 9
    Image.fromarray(mask).save(bad)
    with pytest.raises(UnetkitError) as exc:
        prepare(root)
    assert one_line(exc) == (f"{bad} has values 7 and 9 but {root / 'classes.txt'} lists 3 "
                             f"classes (values 0..2).")


def test_value_beyond_classes_in_a_mask_not_sampled(tmp_path: Path) -> None:
    root = index_folder(tmp_path / "f", 18)  # the mask kind is guessed from 16 of them
    bad = root / "masks" / "17.png"
    mask = np.asarray(Image.open(bad)).copy()
    mask[0, 0] = 7
    Image.fromarray(mask).save(bad)
    with pytest.raises(UnetkitError) as exc:
        prepare(root)
    assert one_line(exc) == (f"{bad} has value 7 but the data set declares 3 classes (0..2) "
                             f"(--skip-bad leaves it out).")
    data = prepare(root, skip_bad=True)
    assert len(data.cache) == 17 and [b.name for b in data.bad] == ["17"]
    assert data.mask.class_names == ["background", "cell", "membrane"]


# ---------------------------------------------------------------- 7. symlink loops


def test_symlink_loops_in_the_data_folder_are_skipped(tmp_path: Path) -> None:
    root = folder(tmp_path / "f")
    for i in range(3):
        add_pair(root, f"c{i}", block_mask((16, 16), 2 + 3 * i, 4))
    try:
        os.symlink(root / "images", root / "images" / "loop")  # a folder inside itself
        os.symlink("self.png", root / "images" / "self.png")  # a link to itself
        os.symlink("..", root / "masks" / "up")  # back to the data root
        os.symlink(root / "masks", root / "masks" / "loop.png")  # a folder named like a mask
        os.symlink("gone.png", root / "images" / "dangling.png")
    except (OSError, NotImplementedError):
        pytest.skip("symbolic links are not available here")
    data = prepare(root)
    assert sorted(data.cache.names) == ["c0", "c1", "c2"] and data.bad == []
    with pytest.raises(UnetkitError) as exc:
        read_array(root / "images" / "self.png")
    assert one_line(exc) == (f"{root / 'images' / 'self.png'} is a symbolic link that leads "
                             f"nowhere (a missing target or a loop).")
    with pytest.raises(UnetkitError) as exc:
        read_array(root / "masks" / "loop.png")
    assert one_line(exc) == f"{root / 'masks' / 'loop.png'} is a folder, not an image file."


# ---------------------------------------------------------------- 8. names


NAMES = {"zelle 1 ä": (2, 2), "細胞": (9, 2), "Ünïcode Mixed": (2, 9), "ein bild.v2": (9, 9)}


def unicode_folder(root: Path) -> Path:
    """Images and masks whose names have spaces, accents, CJK and dots; the 'zelle 1 ä' mask
    spells its ä decomposed (NFD, as macOS writes names), the 'Ünïcode' one is lower case."""
    folder(root)
    for stem, (top, left) in NAMES.items():
        mask_stem = {"zelle 1 ä": unicodedata.normalize("NFD", "zelle 1 ä") + "_mask",
                     "Ünïcode Mixed": "ünïcode mixed"}.get(stem, stem)
        add_pair(root, stem, block_mask((16, 16), top, left), mask_stem)
    return root


def test_unicode_and_spaced_names_pair_with_their_masks(tmp_path: Path) -> None:
    root = unicode_folder(tmp_path / "daten ö")
    assert unicodedata.normalize("NFD", "ä") in "".join(os.listdir(root / "masks"))
    data = prepare(root)
    pairs = by_name(data)
    assert sorted(pairs) == sorted(NAMES) and data.bad == []
    for stem, (top, left) in NAMES.items():
        image, mask = pairs[stem]
        np.testing.assert_array_equal(mask, block_mask((16, 16), top, left), err_msg=stem)
        assert image[mask == 1].min() > 180 and image[mask == 0].max() < 80, stem


def test_predict_cli_on_unicode_names(tmp_path: Path) -> None:
    import unetkit
    from unetkit.cli import app
    from unetkit.models.artifact import save_model

    root = unicode_folder(tmp_path / "daten ö")
    run = tmp_path / "run"
    save_model(unetkit.build_model("unet", in_channels=3, classes=1, filters=4, depth=2),
               run / "model")
    out = tmp_path / "aus gabe"
    result = CliRunner().invoke(app, ["predict", str(run), str(root / "images"),
                                      str(root / "images" / "zelle 1 ä.png"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(f"{stem}.png" for stem in NAMES)
    for stem in NAMES:
        assert np.asarray(Image.open(out / f"{stem}.png")).shape == (16, 16)


def test_ome_tiff_channels_follow_the_metadata(tmp_path: Path) -> None:
    """OME-TIFF: channel axis from the OME axes (CYX -> HxWxC), a pyramid read at level 0,
    and a multi-plane stack refused with one sentence naming the file."""
    data = np.arange(3 * 20 * 30, dtype=np.uint16).reshape(3, 20, 30)
    tifffile.imwrite(tmp_path / "cyx.ome.tif", data, metadata={"axes": "CYX"})
    got = read_array(tmp_path / "cyx.ome.tif")
    assert got.shape == (20, 30, 3) and np.array_equal(got[..., 2], data[2])
    with tifffile.TiffWriter(tmp_path / "pyr.ome.tif") as tif:
        tif.write(data[0], subifds=1, metadata={"axes": "YX"})
        tif.write(data[0][::2, ::2], subfiletype=1)
    assert np.array_equal(read_array(tmp_path / "pyr.ome.tif"), data[0])
    tifffile.imwrite(tmp_path / "zyx.ome.tif", data, metadata={"axes": "ZYX"})
    with pytest.raises(UnetkitError, match=r"zyx\.ome\.tif is an OME-TIFF with 3 Z-planes"):
        read_array(tmp_path / "zyx.ome.tif")
