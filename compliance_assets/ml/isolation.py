"""A fitted scikit-learn IsolationForest flattened into numpy arrays, scored without its per-tree overhead.

`IsolationForest.score_samples` walks its trees one `apply` call at a time through joblib (about 24 ms for 100
trees, whatever the batch size): fine for a Spark partition, the whole budget of a real-time decision. Here the
trees are padded into (tree, node) arrays and walked in compiled code (numba: a few microseconds a row); the
depths are summed tree by tree in the forest's order with the same expressions, so the scores are sklearn's to the
last bit (tests/ml/test_isolation.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit
from sklearn.ensemble import IsolationForest
from sklearn.ensemble._iforest import _average_path_length

LEAF = -1


@dataclass(frozen=True)
class IsolationTables:
    """Per tree and node: split feature, threshold, children, and at a leaf the path length it adds. A leaf is its
    own child (feature 0), so every row walks `max_depth` steps down every tree and stays at its leaf."""

    feature: np.ndarray  # int64 (trees, nodes): the column of the scored matrix
    threshold: np.ndarray  # float64 (trees, nodes)
    left: np.ndarray  # int64 (trees, nodes)
    right: np.ndarray  # int64 (trees, nodes)
    leaf_value: np.ndarray  # float64 (trees, nodes): node depth + average path length of its samples - 1
    max_depth: int
    denominator: float  # trees x the average path length of max_samples


def compile_forest(forest: IsolationForest) -> IsolationTables:
    """Flatten a fitted forest (its `estimators_features_` mapped to the matrix's columns)."""
    trees = [e.tree_ for e in forest.estimators_]
    width = max(t.node_count for t in trees)
    shape = (len(trees), width)
    feature, left, right = np.zeros(shape, np.int64), np.zeros(shape, np.int64), np.zeros(shape, np.int64)
    threshold, leaf_value = np.zeros(shape), np.zeros(shape)
    subsampled = forest._max_features != forest.n_features_in_
    for i, (tree, columns, lengths, depths) in enumerate(zip(trees, forest.estimators_features_, forest._average_path_length_per_tree, forest._decision_path_lengths)):
        n = tree.node_count
        split = tree.children_left[:n] != LEAF
        local = np.where(split, tree.feature[:n], 0)
        feature[i, :n] = np.asarray(columns)[local] if subsampled else local
        threshold[i, :n] = tree.threshold[:n]
        itself = np.arange(n)
        left[i, :n], right[i, :n] = np.where(split, tree.children_left[:n], itself), np.where(split, tree.children_right[:n], itself)
        leaf_value[i, :n] = depths + lengths - 1.0  # sklearn's per-tree term, in its order of operations
    denominator = float(len(trees) * _average_path_length([forest._max_samples])[0])
    return IsolationTables(feature, threshold, left, right, leaf_value, max(t.max_depth for t in trees), denominator)


def score_samples(tables: IsolationTables, X: np.ndarray) -> np.ndarray:
    """`IsolationForest.score_samples(X)` (the opposite of the anomaly score; X without NaN)."""
    X = np.asarray(X, dtype=np.float32).astype(np.float64)  # the trees compare float32 inputs
    depths = np.empty(X.shape[0])
    _path_lengths(X, tables.feature, tables.threshold, tables.left, tables.right, tables.leaf_value, tables.max_depth, depths)
    scores = 2 ** (-np.divide(depths, tables.denominator, out=np.ones_like(depths), where=tables.denominator != 0))
    return -scores


@njit(cache=True)
def _path_lengths(X, feature, threshold, left, right, leaf_value, max_depth, out):  # pragma: no cover - numba
    """out[r]: the sum over the trees, in the forest's order from 0.0 (as sklearn accumulates), of the leaf value row r
    reaches. Tree by tree, the rows step down together: a tree's nodes stay in cache, and the rows' walks overlap."""
    n = X.shape[0]
    out[:] = 0.0
    node = np.empty(n, np.int64)
    for t in range(feature.shape[0]):
        node[:] = 0
        for _ in range(max_depth):
            for r in range(n):
                k = node[r]
                node[r] = left[t, k] if X[r, feature[t, k]] <= threshold[t, k] else right[t, k]
        for r in range(n):
            out[r] += leaf_value[t, node[r]]
