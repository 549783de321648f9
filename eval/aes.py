"""The Accuracy-Efficiency Score (AES) of a run against a baseline (O1-Pruner, Luo et al. 2025, arXiv 2501.12570)."""

from __future__ import annotations

import math

# O1-Pruner's weights (Luo et al. 2025, arXiv 2501.12570): a point of relative accuracy lost costs 5, one gained earns
# 3, a point of relative length saved earns 1.
AES_WEIGHTS = {"alpha": 1.0, "beta": 3.0, "gamma": 5.0}


def accuracy_efficiency_score(
    accuracy: float,
    mean_tokens: float,
    base_accuracy: float,
    base_mean_tokens: float,
    *,
    alpha: float = AES_WEIGHTS["alpha"],
    beta: float = AES_WEIGHTS["beta"],
    gamma: float = AES_WEIGHTS["gamma"],
) -> float:
    """Accuracy-Efficiency Score against a baseline (O1-Pruner, Luo et al. 2025, arXiv 2501.12570):

        dL = (L_base - L) / L_base        (relative length saved, mean tokens)
        dA = (A - A_base) / A_base        (relative accuracy change)
        AES = alpha * dL + beta * dA       if dA >= 0
        AES = alpha * dL - gamma * |dA|    if dA < 0

    with alpha = 1, beta = 3, gamma = 5 by default (the paper's). Higher is better; 0 is the baseline itself.
    NaN when the baseline has zero accuracy or zero tokens (the ratios are undefined).
    Example: half the tokens at 0.8 vs 0.9 accuracy -> 0.5 - 5 * (0.1 / 0.9) = -0.0556.
    """
    if base_accuracy <= 0 or base_mean_tokens <= 0:
        return math.nan
    d_len = (base_mean_tokens - mean_tokens) / base_mean_tokens
    d_acc = (accuracy - base_accuracy) / base_accuracy
    return alpha * d_len + (beta * d_acc if d_acc >= 0 else -gamma * abs(d_acc))
