"""The routes for scripts and long work: predict an upload, background jobs, training,
and suggestions of what to annotate next."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Query, Request, Response, UploadFile
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from unetkit.serve import render
from unetkit.serve.errors import WrongMedia
from unetkit.serve.jobs import start_predict
from unetkit.serve.routes_images import Threshold, png_response, studio_of
from unetkit.serve.security import decode_image

router = APIRouter(prefix="/api")


class PredictJobRequest(BaseModel):
    folder: str | None = None  # relative to the data folder; None: the data set's images


class TrainRequest(BaseModel):
    epochs: int | None = None
    max_time: str | None = None  # e.g. "2m"


@router.post("/predict", response_model=None)
async def predict_upload(request: Request, file: Annotated[UploadFile, File()],
                         format: Literal["png", "rle", "json"] = "png",
                         threshold: Threshold = 0.5) -> Response | dict[str, Any]:
    """Predict an uploaded image: its mask PNG, its RLE (as `predict --rle`: foreground,
    1-based row-major runs) or its class fractions."""
    studio = studio_of(request)
    kind = (file.content_type or "").split(";")[0].strip().lower()
    if kind and not kind.startswith("image/") and kind != "application/octet-stream":
        raise WrongMedia(f"The upload {file.filename or 'file'} is {kind}; send an image "
                         "(PNG, JPEG, TIFF, GIF or BMP).")
    data = await file.read()
    image = await run_in_threadpool(decode_image, data, f"The upload {file.filename or 'file'}",
                                    studio.settings.max_pixels)
    mask = await run_in_threadpool(studio.models.predict_mask, image, threshold,
                                   file.filename or "upload")
    if format == "png":
        return png_response(render.png(mask))
    if format == "rle":
        from unetkit.data.rle import rle_encode

        return {"rle": rle_encode(mask > 0, "row"), "height": int(mask.shape[0]),
                "width": int(mask.shape[1])}
    names = studio.models.require()[1].class_names
    counts = [int((mask == k).sum()) for k in range(len(names))]
    return {"classes": names, "fractions": {n: c / mask.size for n, c in zip(names, counts,
                                                                             strict=True)}}


@router.post("/jobs/predict")
def predict_job(request: Request, body: PredictJobRequest | None = None) -> dict[str, str]:
    """Predict a folder in the background; poll GET /api/jobs/{id}."""
    return {"id": start_predict(studio_of(request), (body or PredictJobRequest()).folder).id}


@router.get("/jobs/{job_id}")
def job(job_id: str, request: Request) -> dict[str, Any]:
    return studio_of(request).jobs.get(job_id).as_dict()


@router.post("/train")
def train(request: Request, body: TrainRequest | None = None) -> dict[str, str]:
    """Fine-tune the current model on the masks (or train a first one) in the background."""
    body = body or TrainRequest()
    return {"id": studio_of(request).training.start(body.epochs, body.max_time).id}


@router.get("/train")
def train_status(request: Request) -> dict[str, Any]:
    return studio_of(request).training.status()


@router.post("/train/cancel")
def train_cancel(request: Request) -> dict[str, Any]:
    return studio_of(request).training.cancel()


@router.get("/suggest")
def suggest(request: Request, top: Annotated[int, Query(ge=1, le=200)] = 10
            ) -> dict[str, Any]:
    """Unlabelled images, the most useful correction first."""
    return {"items": studio_of(request).suggest(top)}
