"""The demo's report: a markdown page and a PNG plot of the loop, under ``.bottega/reports/``.

The plot shows, against simulated time, the monitor's online PR-AUC (window by window, once
labels have arrived), the oracle's PR-AUC (the ceiling) and the share of drifted features, with
each step of the loop marked.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bottega.demo.timeline import Timeline
from bottega.replay.player import ReplayStats

MARK_COLOURS = {
    "drift onset": "tab:red",
    "alert firing": "tab:orange",
    "retraining started": "tab:purple",
    "promotion": "tab:green",
    "new champion answering": "tab:blue",
    "quality recovered": "tab:olive",
}


def write_plot(path: Path, timeline: Timeline, replays: list[ReplayStats]) -> Path:
    """The loop's plot, as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never a display
    import matplotlib.pyplot as plt

    fig, quality_axis = plt.subplots(figsize=(11, 5))
    drift_axis = quality_axis.twinx()
    online = [
        (datetime.fromisoformat(w["quality_window_end"]), w["online"]["pr_auc"])
        for w in timeline.windows
        if w.get("quality_window_end") and (w.get("online") or {}).get("pr_auc") is not None
    ]
    if online:
        quality_axis.plot(*zip(*online, strict=True), "o-", label="online PR-AUC (monitor)")
    oracle = [(w.end, w.pr_auc) for stats in replays for w in stats.oracle if w.pr_auc is not None]
    if oracle:
        quality_axis.plot(*zip(*oracle, strict=True), "--", color="grey", label="oracle PR-AUC")
    drift = [
        (datetime.fromisoformat(w["window_end"]), w["drift_share"])
        for w in timeline.windows
        if w.get("drift_share") is not None
    ]
    if drift:
        drift_axis.plot(
            *zip(*drift, strict=True), ":", color="tab:red", alpha=0.6, label="drift share"
        )
    # matplotlib converts datetimes to its own floats, which its stubs do not say.
    for moment in timeline.moments:
        if moment.simulated is not None:
            quality_axis.axvline(
                moment.simulated,  # type: ignore[arg-type]
                color=MARK_COLOURS.get(moment.what, "black"),
                linewidth=1,
                alpha=0.8,
                label=moment.what,
            )
    quality_axis.set_ylim(0, 1)
    drift_axis.set_ylim(0, 1)
    quality_axis.set_xlabel("simulated time (UTC)")
    quality_axis.set_ylabel("PR-AUC")
    drift_axis.set_ylabel("share of drifted features")
    handles, labels = quality_axis.get_legend_handles_labels()
    more, more_labels = drift_axis.get_legend_handles_labels()
    quality_axis.legend(handles + more, labels + more_labels, loc="upper left", fontsize=8)
    quality_axis.set_title("Bottega: drift, alert, retraining, promotion, recovery")
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def markdown(
    timeline: Timeline, replays: list[ReplayStats], figures: dict[str, float], plot: Path
) -> str:
    """The report's text."""
    started = min((r.wall_started for r in replays), default=0.0)
    lines = [
        "# Bottega demo: the closed loop",
        "",
        f"Written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        "## Replays",
        "",
        "| scenario | simulated | transactions | scored | failed | labels |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in replays:
        span = f"{r.sim_start:%m-%d %H:%M} .. {(r.sim_now or r.sim_start):%m-%d %H:%M}"
        lines.append(
            f"| {r.scenario} | {span} | {r.transactions} | {r.predicted} | "
            f"{r.predict_errors} | {r.labels_sent} |"
        )
    lines += [
        "",
        "## Timeline",
        "",
        "| step | wall (s after the first replay) | simulated | detail |",
        "|---|---:|---|---|",
    ]
    for m in timeline.moments:
        simulated = f"{m.simulated:%m-%d %H:%M}" if m.simulated else "-"
        lines.append(f"| {m.what} | {m.wall - started:.0f} | {simulated} | {m.detail} |")
    lines += [
        "",
        "## Quality on the drifted regime, by model version",
        "",
        "Scored against the ground truth of the labelled transactions each version answered.",
        "",
        "| version | answered | frauds | PR-AUC | oracle PR-AUC |",
        "|---|---:|---:|---:|---:|",
    ]
    for q in timeline.quality.values():
        lines.append(
            f"| v{q.version} | {q.answered} | {q.frauds} | {_fmt(q.pr_auc)} | "
            f"{_fmt(q.oracle_pr_auc)} |"
        )
    lines += ["", "## Figures", ""]
    lines += [f"- `{k}`: {v}" for k, v in figures.items()]
    lines += ["", f"![the loop]({plot.name})", ""]
    if timeline.alerts:
        lines += ["## Alerts that fired", ""]
        lines += [
            f"- {a.name} (retrain: {str(a.retrain).lower()}) at {a.wall - started:.0f} s"
            for a in timeline.alerts
        ]
        lines.append("")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def write_report(
    directory: Path, timeline: Timeline, replays: list[ReplayStats], figures: dict[str, float]
) -> Path:
    """Write ``demo-<time>.md`` and its PNG in ``directory``; return the markdown's path."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    plot = write_plot(directory / f"demo-{stamp}.png", timeline, replays)
    page = directory / f"demo-{stamp}.md"
    page.write_text(markdown(timeline, replays, figures, plot))
    return page
