"""Metrics on arrays whose answers are known in closed form."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bigbigan.errors import BigBiGANError
from bigbigan.quality.metrics import (
    accuracy_by_class,
    bn_crelu,
    confusion_matrix,
    fit_logistic,
    frechet_distance,
    frechet_distance_from_stats,
    knn_accuracy,
    label_accuracy,
    logistic_probe,
    mean_abs_error,
    standardise,
)


def gaussian(n: int, d: int, seed: int, shift: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)) + shift


# --- Fréchet distance ------------------------------------------------------------------------


def test_fid_of_identical_sets_is_zero() -> None:
    a = gaussian(500, 16, 0)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_fid_of_shifted_copy_is_squared_shift() -> None:
    a = gaussian(500, 8, 0)
    shift = np.arange(8) * 0.5  # same covariance, means differ by `shift`
    assert frechet_distance(a, a + shift) == pytest.approx(float(shift @ shift), rel=1e-6)


def test_fid_of_shifted_gaussians_approaches_squared_shift() -> None:
    a, b = gaussian(20_000, 4, 0), gaussian(20_000, 4, 1, shift=1.5)
    # ||mu_a - mu_b||^2 = 4 * 1.5^2 = 9; finite samples add a small covariance term
    assert frechet_distance(a, b) == pytest.approx(9.0, rel=0.02)


def test_fid_known_covariances() -> None:
    # 1-d: (mu_a - mu_b)^2 + s_a^2 + s_b^2 - 2 s_a s_b = (1)^2 + (2 - 3)^2 = 2
    value = frechet_distance_from_stats(
        np.array([0.0]), np.array([[4.0]]), np.array([1.0]), np.array([[9.0]])
    )
    assert value == pytest.approx(2.0)


def test_fid_is_symmetric_and_float_input_safe() -> None:
    a, b = gaussian(300, 6, 0).astype(np.float32), gaussian(300, 6, 1, 0.3).astype(np.float32)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-6)


def test_fid_with_fewer_samples_than_dimensions_is_finite() -> None:
    a, b = gaussian(10, 32, 0), gaussian(10, 32, 1)  # singular covariances
    value = frechet_distance(a, b)
    assert np.isfinite(value) and value > 0


def test_fid_rejects_bad_shapes() -> None:
    with pytest.raises(BigBiGANError, match="feature sizes differ"):
        frechet_distance(gaussian(10, 3, 0), gaussian(10, 4, 0))
    with pytest.raises(BigBiGANError, match="expected"):
        frechet_distance(np.zeros(10), np.zeros(10))
    with pytest.raises(BigBiGANError, match="NaN"):
        frechet_distance(np.full((4, 2), np.nan), gaussian(4, 2, 0))


# --- label accuracy --------------------------------------------------------------------------


def test_label_accuracy_from_logits_and_predictions() -> None:
    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    labels = np.array([1, 0, 0, 0])
    assert label_accuracy(logits, labels) == 0.75
    assert label_accuracy(np.array([1, 0, 0, 0]), labels) == 1.0


def test_label_accuracy_rejects_length_mismatch() -> None:
    with pytest.raises(BigBiGANError, match="3 predictions for 2 labels"):
        label_accuracy(np.zeros(3), np.zeros(2))


def test_confusion_matrix_counts_label_against_prediction() -> None:
    logits = np.array([[0.1, 0.9, 0.0], [0.8, 0.2, 0.0], [0.3, 0.7, 0.0], [0.6, 0.4, 0.0]])
    labels = np.array([1, 0, 0, 0])
    counts = confusion_matrix(logits, labels, 3)
    assert counts.tolist() == [[2, 1, 0], [0, 1, 0], [0, 0, 0]]
    assert accuracy_by_class(counts) == [2 / 3, 1.0, None]  # no item of class 2
    assert confusion_matrix(np.array([2, 2]), np.array([0, 2]), 3)[:, 2].tolist() == [1, 0, 1]
    with pytest.raises(BigBiGANError, match="3 predictions for 2 labels"):
        confusion_matrix(np.zeros(3), np.zeros(2), 3)


# --- logistic probe and k-NN ----------------------------------------------------------------


def test_probe_on_separable_data_is_perfect() -> None:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 10)) * 10
    y = rng.integers(0, 3, 600)
    x = centres[y] + rng.standard_normal((600, 10))
    result = logistic_probe(x[:400], y[:400], x[400:], y[400:], seed=0)
    assert result["accuracy"] == pytest.approx(1.0, abs=0.01)
    assert result["converged"]
    assert knn_accuracy(x[:400], y[:400], x[400:], y[400:]) == {1: 1.0, 5: 1.0}


def test_probe_on_random_labels_is_chance() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((2000, 10)), rng.integers(0, 4, 2000)
    result = logistic_probe(x[:1000], y[:1000], x[1000:], y[1000:], seed=0)
    assert abs(result["accuracy"] - 0.25) < 0.06
    for acc in knn_accuracy(x[:1000], y[:1000], x[1000:], y[1000:]).values():
        assert abs(acc - 0.25) < 0.06


def test_probe_matches_scikit_learn_on_digits() -> None:
    """Same objective as scikit-learn's multinomial LogisticRegression (C = 1 / (l2 * n)), so a
    converged fit gives its test predictions; the chosen L2 beats the weakest on held-out data."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    x, y = load_digits(return_X_y=True)
    xtr, ytr, xte, yte = x[:1200], y[:1200], x[1200:], y[1200:]
    (str_, ste) = standardise(xtr.astype(np.float32), xte.astype(np.float32))
    l2 = 1e-2
    fit = fit_logistic(torch.from_numpy(str_), torch.from_numpy(ytr), 10, l2)
    assert fit.converged
    ours = (torch.from_numpy(ste) @ fit.weight + fit.bias).argmax(1).numpy()
    reference = LogisticRegression(C=1 / (l2 * len(xtr)), tol=1e-8, max_iter=5000)
    theirs = reference.fit(str_, ytr).predict(ste)
    assert np.mean(ours == theirs) > 0.995
    result = logistic_probe(xtr, ytr, xte, yte, seed=0)
    assert result["accuracy"] > 0.9 and result["converged"]
    held = result["holdout_accuracy"]
    assert held[f"{result['l2']:g}"] == max(held.values())
    knn = knn_accuracy(xtr, ytr, xte, yte)
    assert knn[1] > 0.85 and knn[5] > 0.85


def test_knn_votes_and_ties_go_to_the_nearer_neighbours() -> None:
    train = np.array([[0.0], [1.0], [1.1], [5.0], [5.1], [5.2]])
    labels = np.array([0, 1, 1, 2, 2, 2])
    test = np.array([[0.2], [4.9]])
    assert knn_accuracy(train, labels, test, np.array([0, 2]), ks=(1, 5)) == {1: 1.0, 5: 0.5}
    # k = 5 at 0.2: one vote for 0, two for 1 (at 0.8, 0.9) and two for 2 (farther): 1 wins
    assert knn_accuracy(train, labels, test[:1], np.array([1]), ks=(5,)) == {5: 1.0}
    # k = 2 at 0.45: neighbours 0.0 (class 0) then 1.0 (class 1), a tie won by the nearer
    assert knn_accuracy(train, labels, np.array([[0.45]]), np.array([0]), ks=(2,)) == {2: 1.0}
    assert knn_accuracy(train, labels, np.array([[0.55]]), np.array([1]), ks=(2,)) == {2: 1.0}


def test_bn_crelu_doubles_width_and_splits_signs() -> None:
    train = np.array([[1.0, 0.0], [3.0, 2.0]], np.float32)
    out_train, out_test = bn_crelu(train, np.array([[2.0, 4.0]], np.float32))
    np.testing.assert_allclose(out_train, [[0, 0, 1, 1], [1, 1, 0, 0]])
    np.testing.assert_allclose(out_test, [[0, 3, 0, 0]])


def standardised_digits(rows: int = 1200) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    (xs,) = standardise(x[:rows].astype(np.float32))
    return torch.from_numpy(xs), torch.from_numpy(y[:rows])


def test_a_fit_float32_cannot_finish_is_finished_in_float64() -> None:
    x, y = standardised_digits()
    plain = fit_logistic(x, y, 10, 1e-2)  # scikit-learn's tolerance: float32 gets there
    assert plain.converged and not plain.refined
    # 1e-6 is below what float32 sums over 1,200 rows can resolve: its L-BFGS stalls short
    fine = fit_logistic(x, y, 10, 1e-2, tolerance=1e-6)
    assert fine.refined and fine.converged and fine.weight.dtype == torch.float32
    w, b = fine.weight.double().requires_grad_(), fine.bias.double().requires_grad_()
    loss = torch.nn.functional.cross_entropy(x.double() @ w + b, y) + 0.5e-2 * w.square().sum()
    loss.backward()
    assert max(w.grad.abs().max(), b.grad.abs().max()) < 1e-5  # float32 rounding of the result
    assert (fine.weight - plain.weight).abs().max() < 1e-2  # the same optimum, found closer
    capped = fit_logistic(x, y, 10, 1e-2, max_iter=5)  # float32's 5, then float64's 5
    assert (capped.iterations, capped.converged, capped.refined) == (10, False, True)


def test_probe_is_deterministic_and_checks_shapes() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((200, 5)), rng.integers(0, 2, 200)
    first = logistic_probe(x[:100], y[:100], x[100:], y[100:], seed=3)
    assert first == logistic_probe(x[:100], y[:100], x[100:], y[100:], seed=3)
    with pytest.raises(BigBiGANError, match="feature sizes differ"):
        logistic_probe(x[:100], y[:100], x[100:, :4], y[100:], seed=0)
    with pytest.raises(BigBiGANError, match="fewer than 2 classes"):
        logistic_probe(x[:100], np.zeros(100), x[100:], y[100:], seed=0)
    with pytest.raises(BigBiGANError, match="k-NN: k"):
        knn_accuracy(x[:100], y[:100], x[100:], y[100:], ks=(101,))


# --- mean absolute error ---------------------------------------------------------------------


def test_mean_abs_error() -> None:
    a = np.zeros((2, 3), np.float32)
    b = np.array([[1, -1, 0], [0, 0, 4]], np.float32)
    assert mean_abs_error(a, b) == pytest.approx(1.0)
    with pytest.raises(BigBiGANError, match="shapes differ"):
        mean_abs_error(a, b[:1])


# --- the noise's scale (evaluate's reference for E's z) --------------------------------------


@pytest.mark.parametrize("threshold", [0.5, 2.0, 8.0])
def test_truncated_normal_rms_matches_its_samples(threshold: float) -> None:
    from bigbigan.training.sampling import truncated_normal, truncated_normal_rms

    z = truncated_normal(np.random.default_rng(0), (400_000,), threshold).astype(np.float64)
    assert truncated_normal_rms(threshold) == pytest.approx(np.sqrt(np.mean(z**2)), rel=3e-3)
    assert truncated_normal_rms(8.0) == pytest.approx(1.0)  # barely truncated: a standard normal
