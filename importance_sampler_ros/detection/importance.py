"""Importance of a detection: the norm of its loss gradient at the detector's last layer.

For one detection with box-head feature h (D values), class logits z (C values, background
included), probabilities p = softmax(z) and label y (the detection's own class, taken as the
truth), the cross-entropy loss L = -log p_y has, at the classification layer z = W h + b,

    dL/dW = (p - e_y) h^T        dL/db = p - e_y

so the Frobenius norm of the gradient with respect to weight and bias together is

    ||(p - e_y) [h, 1]^T|| = ||p - e_y|| * sqrt(||h||^2 + 1).

No backward pass is needed: h and z come from the forward pass that produced the detection.

What the box-regression branch contributes: nothing, and that is why it is left out. The
regression layer (`bbox_pred`, next to `cls_score` in torchvision's box predictor) is also a last
layer, but the loss it belongs to measures the distance of the predicted box from a target box.
With the detection's own prediction taken as the truth, as for the class, the target is the
predicted box itself, the smooth-L1 residual is zero and so is its gradient. The importance is
therefore the gradient norm over the classification layer alone (`cls_score` weight and bias).

Numerics: when p_y is close to 1 in float32, p_y - 1 cancels (it can come out as 0 or with a
large relative error). Every other component p_k (k != y) is a small positive number that softmax
computes accurately, and p_y - 1 = -(sum of the other p_k) exactly, so the label component is
computed that way.
"""
from __future__ import annotations

import torch

# The scorer names live beside the detector parameters (no torch there); importable from here too.
from importance_sampler_ros.detection.config import SCORERS as SCORERS


def probability_residuals(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """p - onehot(label) per row, computed stably in float32 (or the logits' wider dtype).

    logits: (N, C); labels: (N,) integer class indices in [0, C). Returns (N, C).
    """
    if logits.ndim != 2:
        raise ValueError(f'logits must be (N, C), got shape {tuple(logits.shape)}')
    labels = labels.reshape(-1).long()
    if labels.numel() != logits.shape[0]:
        raise ValueError(f'{labels.numel()} labels for {logits.shape[0]} rows of logits')
    dtype = torch.promote_types(logits.dtype, torch.float32)
    probs = torch.softmax(logits.to(dtype), dim=1)
    label_mask = torch.zeros_like(probs, dtype=torch.bool)
    label_mask.scatter_(1, labels.view(-1, 1), True)
    others = probs.masked_fill(label_mask, 0.0)
    label_component = -others.sum(dim=1, keepdim=True)
    return torch.where(label_mask, label_component, others)


def last_layer_gradient_norms(
    features: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Frobenius norm of d CE(logits, label) / d (weight, bias) of the classification layer.

    features: (N, D) box-head features h that the layer saw; logits: (N, C) its outputs;
    labels: (N,) each detection's own class. Returns (N,) in float32 or wider, >= 0.
    """
    if features.ndim != 2 or features.shape[0] != logits.shape[0]:
        raise ValueError(
            f'features must be (N, D) with N = {logits.shape[0]}, got {tuple(features.shape)}'
        )
    residuals = probability_residuals(logits, labels)
    feature_norm_sq = features.to(residuals.dtype).pow(2).sum(dim=1)
    return torch.linalg.vector_norm(residuals, dim=1) * torch.sqrt(feature_norm_sq + 1.0)


# --- every scorer, from the same forward pass ---------------------------------------------------

SCORER_DESCRIPTIONS = {
    'gradient_norm': "the paper's last-layer gradient norm ||p - e_y|| sqrt(||h||^2 + 1)",
    'prob_residual': '||p - e_y||: the gradient norm without the feature-norm factor',
    'entropy': 'entropy of p over all classes, background included (nats)',
    'margin': '1 - (p_1 - p_2): one minus the gap between the two most probable classes',
    'least_confidence': "1 - p_y: one minus the probability of the detection's own class",
}


def uncertainty_scores(features: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor
                       ) -> torch.Tensor:
    """(N, len(SCORERS)) scores per detection, columns in SCORERS order; all >= 0, larger = the
    model is less sure. Same inputs as last_layer_gradient_norms."""
    residuals = probability_residuals(logits, labels)
    residual_norm = torch.linalg.vector_norm(residuals, dim=1)
    feature_norm_sq = features.to(residuals.dtype).pow(2).sum(dim=1)
    probs = torch.softmax(logits.to(residuals.dtype), dim=1)
    entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum(dim=1)
    if probs.shape[1] >= 2:
        top2 = probs.topk(2, dim=1).values
        margin = 1.0 - (top2[:, 0] - top2[:, 1])
    else:
        margin = torch.zeros_like(residual_norm)
    # 1 - p_y is minus the residual's label component (the stable sum of the other p_k)
    least_confidence = -residuals.gather(1, labels.reshape(-1, 1).long()).squeeze(1)
    return torch.stack([residual_norm * torch.sqrt(feature_norm_sq + 1.0), residual_norm,
                        entropy, margin, least_confidence], dim=1).clamp_min(0.0)
