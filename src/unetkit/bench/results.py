"""How the speed bench writes its JSON: images/s and ratios per phase, lever entries and
their verdicts, mask agreement against the fp32 eager baseline."""

from __future__ import annotations

from typing import Any

import torch

from unetkit.bench.measure import Variant, ratio, round_ratios, sig
from unetkit.infer.engine_records import AGREEMENT  # levers keep predict's agreement rule

WIN = 1.05  # a lever wins when it is at least this much faster than unetkit's default


def agreement(probs: torch.Tensor, base: torch.Tensor) -> dict[str, Any]:
    a, b = probs > 0.5, base > 0.5
    agree = float((a == b).float().mean())
    return {"mask_agreement": round(agree, 5),
            "max_abs_prob_diff": round(float((probs - base).abs().max()), 5),
            "passed": agree >= AGREEMENT}


def fill_phase(block: dict[str, Any], phase: str, ref: Variant, uk: Variant, extras: list[str]
          ) -> None:
    r, u = sig(ref.ips), sig(uk.ips)
    block[f"reference_{phase}_ips"] = r
    block[f"unetkit_{phase}_ips"] = u
    block[f"{phase}_ratio"] = ratio(u, r)
    block[f"{phase}_round_ratios"] = round_ratios(ref, uk)
    for who, v in (("reference", ref), ("unetkit", uk)):
        block[f"{who}_{phase}_peak_rss_mb"] = round(v.peak_mb, 1)
        block[f"{who}_{phase}_peak_extra_mb"] = round(v.extra_mb, 1)


def fill_extra(block: dict[str, Any], phase: str, key: str, v: Variant, ref: Variant) -> None:
    block[f"{key}_{phase}_ips"] = sig(v.ips)
    block[f"{key}_{phase}_ratio_vs_reference"] = ratio(sig(v.ips), sig(ref.ips))
    block[f"{key}_{phase}_peak_extra_mb"] = round(v.extra_mb, 1)


def lever_entry(v: Variant, block: dict[str, Any], phase: str, check: dict | None,
                 note: str, setup_s: float | None = None) -> dict[str, Any]:
    if v.error is not None:
        return {"verdict": "failed", "error": v.error, "note": note}
    ips = sig(v.ips)
    vs_uk = ratio(ips, block[f"unetkit_{phase}_ips"])
    entry: dict[str, Any] = {
        "ips": ips, "ratio_vs_reference": ratio(ips, block[f"reference_{phase}_ips"]),
        "ratio_vs_unetkit": vs_uk, "peak_extra_mb": round(v.extra_mb, 1),
        "warmup_s": round(v.warmup_s, 2)}
    if setup_s is not None:
        entry["setup_s"] = setup_s
    if check is not None:
        entry["check"] = check
    entry["note"] = note
    accurate = check is None or check.get("passed", False)
    entry["verdict"] = ("inaccurate" if not accurate else
                        "won" if vs_uk is not None and vs_uk >= WIN else "lost")
    return entry


# the inference levers that are what `predict --engine auto` runs for (engine, precision)
AUTO_LEVERS = {("onnx", "32"): "onnxruntime", ("onnx", "int8"): "onnxruntime_int8",
               ("torch", "bf16-mixed"): "bf16"}


def predict_default(block: dict[str, Any], levers: dict[str, Any], precision: str
                    ) -> dict[str, Any]:
    """What `predict` runs by default (`--engine auto`) on this CPU, by the same rule: the
    fastest of auto's candidates whose masks agreed on >= 99.5% of pixels. The torch
    engine at the bench's precision is the unetkit row; the others are its levers."""
    from unetkit.infer.engines import candidates

    options = {f"torch {precision}": (block["unetkit_infer_ips"], "unetkit")}
    for engine, prec in candidates(openvino=False):
        key = AUTO_LEVERS.get((engine, prec))
        entry = levers.get(key or "", {})
        if (engine, prec) != ("torch", precision) and "ips" in entry and \
                (entry.get("check") or {}).get("passed"):
            options[f"{engine} {prec}"] = (entry["ips"], key)
    label, (ips, key) = max(options.items(), key=lambda kv: kv[1][0])
    return {"engine": label, "measured_as": key, "ips": ips,
            "ratio": ratio(ips, block["reference_infer_ips"]),
            "candidates_ips": {k: v[0] for k, v in options.items()},
            "rule": f"fastest of --engine auto's candidates on this CPU whose masks agree "
                    f"with float32 on >= {100 * AGREEMENT:g}% of pixels (OpenVINO is opt-in)"}
