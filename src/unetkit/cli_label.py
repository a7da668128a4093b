"""Commands about annotation effort: `scribble` makes a sparse (partially labelled) copy of a
data set. Registered in cli.py; each command is a thin shell over a data-layer function."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from unetkit.cli_support import guarded


@guarded
def scribble(
    data: Annotated[Path, typer.Argument(help="Fully labelled data set, in any layout unetkit "
                                         "reads.")],
    out: Annotated[Path, typer.Option(help="New folder for the sparse data set (folder "
                                      "layout).")],
    fraction: Annotated[float, typer.Option(help="Share of each image's pixels to keep "
                                            "labelled, in (0, 1).")] = 0.05,
    seed: Annotated[int, typer.Option(help="Seed of the stroke placement.")] = 0,
    width: Annotated[int, typer.Option(help="Stroke width in pixels.")] = 3,
    format: Annotated[str, typer.Option(help="Layout: auto or a name from `unetkit formats`.")
                      ] = "auto",
) -> None:
    """Make a sparse version of a labelled data set: a few strokes per class, the rest 255.

    Strokes follow the skeleton of every class region (background included); the copy's
    classes.txt declares 255 as unlabeled, so `unetkit fit --data OUT` trains on the strokes
    alone. The achieved shares are printed and written to OUT/scribble.json.

    Example: unetkit scribble data/membrane --out data/membrane-sparse --fraction 0.05
    """
    from unetkit.data.scribble import scribble_dataset

    print(scribble_dataset(data, out, fraction, seed=seed, width=width, format=format).summary())


@guarded
def rank(
    model: Annotated[Path, typer.Argument(help="Run directory, model artifact directory or "
                                      "hf://OWNER/NAME[@REV].")],
    folder: Annotated[Path, typer.Argument(help="Folder of images, or a data set (images "
                                           "that have masks are skipped).")],
    top: Annotated[int, typer.Option(help="How many images to suggest.")] = 10,
    out: Annotated[Path, typer.Option(help="Folder for rank.csv and rank.png.")] = Path("rank"),
    diversity: Annotated[float, typer.Option(help="0..1: how much resembling an image "
                                             "ranked above lowers a score (0: uncertainty "
                                             "alone).")] = 1.0,
    tta: Annotated[bool, typer.Option(help="Use flip/rotation views as members (for models "
                                     "without folds or dropout).")] = False,
    tile: Annotated[int | None, typer.Option(help="Tile size for large images.")] = None,
) -> None:
    """Suggest which unlabelled images to annotate next: the most uncertain, near-duplicates
    held back. Writes OUT/rank.csv and OUT/rank.png (thumbnails beside their uncertainty
    maps) and prints the table.

    Example: unetkit rank runs/membrane data/unlabelled --top 8 --out rank
    """
    import sys

    from unetkit.infer.predict import Predictor
    from unetkit.infer.rank import (
        check_options,
        contact_sheet,
        format_table,
        rank_images,
        unlabelled_images,
        write_rank_csv,
    )
    from unetkit.io_utils import ensure_dir
    from unetkit.models.artifact import load_model

    check_options(top, diversity)
    candidates = unlabelled_images(folder)
    ensure_dir(out, f"--out {out}")
    predictor = Predictor(load_model(model), tile=tile, tta=tta, purpose="evaluate")
    ranked = rank_images(predictor, candidates, top=top, diversity=diversity)
    write_rank_csv(ranked, out / "rank.csv")
    contact_sheet(ranked, out / "rank.png")
    print(format_table(ranked))
    print(f"Ranked {len(candidates)} image(s) by {ranked[0].source} uncertainty; wrote "
          f"{out / 'rank.csv'} and {out / 'rank.png'}.", file=sys.stderr)
