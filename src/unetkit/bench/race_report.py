"""The table and the picture of `unetkit bench race` (race.json is their one source)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _seconds(t: float | None) -> str:
    return "never" if t is None else f"{t:.0f} s"


def format_race(result: dict[str, Any]) -> str:
    """One line per entrant: steps, final score, time to the target and ratio."""
    metric, target = result["metric"], result.get("target")
    aim = f"to {target['score']:.4f}" if target else "to target"
    lines = [f"unetkit bench race — {result['data']}, budget {result['budget']} of training "
             f"each, scored every {result['every_s']:g} s on {len(result['held_out'])} "
             f"held-out images ({metric})",
             f"{'entrant':<14}{'steps':>7}{'final ' + metric:>16}{'time ' + aim:>18}"
             f"{'ratio':>8}"]
    for name, e in result["entrants"].items():
        ratio = e.get("ratio_to_target_peer")
        lines.append(f"{name:<14}{e['steps']:>7}{e['final_score']:>16.4f}"
                     f"{_seconds(e.get('time_to_target_s')):>18}"
                     f"{'-' if ratio is None else f'{ratio:.2f}':>8}")
    if target:
        lines.append(f"target: {target['entrant']}'s final {metric} {target['score']:.4f}, "
                     f"first reached at {_seconds(target['time_s'])}")
    goal = result.get("goal", {})
    if goal.get("met") is not None:
        lines.append(f"unetkit within {goal['unetkit_ratio_at_most']:.2f} of that time: "
                     f"{'yes' if goal['met'] else 'no'}")
    if goal.get("unetkit_lead") is not None:
        lines.append(f"unetkit's final {metric} minus the best peer's: "
                     f"{goal['unetkit_lead']:+.4f}")
    machine = result["machine"]
    lines.append(f"{machine['cpu_model']}, {machine['torch_threads']} threads, bf16 "
                 f"{'used' if machine['bf16']['used'] else 'off'}")
    return "\n".join(lines)


def plot_race(result: dict[str, Any], path: Path) -> None:
    """Held-out score against training time, one line per entrant, the target dashed."""
    from unetkit.plotting import plt, save_figure

    minutes = result["budget_s"] >= 120
    unit = 60.0 if minutes else 1.0
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, e in result["entrants"].items():
        ax.plot([t / unit for t, _ in e["curve"]], [s for _, s in e["curve"]], marker="o",
                markersize=3, label=f"{name} ({e['steps']} steps)")
    target = result.get("target")
    if target:
        ax.axhline(target["score"], linestyle="--", color="grey", linewidth=1,
                   label=f"{target['entrant']}'s final {result['metric']} "
                         f"{target['score']:.3f}")
    ax.set_xlabel(f"training time ({'min' if minutes else 's'}, scoring excluded)")
    ax.set_ylabel(f"held-out {result['metric']}")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"bench race: {Path(result['data']).name}, {result['budget']} each, "
                 f"{len(result['held_out'])} held-out images", fontsize=9)
    save_figure(fig, path)
