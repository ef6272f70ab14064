"""The generic branch: a fixed whitened-PCA projection beside the trained head, and the device
contract that the exported raw output, segment-normalised, is the Keras embedding."""

import numpy as np
import pytest

from edge.metrics import segment_normalize


def _correlated(rows: int, dims: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(rows, dims)) @ rng.normal(size=(dims, dims)) + 5.0


def test_projection_centres_whitens_and_scales():
    from train.model import fit_generic_projection

    features = _correlated(200, 12)
    weights, bias = fit_generic_projection(features, 8, power=1.0, target_rms=3.0)
    projected = features @ weights + bias
    assert weights.shape == (12, 8) and bias.shape == (8,)
    assert np.allclose(projected.mean(axis=0), 0.0, atol=1e-4)
    assert np.sqrt(np.mean(np.sum(projected**2, axis=1))) == pytest.approx(3.0, rel=1e-4)
    covariance = np.cov(projected, rowvar=False)
    assert np.allclose(covariance, covariance[0, 0] * np.eye(8), atol=1e-3 * covariance[0, 0])  # whitened


def test_projection_without_whitening_keeps_pca_variances_in_order():
    from train.model import fit_generic_projection

    features = _correlated(200, 12, seed=1)
    weights, bias = fit_generic_projection(features, 6, power=0.0, target_rms=1.0)
    variances = np.var(features @ weights + bias, axis=0)
    assert np.all(np.diff(variances) <= 1e-9) and variances[0] > 2 * variances[-1]
    columns = weights / np.linalg.norm(weights, axis=0)
    assert np.allclose(columns.T @ columns, np.eye(6), atol=1e-5)  # orthogonal PCA directions


def test_projection_never_divides_by_an_empty_direction():
    from train.model import fit_generic_projection

    features = _correlated(5, 12)  # 5 images: at most 4 directions with any variance
    weights, bias = fit_generic_projection(features, 8, power=1.0, target_rms=1.0)
    assert weights.shape == (12, 4) and np.all(np.isfinite(weights)) and np.all(np.isfinite(bias))


def test_exported_output_segment_normalised_is_the_keras_embedding():
    """What the device does with the exported model (edge.encoder) equals the Keras encoder."""
    from train.model import (
        GENERIC_PROJECTION_LAYER,
        add_generic_branch,
        build_tower,
        embedding_segments,
        export_encoder,
        rebuild_encoder,
    )

    tower = build_tower(32, 8, "none", 0.35)
    encoder = add_generic_branch(tower, 5, 0.4)
    dense = encoder.get_layer(GENERIC_PROJECTION_LAYER)
    rng = np.random.default_rng(0)
    dense.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in dense.get_weights()])
    segments = embedding_segments(encoder)
    assert [(s["name"], s["size"]) for s in segments] == [("head", 8), ("generic", 5)]
    assert sum(s["weight"] ** 2 for s in segments) == pytest.approx(1.0)
    assert segments[1]["weight"] ** 2 == pytest.approx(0.4)

    images = rng.integers(0, 256, size=(4, 32, 32, 3)).astype(np.float32)
    embedding = np.asarray(encoder.predict(images, verbose=0))
    raw = np.asarray(export_encoder(encoder).predict(images, verbose=0))
    assert raw.shape == (4, 13)
    assert np.allclose(segment_normalize(raw, segments), embedding, atol=1e-5)

    bigger = rebuild_encoder(encoder, 48, alpha=0.35)
    assert embedding_segments(bigger) == segments
    assert all(np.array_equal(a, b) for a, b in zip(bigger.get_weights(), encoder.get_weights()))
