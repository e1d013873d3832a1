"""The flattened isolation forest scores exactly as scikit-learn's, with and without feature subsampling."""

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from compliance_assets.ml.isolation import compile_forest, score_samples


@pytest.mark.parametrize("max_features", [1.0, 0.6])
def test_compiled_forest_scores_are_sklearns_bit_for_bit(max_features):
    rng = np.random.default_rng(3)
    train = np.column_stack([rng.normal(size=2000), rng.exponential(size=2000), rng.integers(0, 5, 2000), rng.normal(100, 30, 2000)])
    forest = IsolationForest(n_estimators=60, max_samples=256, max_features=max_features, random_state=7).fit(train, sample_weight=rng.uniform(0.5, 2, 2000))
    # new points, training points and values on the trees' float32 thresholds
    probe = np.vstack([rng.normal(size=(500, 4)) * [1, 1, 2, 30] + [0, 1, 2, 100], train[:300],
                       np.array([[e.tree_.threshold[0]] * 4 for e in forest.estimators_ if e.tree_.node_count > 1])])
    assert np.array_equal(score_samples(compile_forest(forest), probe), forest.score_samples(probe))
    assert np.array_equal(score_samples(compile_forest(forest), probe[:1]), forest.score_samples(probe[:1]))
