"""Evaluation plots, as PNG files: the PR curve, the calibration curve, the score histograms.

Each plot draws the model and the oracle on the same holdout rows.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402
from sklearn.metrics import precision_recall_curve  # noqa: E402


def write_plots(out: Path, y: np.ndarray, scores: dict[str, np.ndarray], title: str) -> list[Path]:
    """Write the three plots of ``scores`` (name to score) into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "pr_curve.png", out / "calibration.png", out / "score_histograms.png"]

    fig, ax = plt.subplots(figsize=(5, 4))
    for name, score in scores.items():
        precision, recall, _ = precision_recall_curve(y, score)
        ax.plot(recall, precision, label=name)
    ax.set(xlabel="recall", ylabel="precision", title=f"{title}: precision-recall")
    ax.legend()
    fig.tight_layout()
    fig.savefig(paths[0], dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    for name, score in scores.items():
        frac, mean = calibration_curve(y, score, n_bins=10, strategy="quantile")
        ax.plot(mean, frac, marker="o", label=name)
    ax.set(xlabel="mean score", ylabel="fraud rate", title=f"{title}: calibration")
    ax.set_xscale("symlog", linthresh=0.01)
    ax.legend()
    fig.tight_layout()
    fig.savefig(paths[1], dpi=90)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(scores), figsize=(5 * len(scores), 4), squeeze=False)
    bins = np.linspace(0, 1, 41)
    for ax, (name, score) in zip(axes[0], scores.items(), strict=True):
        ax.hist(score[y == 0], bins=bins, alpha=0.6, density=True, label="legitimate")
        ax.hist(score[y == 1], bins=bins, alpha=0.6, density=True, label="fraud")
        ax.set(xlabel="score", title=name, yscale="log")
        ax.legend()
    fig.tight_layout()
    fig.savefig(paths[2], dpi=90)
    plt.close(fig)
    return paths
