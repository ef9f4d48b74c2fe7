"""The closed-form last-layer gradient norm against torch.autograd on a real linear layer."""
import pytest
import torch

from importance_sampler_ros.detection.importance import (
    SCORERS,
    last_layer_gradient_norms,
    probability_residuals,
    uncertainty_scores,
)


def test_closed_form_equals_autograd_for_random_rows_and_any_label():
    torch.manual_seed(0)
    layer = torch.nn.Linear(32, 6)
    features = torch.randn(50, 32).relu()
    labels = torch.randint(0, 6, (50,))  # mostly not the argmax
    reference_layer = torch.nn.Linear(32, 6).double()
    reference_layer.load_state_dict({k: v.double() for k, v in layer.state_dict().items()})
    with torch.no_grad():
        logits = layer(features)
    closed = last_layer_gradient_norms(features, logits, labels)
    reference = []
    for h, label in zip(features.double(), labels, strict=True):
        reference_layer.zero_grad()
        torch.nn.functional.cross_entropy(reference_layer(h[None]), label.view(1)).backward()
        grads = torch.cat([reference_layer.weight.grad.flatten(), reference_layer.bias.grad])
        reference.append(torch.linalg.vector_norm(grads))
    reference = torch.stack(reference)
    assert (logits.argmax(1) != labels).sum() > 10
    torch.testing.assert_close(closed.double(), reference, rtol=1e-5, atol=0.0)


def test_confident_label_does_not_cancel_in_float32():
    logits = torch.tensor([[0.0, 0.0, 30.0, 0.0, 0.0]])
    residual = probability_residuals(logits, torch.tensor([2]))
    # exact in float64: p_k = e^-30 / (1 + 4 e^-30) for k != 2, p_2 - 1 = -4 e^-30 / (1 + 4 e^-30)
    small = torch.exp(torch.tensor(-30.0, dtype=torch.float64))
    pattern = torch.tensor([[1.0, 1.0, -4.0, 1.0, 1.0]], dtype=torch.float64)
    exact = pattern * small / (1 + 4 * small)
    torch.testing.assert_close(residual.double(), exact, rtol=1e-6, atol=0.0)
    norm = last_layer_gradient_norms(torch.zeros(1, 4), logits, torch.tensor([2]))
    assert norm.item() == pytest.approx(exact.norm().item(), rel=1e-6)
    assert norm.item() > 0.0


def test_residuals_sum_to_zero_and_label_component_is_negative():
    torch.manual_seed(1)
    logits = torch.randn(8, 5) * 3
    labels = torch.arange(8) % 5
    residual = probability_residuals(logits, labels)
    torch.testing.assert_close(residual.sum(1), torch.zeros(8), atol=1e-6, rtol=0)
    assert (residual[torch.arange(8), labels] < 0).all()


def test_zero_detections_and_shape_errors():
    empty = last_layer_gradient_norms(torch.zeros(0, 4), torch.zeros(0, 3), torch.zeros(0))
    assert empty.shape == (0,)
    with pytest.raises(ValueError, match='labels'):
        probability_residuals(torch.zeros(3, 4), torch.zeros(2))
    with pytest.raises(ValueError, match='features'):
        last_layer_gradient_norms(torch.zeros(2, 4), torch.zeros(3, 4), torch.zeros(3))


def test_uncertainty_scores_follow_their_definitions():
    torch.manual_seed(0)
    logits = torch.randn(6, 5) * 3
    features = torch.randn(6, 16)
    labels = torch.tensor([0, 1, 2, 3, 4, 1])
    scores = uncertainty_scores(features, logits, labels)
    p = torch.softmax(logits, 1)
    onehot = torch.nn.functional.one_hot(labels, 5).float()
    expected = {
        'gradient_norm': last_layer_gradient_norms(features, logits, labels),
        'prob_residual': torch.linalg.vector_norm(p - onehot, dim=1),
        'entropy': -(p * p.log()).sum(1),
        'margin': 1 - (p.topk(2, 1).values[:, 0] - p.topk(2, 1).values[:, 1]),
        'least_confidence': 1 - p.gather(1, labels.view(-1, 1)).squeeze(1),
    }
    for i, name in enumerate(SCORERS):
        torch.testing.assert_close(scores[:, i], expected[name], rtol=1e-5, atol=1e-6)
