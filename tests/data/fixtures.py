"""Tiny on-disk data sets in each supported layout, with the real sets' file types and values.

Every builder writes under `root` (created if needed) and returns the data root to pass to
`unetkit fit --data`. Images are 24x32 (HxW) unless `size` says otherwise; each tree has at
least 6 labelled images and, where the format groups samples, at least 3 groups, so a
train/val split is possible. Images are drawn from their masks plus noise, so a model can
learn something in one epoch. The `truth` helpers give the class-index mask a loader should
produce (255 = ignore), for checking decoders.

Import as `from fixtures import make_carvana` from tests/data, or load this file by path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

SIZE = (24, 32)  # H, W

CARS = ("0cdf5b5d0ce1", "0d1a9caf4350", "11acc40dc0ea")
OXFORD = ("Abyssinian_1", "Abyssinian_2", "Bengal_10", "beagle_3", "beagle_4", "pug_52")
OXFORD_TEST = ("Bengal_10", "pug_52")
PATIENTS = ("TCGA_CS_4941_19960909", "TCGA_DU_5851_19950428", "TCGA_HT_7879_19981009")
CAMVID = {
    "train": ("0001TP_006690", "0001TP_006720", "0006R0_f02340", "0016E5_00390"),
    "val": ("0016E5_07959", "0016E5_07961"),
    "test": ("Seq05VD_f00000", "Seq05VD_f00030"),
}


def _rng(key: str) -> np.random.Generator:
    return np.random.default_rng(sum(key.encode()) * 7919 + len(key))


def blob_mask(key: str, size: tuple[int, int] = SIZE) -> np.ndarray:
    """A 0/1 ellipse at a position that depends on `key`."""
    rng = _rng(key)
    h, w = size
    cy, cx = rng.uniform(0.35, 0.65) * h, rng.uniform(0.35, 0.65) * w
    ry, rx = rng.uniform(0.2, 0.35) * h, rng.uniform(0.2, 0.35) * w
    yy, xx = np.mgrid[0:h, 0:w]
    return (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1).astype(np.uint8)


def image_from(index_mask: np.ndarray, key: str, channels: int = 3) -> np.ndarray:
    """An HxWxC (or HxW for channels=1) uint8 image whose brightness follows the classes."""
    rng = _rng(key + "/image")
    base = 40.0 + 150.0 * (index_mask.astype(np.float32) % 4) / 3.0
    noise = rng.normal(0, 12, size=(*index_mask.shape, channels))
    img = np.clip(base[..., None] + noise, 0, 255).astype(np.uint8)
    return img[..., 0] if channels == 1 else img


def rle_encode(mask: np.ndarray) -> str:
    """Carvana run-length string: 1-based starts, row-major (independent of unetkit's)."""
    pixels = np.concatenate([[0], mask.ravel() != 0, [0]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(pixels))
    starts, ends = edges[0::2] + 1, edges[1::2] + 1
    return " ".join(f"{s} {e - s}" for s, e in zip(starts, ends, strict=True))


def save_gif_mask(path: Path, mask01: np.ndarray, white_first: bool = False) -> None:
    """A Carvana-style palette GIF (indices 0/1, palette black/white; optionally reversed)."""
    if white_first:  # same picture, palette order swapped: index 0 is white (foreground)
        im = Image.fromarray((1 - mask01).astype(np.uint8))
        im.putpalette([255, 255, 255, 0, 0, 0])  # an L image with a palette becomes P
    else:
        im = Image.fromarray(mask01.astype(np.uint8))
        im.putpalette([0, 0, 0, 255, 255, 255])
    im.save(path)


def make_carvana(root: str | Path, masks: str = "gif", size: tuple[int, int] = SIZE) -> Path:
    """train/<car>_<NN>.jpg for 3 cars x 2 angles, masks as GIFs ("gif"), as rows of
    train_masks.csv ("csv") or both ("both"); plus test/ photos without masks."""
    root = Path(root)
    for d in ("train", "test", "train_masks"):
        (root / d).mkdir(parents=True, exist_ok=True)
    rows = ["img,rle_mask"]
    for car in CARS:
        for angle in (1, 2):
            stem = f"{car}_{angle:02d}"
            mask = blob_mask(stem, size)
            Image.fromarray(image_from(mask, stem)).save(root / "train" / f"{stem}.jpg",
                                                         quality=95)
            if masks in ("gif", "both"):
                save_gif_mask(root / "train_masks" / f"{stem}_mask.gif", mask)
            rows.append(f"{stem}.jpg,{rle_encode(mask)}")
    if masks in ("csv", "both"):
        (root / "train_masks.csv").write_text("\n".join(rows) + "\n")
    for i in (1, 2):
        stem = f"fff{i:09d}_01"
        Image.fromarray(image_from(blob_mask(stem, size), stem)).save(root / "test" / f"{stem}.jpg")
    (root / "metadata.csv").write_text("id,year,make,model,trim1,trim2\n")
    return root


def oxford_trimap(stem: str, size: tuple[int, int] = SIZE) -> np.ndarray:
    """Trimap values as in the real files: 1 pet, 2 background, 3 boundary band."""
    pet = blob_mask(stem, size).astype(bool)
    grown = np.zeros_like(pet)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            grown |= np.roll(pet, (dy, dx), axis=(0, 1))
    trimap = np.full(size, 2, np.uint8)
    trimap[grown] = 3
    trimap[pet] = 1
    trimap[pet & ~np.roll(pet, 1, axis=0)] = 3  # the band straddles the outline
    return trimap


def oxford_truth(trimap: np.ndarray, boundary: str = "ignore") -> np.ndarray:
    out = np.where(trimap == 1, 1, 0).astype(np.uint8)
    out[trimap == 3] = {"ignore": 255, "pet": 1, "class": 2}[boundary]
    return out


def make_oxford_pet(root: str | Path, size: tuple[int, int] = SIZE) -> Path:
    """images/*.jpg + annotations/trimaps/*.png (1/2/3) + trainval.txt and test.txt.

    Like the real archive it also has a .mat file among the images, a macOS ._ copy among
    the trimaps and annotations/xmls/.
    """
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "trimaps").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "xmls").mkdir(exist_ok=True)
    for stem in OXFORD:
        trimap = oxford_trimap(stem, size)
        Image.fromarray(image_from(np.where(trimap == 1, 1, 0), stem)).save(
            root / "images" / f"{stem}.jpg", quality=95)
        Image.fromarray(trimap).save(root / "annotations" / "trimaps" / f"{stem}.png")
    (root / "images" / "Abyssinian_101.mat").write_bytes(b"MATLAB 5.0 MAT-file")
    (root / "annotations" / "trimaps" / "._Abyssinian_1.png").write_bytes(b"\x00\x05\x16\x07")

    def line(stem: str) -> str:  # "<stem> <class id> <species> <breed id>"
        species = 1 if stem[0].isupper() else 2
        return f"{stem} {1 + OXFORD.index(stem)} {species} 1"

    trainval = [s for s in OXFORD if s not in OXFORD_TEST]
    (root / "annotations" / "trainval.txt").write_text("\n".join(map(line, trainval)) + "\n")
    (root / "annotations" / "test.txt").write_text("\n".join(map(line, OXFORD_TEST)) + "\n")
    (root / "annotations" / "list.txt").write_text(
        "#Image CLASS-ID SPECIES BREED ID\n" + "\n".join(map(line, OXFORD)) + "\n")
    return root


def make_lgg_mri(root: str | Path, size: tuple[int, int] = SIZE, slices: int = 2) -> Path:
    """<root>/kaggle_3m/<patient>/<patient>_<n>.tif (RGB) + _mask.tif (0/255), 3 patients.

    Returns `root` (the parent of kaggle_3m, like the Kaggle download); the first slice of
    each patient has an empty mask, as most real slices do.
    """
    root = Path(root)
    base = root / "kaggle_3m"
    for patient in PATIENTS:
        (base / patient).mkdir(parents=True, exist_ok=True)
        for n in range(1, slices + 1):
            stem = f"{patient}_{n}"
            mask = blob_mask(stem, size) if n > 1 else np.zeros(size, np.uint8)
            tifffile.imwrite(base / patient / f"{stem}.tif", image_from(mask, stem),
                             photometric="rgb")
            tifffile.imwrite(base / patient / f"{stem}_mask.tif", mask * 255,
                             photometric="minisblack")
    (base / "data.csv").write_text("Patient,RNASeqCluster\n")
    (base / "README.md").write_text("LGG segmentation dataset\n")
    return root


def isbi_labels(key: str, size: tuple[int, int] = SIZE) -> np.ndarray:
    """ISBI-style labels: 255 = cell interior, 0 = membrane (a shifted grid of thin lines)."""
    rng = _rng(key)
    labels = np.full(size, 255, np.uint8)
    oy, ox = int(rng.integers(0, 6)), int(rng.integers(0, 6))
    labels[oy::7, :] = 0
    labels[:, ox::9] = 0
    return labels


def make_isbi(root: str | Path, size: tuple[int, int] = SIZE, pages: int = 6) -> Path:
    """train-volume.tif / train-labels.tif (one greyscale slice per page) + test-volume.tif."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    labels = np.stack([isbi_labels(f"slice{i}", size) for i in range(pages)])
    volume = np.stack([image_from(lab // 255, f"slice{i}", 1) for i, lab in enumerate(labels)])
    tifffile.imwrite(root / "train-volume.tif", volume, photometric="minisblack")
    tifffile.imwrite(root / "train-labels.tif", labels, photometric="minisblack")
    tifffile.imwrite(root / "test-volume.tif", volume[:2], photometric="minisblack")
    return root


def make_isbi_png(root: str | Path, size: tuple[int, int] = SIZE, count: int = 6) -> Path:
    """The zhixuhao/unet PNG layout: train/image/<n>.png, train/label/<n>.png, test/<n>.png."""
    root = Path(root)
    for d in ("train/image", "train/label", "test"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        labels = isbi_labels(f"slice{i}", size)
        image = image_from(labels // 255, f"slice{i}", 1)
        Image.fromarray(image).save(root / "train" / "image" / f"{i}.png")
        Image.fromarray(labels).save(root / "train" / "label" / f"{i}.png")
        if i < 2:
            Image.fromarray(image).save(root / "test" / f"{i}.png")
    return root


def camvid_annotation(stem: str, size: tuple[int, int] = SIZE) -> np.ndarray:
    """Class indices as in SegNet's CamVid: sky on top, road below, a car, void (11) edges."""
    h, w = size
    ann = np.full(size, 1, np.uint8)  # Building
    ann[: h // 4] = 0  # Sky
    ann[2 * h // 3:] = 3  # Road
    ann[blob_mask(stem, size).astype(bool)] = 8  # Car
    ann[:, :2] = 11  # void
    ann[-1, :] = 11
    return ann


def make_camvid(root: str | Path, size: tuple[int, int] = SIZE) -> Path:
    """train/ val/ test/ RGB PNGs + trainannot/ valannot/ testannot/ index PNGs (void 11)."""
    root = Path(root)
    for split, stems in CAMVID.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
        for stem in stems:
            ann = camvid_annotation(stem, size)
            Image.fromarray(image_from(ann, stem)).save(root / split / f"{stem}.png")
            Image.fromarray(ann).save(root / f"{split}annot" / f"{stem}.png")
    (root / "train.txt").write_text("".join(f"/SegNet/CamVid/train/{s}.png "
                                            f"/SegNet/CamVid/trainannot/{s}.png\n"
                                            for s in CAMVID["train"]))
    return root


def make_folder(root: str | Path, size: tuple[int, int] = SIZE, count: int = 6,
                masks_dir: str = "masks") -> Path:
    """The generic layout: images/<name>.png + masks/<name>_mask.png (0/255)."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / masks_dir).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        stem = f"img{i:02d}"
        mask = blob_mask(stem, size)
        Image.fromarray(image_from(mask, stem)).save(root / "images" / f"{stem}.png")
        Image.fromarray(mask * 255).save(root / masks_dir / f"{stem}_mask.png")
    return root


def make_single(root: str | Path, size: tuple[int, int] = (72, 96)) -> Path:
    """One 16-bit image (image.tif) and its instance labels (labels.tif), as in nuclei/."""
    import tifffile

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    labels = np.zeros(size, dtype=np.uint16)
    for k, (y, x) in enumerate([(10, 10), (10, 60), (40, 30), (50, 75), (60, 10)], start=1):
        labels[y:y + 9, x:x + 12] = k
    image = (labels > 0) * 1000 + _rng("single").integers(0, 200, size)
    tifffile.imwrite(root / "image.tif", image.astype(np.uint16))
    tifffile.imwrite(root / "labels.tif", labels)
    return root


BUILDERS = {
    "carvana": make_carvana,
    "oxford-pet": make_oxford_pet,
    "lgg-mri": make_lgg_mri,
    "isbi": make_isbi,
    "camvid": make_camvid,
    "folder": make_folder,
}
