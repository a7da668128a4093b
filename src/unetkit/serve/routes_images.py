"""The routes about one data set image: views, truth, prediction, scores, saving a mask.

Thin: each parses its request, asks the Studio and renders a PNG or JSON. Plain `def`
routes run in FastAPI's worker threads, so a prediction never blocks the event loop.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from unetkit.errors import UnetkitError
from unetkit.serve import render
from unetkit.serve.errors import NotFound, WrongMedia
from unetkit.serve.security import decode_index_mask
from unetkit.serve.state import Studio

router = APIRouter(prefix="/api")
Threshold = Annotated[float, Query(ge=0.0, le=1.0, description="Foreground probability "
                                   "threshold (binary models).")]
PNG_TYPES = ("image/png", "application/octet-stream")


def studio_of(request: Request) -> Studio:
    return request.app.state.studio


def png_response(data: bytes) -> Response:
    return Response(data, media_type="image/png")


@router.get("/images")
def list_images(request: Request, offset: Annotated[int, Query(ge=0)] = 0,
                limit: Annotated[int, Query(ge=1, le=1000)] = 60,
                filter: Literal["all", "labelled", "unlabelled"] = "all",
                q: str = "") -> dict[str, Any]:
    """A page of the data set's images, optionally only (un)labelled or matching `q`."""
    data = studio_of(request).data
    images = [i for i in data.images()
              if (filter == "all" or (i.mask is not None) == (filter == "labelled"))
              and q.lower() in i.name.lower()]
    items = []
    for image in images[offset:offset + limit]:
        width, height = data.size(image)
        items.append({"name": image.name, "width": width, "height": height,
                      "has_mask": image.mask is not None})
    return {"total": len(images), "offset": offset, "items": items}


@router.get("/images/{name:path}/thumb", response_class=Response)
def thumb(name: str, request: Request) -> Response:
    """The image, longest side 160 px (cached)."""
    studio = studio_of(request)
    image = studio.data.get(name)
    key = (image.name, image.path.stat().st_mtime_ns)
    data = studio.thumbs.get(key)
    if data is None:
        data = render.thumbnail(studio.data.read_image(image))
        studio.thumbs.put(key, data, len(data))
    return png_response(data)


@router.get("/images/{name:path}/image", response_class=Response)
def image_view(name: str, request: Request,
               max_side: Annotated[int, Query(ge=0)] = 2048,
               x: int | None = None, y: int | None = None, w: int | None = None,
               h: int | None = None) -> Response:
    """The image as 8-bit grey or RGB: downscaled to `max_side` (0: full size), or the
    full-resolution window x, y, w, h."""
    studio = studio_of(request)
    pixels = render.displayable(studio.data.read_image(studio.data.get(name)))
    window = (x, y, w, h)
    if any(v is not None for v in window):
        if any(v is None for v in window):
            raise UnetkitError("A crop needs all of x, y, w and h.")
        return png_response(render.png(render.crop(pixels, x, y, w, h)))
    return png_response(render.png(render.downscaled(pixels, max_side)))


@router.get("/images/{name:path}/truth", response_class=Response)
def truth(name: str, request: Request) -> Response:
    """The mask as 8-bit class indices at full size (255 = not annotated)."""
    data = studio_of(request).data
    image = data.get(name)
    mask = data.read_truth(image)
    if mask is None:
        raise NotFound(f"{name} has no mask yet.")
    return png_response(render.png(mask))


@router.get("/images/{name:path}/prediction", response_class=Response)
def prediction(name: str, request: Request, threshold: Threshold = 0.5) -> Response:
    """The current model's mask: 8-bit class indices at full size (cached per model)."""
    studio = studio_of(request)
    return png_response(render.png(studio.prediction(studio.data.get(name)).mask(threshold)))


@router.get("/images/{name:path}/probabilities", response_class=Response)
def probabilities(name: str, request: Request) -> Response:
    """16-bit probability of the foreground (binary) or of the winning class."""
    studio = studio_of(request)
    return png_response(render.png(studio.prediction(studio.data.get(name)).probability))


@router.get("/images/{name:path}/uncertainty", response_class=Response)
def uncertainty(name: str, request: Request) -> Response:
    """8-bit normalised predictive entropy (0 certain .. 255 uniform)."""
    studio = studio_of(request)
    return png_response(render.png(studio.prediction(studio.data.get(name)).entropy))


@router.get("/images/{name:path}/overlay", response_class=Response)
def overlay(name: str, request: Request, threshold: Threshold = 0.5) -> Response:
    """The image with the prediction drawn over it, for download."""
    studio = studio_of(request)
    image = studio.data.get(name)
    mask = studio.prediction(image).mask(threshold)
    names = studio.models.require()[1].class_names
    return png_response(render.overlay_png(studio.data.read_image(image), mask, names))


@router.get("/images/{name:path}/metrics")
def metrics(name: str, request: Request, threshold: Threshold = 0.5) -> dict[str, Any]:
    """Prediction against the mask over the annotated pixels: Dice, IoU, per class."""
    studio = studio_of(request)
    return studio.metrics(studio.data.get(name), threshold)


@router.put("/images/{name:path}/mask")
async def put_mask(name: str, request: Request) -> dict[str, Any]:
    """Save an 8-bit class-index PNG (255 = not annotated) as the image's mask, in the data
    set's own convention; the previous mask is kept under .unetkit/history/."""
    studio = studio_of(request)
    image = await run_in_threadpool(studio.data.get, name)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in PNG_TYPES:
        raise WrongMedia(f"A mask is sent as image/png, not {kind or 'no content type'}.")
    body = await request.body()
    index = await run_in_threadpool(decode_index_mask, body, f"The mask for {name}",
                                    studio.settings.max_pixels)
    return await run_in_threadpool(studio.save_mask, image, index)


@router.post("/images/{name:path}/accept")
def accept(name: str, request: Request, threshold: Threshold = 0.5) -> dict[str, Any]:
    """Save the current prediction as the image's mask (as PUT .../mask does)."""
    studio = studio_of(request)
    return studio.accept(studio.data.get(name), threshold)


@router.get("/masks.zip", response_class=Response)
def masks_zip(request: Request) -> Response:
    """Every mask of the data set (and classes.txt), as a zip."""
    return Response(studio_of(request).data.masks_zip(), media_type="application/zip",
                    headers={"Content-Disposition": 'attachment; filename="masks.zip"'})
