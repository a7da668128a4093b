"""What the data alone decides, before any timing: scale, patch and batch size, depth,
validation split, loss and class weights (the planner adds the model and the schedule)."""

from __future__ import annotations

import math

from unetkit.plan.fingerprint import Fingerprint
from unetkit.plan.record import Decision
from unetkit.train.defaults import (
    MAX_SIDE,
    auto_scale,
    batch_for,
    patch_cap,
    patch_size,
    pixels_per_step,
)

SEPARATED_MIN_OBJECTS = 5  # foreground objects per image for "objects parted by borders"
# the measurements behind this rule are in docs/decisions.md
WEIGHT_MAPS_FOR_SEPARATED = False  # border weight maps lost to bce-dice on membrane
RARE = 0.10  # a class below this pixel share counts as rare
VAL_CAP = 50  # validation images per epoch at most (large data sets)
SCENE_BATCH = 8  # whole frames per step for scenes on CPU (docs/decisions.md)
SCENE_SIDE = 192  # longest side of a whole scene frame on CPU, px (docs/decisions.md)
FAINT_PX = 2.0  # a thin scene class narrower than this at the working scale ...
THIN_WEIGHT = 20.0  # ... gets this class weight (docs/decisions.md)


def scenes(fp: Fingerprint) -> bool:
    """Upright RGB images with several classes (streets, rooms, aerial-oblique views): the
    rules measured on CamVid apply (docs/decisions.md)."""
    return fp.channels == 3 and fp.upright and fp.num_classes >= 3


def _scene_scale(fp: Fingerprint, cap: int, device: str) -> Decision:
    """Whole frames for scenes: the median image shrunk until its longest side is
    SCENE_SIDE px (docs/decisions.md: on CamVid whole frames beat full-resolution crops by
    far, and 192 px beat 256 px within a CPU budget)."""
    longest = max(fp.height["median"], fp.width["median"])
    side = min(cap, SCENE_SIDE) if device == "cpu" else cap  # measured on CPU only
    scale = min(1.0, round(side / longest, 4))
    thin = [c for c in fp.classes if c.thin]
    kept = (f"; thin classes ({', '.join(c.name for c in thin)}) stay about "
            f"{min(min(c.thickness, c.edt_width) for c in thin) * scale:.1f} px wide"
            if thin else "")
    return Decision(scale, f"upright scenes: whole frames ({round(fp.height['median'] * scale)}x"
                    f"{round(fp.width['median'] * scale)} px) give the network the scene's "
                    "context and several times more images per second than full-resolution "
                    f"crops, which learn more per minute on a CPU than finer detail{kept}")


def _scale_decision(fp: Fingerprint, cap: int, device: str) -> Decision:
    """Whole frames for scenes; full resolution for thin structures; else the cache scale,
    shrunk further when large objects would not fit about two to a patch."""
    if scenes(fp):
        return _scene_scale(fp, cap, device)
    longest = max(fp.height["max"], fp.width["max"])
    thin = [c for c in fp.classes if c.thin]
    objects = [c for c in fp.object_classes() if not c.thin]
    if thin:
        width = min(min(c.thickness, c.edt_width) for c in thin)
        return Decision(1.0, f"thin structures ({', '.join(c.name for c in thin)}, about "
                        f"{width:.0f} px wide) would blur away if downscaled: full resolution")
    scale = fp.cache_scale if fp.cache_scale < 1 else auto_scale(longest)
    reason = (f"images ({longest} px at most) fit at full resolution" if scale == 1.0 else
              f"blob-like objects survive shrinking the {longest} px images to {MAX_SIDE} px")
    if objects and fp.height["min"] * scale > cap and fp.width["min"] * scale > cap:
        big = max(c.object_diameter["p90"] for c in objects)
        narrow = min(c.thickness for c in objects)
        context = cap / (2 * big)  # two object diameters per patch
        floor = 8.0 / max(narrow, 1e-6)  # keep objects at least 8 px thick
        if context < scale and floor < scale:
            scale = round(max(context, floor, 0.25), 4)
            reason = (f"large objects (p90 diameter {big:.0f} px): shrinking to fit about "
                      f"two of them in a {cap} px patch keeps them {narrow * scale:.0f}+ px "
                      "thick")
    return Decision(scale, reason)


def data_decisions(fp: Fingerprint, device: str) -> dict[str, Decision]:
    """Scale, patch size, batch size, depth and validation split: from the data alone."""
    cap = patch_cap(device)
    d: dict[str, Decision] = {"scale": _scale_decision(fp, cap, device)}
    s = d["scale"].value
    h = max(1, round(fp.height["min"] * s))
    w = max(1, round(fp.width["min"] * s))
    size = patch_size(h, w, device)
    d["size"] = Decision(size, f"the images' own scale, at most {cap} px on {device.upper()} "
                         f"(smallest image {h}x{w} px after scaling"
                         + ("; smaller images are padded" if min(h, w) < 32 else "") + ")")
    if scenes(fp):  # the whole frame, not a multiple of 32: the models pad it
        size = [min(cap, h), min(cap, w)]
        d["size"] = Decision(size, f"the whole frame (smallest image {h}x{w} px after scaling)")
    depth = 4 if min(size) >= 128 else 3 if min(size) >= 64 else 2
    d["depth"] = Decision(depth, "four poolings as in the classic U-Net" if depth == 4 else
                          f"{depth} poolings so the {min(size)} px patch keeps >= 8 px at the "
                          "bottleneck")

    n = fp.images
    official = fp.official_splits
    if official.get("val"):
        n_val, n_train = official["val"], official["train"]
        d["val_split"] = Decision(0.2, f"the data set's official split: {n_train} training, "
                                  f"{n_val} validation images (the fraction is unused)")
    elif n == 1:
        d["val_split"] = Decision(0.0, "only one image, so nothing can be held out: validation "
                                  "scores come from the training image and are optimistic "
                                  "(a folder holding just the image and its labels file is "
                                  "read as a grid of crops by the single format, which "
                                  "leaves crops to hold out)")
        n_val, n_train = 0, 1
    elif n <= VAL_CAP * 5:
        n_val = max(1, round(0.2 * n))
        d["val_split"] = Decision(0.2, f"20 % held out (~{n_val} image(s)), at least one image "
                                  "even for tiny sets")
        n_train = n - n_val
    else:
        split = round(max(VAL_CAP / n, 0.02), 4)
        n_val = max(1, round(split * n))
        d["val_split"] = Decision(split, f"{n_val} images validate reliably; validation runs "
                                  "every epoch, so more would only slow training")
        n_train = n - n_val
    d["test_split"] = Decision(0.0, "the budget goes to training; evaluate on a separate test "
                               "folder with `unetkit evaluate`")
    batch = max(1, min(batch_for(size, device), n_train))
    capped = f", capped by {n_train} training image(s)" if batch == n_train else ""
    d["batch_size"] = Decision(batch, f"about {pixels_per_step(device) // 65536} 256x256-"
                               f"patch equivalents per step on {device.upper()}{capped}")
    if scenes(fp) and device == "cpu":
        batch = max(1, min(SCENE_BATCH, n_train))
        d["batch_size"] = Decision(batch, f"{batch} whole frames per step, as measured on "
                                   "street scenes")
    # fit draws about one image-area of patches per training image per epoch
    train_area = fp.total_pixels * s * s * n_train / max(n, 1)
    samples = max(n_train, math.ceil(train_area / (size[0] * size[1])))
    d["_n_train"] = Decision(n_train, "")
    d["_n_val"] = Decision(n_val, "")
    d["_samples"] = Decision(samples, "")
    return d


def separated_objects(fp: Fingerprint) -> bool:
    """Binary masks whose foreground objects are many and parted by thin background borders
    (cells between membranes): the setting the U-Net paper's border weights were made for."""
    if not fp.binary or not fp.classes[0].thin:
        return False
    fg = fp.classes[1]
    return bool(fg.objects_per_image and fg.objects_per_image >= SEPARATED_MIN_OBJECTS)


def loss_decisions(fp: Fingerprint, scale: float = 1.0) -> dict[str, Decision]:
    """Loss and its options (class weights): from the data and the working `scale`."""
    d: dict[str, Decision] = {}
    minority = fp.minority()
    loss = "bce-dice" if fp.binary else "ce-dice"
    if WEIGHT_MAPS_FOR_SEPARATED and separated_objects(fp):
        d["loss"] = Decision("weighted-ce", (
            f"weighted-ce: {fp.classes[1].objects_per_image:g} objects per image parted by "
            f"thin {fp.classes[0].name} borders; the U-Net paper's border weight maps (computed "
            "per augmented patch) make the network learn the separating lines"))
    elif minority.pixel_fraction < RARE:
        d["loss"] = Decision(loss, (
            f"{loss}: class {minority.name} is rare ({minority.pixel_fraction:.1%} of pixels), "
            "and the Dice term keeps it from being swamped by the majority"))
    else:
        d["loss"] = Decision(loss, (
            f"{loss}: cross-entropy for steady gradients plus Dice to optimise the overlap "
            f"metric; classes are balanced enough (smallest {minority.pixel_fraction:.0%})"
            + ("; border weight maps (--loss weighted-ce) would stress the thin separating "
               "lines, but trained to a lower Dice in a short budget" if separated_objects(fp)
               else "")))
    fractions = [max(c.pixel_fraction, 1e-6) for c in fp.classes]
    if minority.pixel_fraction < RARE and d["loss"].value != "weighted-ce":
        median = sorted(fractions)[len(fractions) // 2]
        power = 1.0 if scenes(fp) else 0.5
        weights = [round(min(10.0, max(1.0, (median / f) ** power)), 2) for f in fractions]
        why = ("class weights by median-frequency balancing (SegNet's), clipped to [1, 10], for "
               "the cross-entropy term: in scenes the rare small classes need the full weight"
               if power == 1.0 else
               "class weights by square-root median-frequency balancing, clipped to [1, 10], "
               "for the cross-entropy term")
        faint = [c for c in fp.classes if c.thin and min(c.thickness, c.edt_width) * scale
                 < FAINT_PX] if scenes(fp) else []
        for c in faint:
            weights[c.index] = THIN_WEIGHT
        if faint:
            why += (f"; {', '.join(c.name for c in faint)} {THIN_WEIGHT:g}: thin and under "
                    f"{FAINT_PX:g} px wide at scale {scale:g}, too faint to be learnt otherwise")
        d["loss_options"] = Decision({"class_weights": weights}, why)
    else:
        d["loss_options"] = Decision({}, (
            "no class weights: the weight maps balance the classes per image"
            if d["loss"].value == "weighted-ce" else
            f"no class weights: no class is rarer than {RARE:.0%} of pixels"))
    return d
