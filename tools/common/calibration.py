"""Calibration for the model cards: temperature or vector scaling (Guo et al. 2017), and the expected
calibration error with its reliability bins. One implementation for the face and voice tools.

A card's ``"temperature": T`` (and ``"logit_bias"``) means softmax(logits / T + b). It is fitted on
held-out predictions only (PublicTest for faces, the CV folds' test actors for voices), so the
percentages people see are calibrated on faces and voices the model never trained on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


ECE_BINS = 15


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> dict:
    """Expected calibration error over equal-width confidence bins, and the bins themselves.

    ECE = sum over bins of (predictions in bin / all) * |accuracy in bin - mean confidence in bin|:
    how far "shown at p %" is from "right p % of the time", on average over the predictions.
    """
    confidence = probs.max(1)
    correct = probs.argmax(1) == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    count = np.bincount(which, minlength=bins)
    mean_conf = np.bincount(which, confidence, bins) / np.maximum(count, 1)
    accuracy = np.bincount(which, correct, bins) / np.maximum(count, 1)
    ece = float(np.sum(count * np.abs(accuracy - mean_conf)) / max(1, len(labels)))
    return {"ece": ece, "bins": bins, "count": count.tolist(), "confidence": mean_conf.round(4).tolist(),
            "accuracy": accuracy.round(4).tolist()}


def fit_calibration(logits: np.ndarray, labels: np.ndarray, kind: str) -> tuple[list | float, list | float]:
    """Temperature (one number) or vector scaling (a scale and a bias per class) minimising the NLL.

    Fitted on PublicTest logits in the model's own output order (Guo et al. 2017). Temperature
    scaling changes no argmax; vector scaling can also fix a model that is over-confident in some
    classes and under-confident in others, at the price of moving a few argmaxes.
    """
    from scipy.optimize import minimize

    k = logits.shape[1]

    def unpack(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (p[:1], np.zeros(k)) if kind == "temperature" else (p[:k], p[k:])

    def nll(p: np.ndarray) -> float:
        scale, bias = unpack(p)
        z = logits / scale + bias
        z = z - z.max(1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(1, keepdims=True))
        return float(-log_p[np.arange(len(labels)), labels].mean())

    start = np.ones(1) if kind == "temperature" else np.r_[np.ones(k), np.zeros(k)]
    bounds = [(0.05, 20.0)] * (1 if kind == "temperature" else k) + [(-10.0, 10.0)] * (0 if kind == "temperature" else k)
    scale, bias = unpack(minimize(nll, start, method="L-BFGS-B", bounds=bounds).x)
    if kind == "temperature":
        return round(float(scale[0]), 4), 0.0
    return [round(float(v), 4) for v in scale], [round(float(v), 4) for v in bias]


def plot_reliability(path: Path, cal: dict, title: str, unit: str) -> None:
    """A reliability diagram of `reliability`'s bins: accuracy against confidence, and how many `unit` per bin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges = np.linspace(0, 1, cal["bins"] + 1)
    filled = np.array(cal["count"]) > 0
    fig, (ax, ax_n) = plt.subplots(2, 1, figsize=(5.6, 6.4), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfectly calibrated")
    ax.bar(edges[:-1][filled], np.array(cal["accuracy"])[filled], width=1 / cal["bins"], align="edge",
           edgecolor="black", alpha=0.7, label="accuracy in bin")
    ax.plot(np.array(cal["confidence"])[filled], np.array(cal["accuracy"])[filled], "o", color="C3",
            label="mean confidence in bin")
    ax.set_ylabel("accuracy"), ax.set_ylim(0, 1), ax.legend(loc="upper left")
    ax.set_title(title)
    ax_n.bar(edges[:-1], cal["count"], width=1 / cal["bins"], align="edge", edgecolor="black", color="C7")
    ax_n.set_xlabel("confidence (top class probability)"), ax_n.set_ylabel(unit), ax_n.set_xlim(0, 1)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The one T in [0.05, 20] that minimises the negative log-likelihood of ``labels``."""
    return float(fit_calibration(logits, labels, "temperature")[0])


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error of the top class over equal-width bins (see reliability)."""
    return reliability(probs, labels, bins)["ece"]
