"""The readable table `unetkit bench speed` prints from its JSON result."""

from __future__ import annotations

import sys
from typing import Any

FAMILIES = ("classic", "mobilenet")
PHASES = ("train", "infer")


def format_table(result: dict[str, Any]) -> str:
    s = result.get("settings", {})
    lines = [f"unetkit bench speed — {s.get('device')} ({s.get('cpu', '')}), "
             f"{s.get('threads')} thread(s), batch {s.get('batch')} at "
             f"{'x'.join(map(str, s.get('size', [])))}, precision {s.get('precision')}"]
    for key in FAMILIES:
        if result.get(key):
            lines += ["", *_family_lines(key, result[key])]
    d = result.get("data")
    if d:
        lines += ["", f"data pipeline ({d['images']} images {d['image_size']}px -> "
                      f"{d['crop']} crops, batch {d['batch']}): cold {d['cold_ips']:.3g} "
                      f"img/s, cached {d['cached_ips']:.3g} img/s"]
    if result.get("train_processes"):
        lines += ["", processes_line(result["train_processes"])]
    if result.get("levers"):
        lines += ["", *_lever_lines(result["levers"])]
    if result.get("predict_scaling"):
        from unetkit.bench.scaling import format_scaling

        lines += ["", format_scaling(result["predict_scaling"])]
    lines += ["", "ratio = unetkit img/s / reference img/s (> 1: unetkit is faster); +MB = "
                  "peak resident memory a step adds"]
    return "\n".join(lines)


def processes_line(p: dict[str, Any]) -> str:
    """`train_processes`: training images/s on one process against N DDP processes."""
    one = ", ".join(f"{k.split('_')[2]} thread(s) {v:.3g}" for k, v in p.items()
                    if k.startswith("1_process_"))
    head = f"train_processes ({p['model']}, batch {p['batch']}): 1 process: {one or '-'}"
    n = p["processes"]
    if f"{n}_processes_ips" not in p:
        return f"{head}; processes not measured: {p.get('error') or p.get('skipped')}"
    return (f"{head}; {n} processes x {p['threads_each']} thread(s): "
            f"{p[f'{n}_processes_ips']:.3g} img/s, "
            f"{p[f'ratio_{n}_processes_vs_best_1_process']:.2f}x the best single process "
            f"(start-up {p['startup_s']:.0f}s)")


def _family_lines(key: str, b: dict[str, Any]) -> list[str]:
    lines = [f"{key}: unetkit {b['unetkit_params']:,} params vs reference "
             f"{b['reference_params']:,} params",
             f"{'':<11}{'phase':<7}{'reference img/s':>16}{'unetkit img/s':>15}{'ratio':>8}"
             f"{'ref +MB':>9}{'unetkit +MB':>13}"]
    for phase in PHASES:
        lines.append(f"{key:<11}{phase:<7}{b[f'reference_{phase}_ips']:>16.3g}"
                     f"{b[f'unetkit_{phase}_ips']:>15.3g}{b[f'{phase}_ratio']:>8.2f}"
                     f"{b[f'reference_{phase}_peak_extra_mb']:>9.0f}"
                     f"{b[f'unetkit_{phase}_peak_extra_mb']:>13.0f}")
    auto = b.get("predict_default")
    if auto:
        lines.append(f"{key:<11}{'predict':<7}{b['reference_infer_ips']:>16.3g}"
                     f"{auto['ips']:>15.3g}{auto['ratio']:>8.2f}  (predict's default "
                     f"--engine auto: {auto['engine']})")
    if "mobilenet_v2_unet_train_ips" in b:
        lines.append(f"  mobilenet_v2-unet ({b['mobilenet_v2_unet_params']:,} params): "
                     f"train {b['mobilenet_v2_unet_train_ips']:.3g} img/s, infer "
                     f"{b['mobilenet_v2_unet_infer_ips']:.3g} img/s")
    return lines


def _lever_line(label: str, e: dict[str, Any]) -> str:
    if "ips" not in e:
        return f"{label:<36}{'':>28}  {'':<18}{e.get('verdict')}: {e.get('error', '')[:60]}"
    c = e.get("check") or {}
    check = (f"agree {c['mask_agreement']:.4f}" if "mask_agreement" in c
             else "same math" if c else "")
    return (f"{label:<36}{e['ips']:>9.3g}{e['ratio_vs_reference']:>8.2f}"
            f"{e['ratio_vs_unetkit']:>11.2f}  {check:<18}{e['verdict']}")


def _lever_lines(lev: dict[str, Any]) -> list[str]:
    lines = [f"{'lever':<36}{'img/s':>9}{'vs ref':>8}{'vs unetkit':>11}  {'check':<18}verdict"]
    for key in FAMILIES:
        for phase in PHASES:
            for name, e in lev.get(key, {}).get(phase, {}).items():
                lines.append(_lever_line(f"{key} {phase} {name}", e))
    t = lev.get("threads")
    if t:
        lines.append(f"threads: 2 vs 1 = {t['classic_infer']['ratio_2_vs_1']} (classic "
                     f"infer), {t['mobilenet_train']['ratio_2_vs_1']} (mobilenet train); "
                     f"chose {t['chosen']}")
    w = lev.get("data_workers")
    if w:
        lines.append(f"data workers: {w.get('workers')} workers {w.get('cached_ips')} "
                     f"img/s vs in-process, ratio {w.get('ratio_vs_in_process')}")
    return lines


def print_table(result: dict[str, Any], file: Any = None) -> None:
    print(format_table(result), file=file or sys.stdout)
