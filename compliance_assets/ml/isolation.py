"""A fitted scikit-learn IsolationForest flattened into numpy arrays, scored without its per-tree overhead.

`IsolationForest.score_samples` walks its trees one `apply` call at a time through joblib (about 24 ms for 100
trees, whatever the batch size): fine for a Spark partition, the whole budget of a real-time decision. Here the
trees are padded into (tree, node) arrays and walked level by level for all trees at once; the depths are summed
tree by tree in the forest's order with the same expressions, so the scores are sklearn's to the last bit
(tests/ml/test_isolation.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.ensemble._iforest import _average_path_length

LEAF = -1


@dataclass(frozen=True)
class IsolationTables:
    """Per tree and node: split feature (-1 at a leaf), threshold, children, and at a leaf the path length it adds."""

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
    feature, left, right = np.full(shape, LEAF, np.int64), np.zeros(shape, np.int64), np.zeros(shape, np.int64)
    threshold, leaf_value = np.zeros(shape), np.zeros(shape)
    subsampled = forest._max_features != forest.n_features_in_
    for i, (tree, columns, lengths, depths) in enumerate(zip(trees, forest.estimators_features_, forest._average_path_length_per_tree, forest._decision_path_lengths)):
        n = tree.node_count
        split = tree.children_left[:n] != LEAF
        local = tree.feature[:n]
        feature[i, :n] = np.where(split, np.asarray(columns)[np.where(split, local, 0)] if subsampled else local, LEAF)
        threshold[i, :n] = tree.threshold[:n]
        left[i, :n], right[i, :n] = np.where(split, tree.children_left[:n], 0), np.where(split, tree.children_right[:n], 0)
        leaf_value[i, :n] = depths + lengths - 1.0  # sklearn's per-tree term, in its order of operations
    denominator = float(len(trees) * _average_path_length([forest._max_samples])[0])
    return IsolationTables(feature, threshold, left, right, leaf_value, max(t.max_depth for t in trees), denominator)


def score_samples(tables: IsolationTables, X: np.ndarray) -> np.ndarray:
    """`IsolationForest.score_samples(X)` (the opposite of the anomaly score; X without NaN)."""
    X = np.asarray(X, dtype=np.float32).astype(np.float64)  # the trees compare float32 inputs
    n, trees = X.shape[0], tables.feature.shape[0]
    rows, cols = np.arange(n)[:, None], np.arange(trees)[None, :]
    node = np.zeros((n, trees), np.int64)
    for _ in range(tables.max_depth):
        f = tables.feature[cols, node]
        split = f != LEAF
        goes_left = X[rows, np.where(split, f, 0)] <= tables.threshold[cols, node]
        node = np.where(split, np.where(goes_left, tables.left[cols, node], tables.right[cols, node]), node)
    values = tables.leaf_value[cols, node]
    depths = np.zeros(n)
    for t in range(trees):  # tree by tree, as sklearn accumulates
        depths += values[:, t]
    scores = 2 ** (-np.divide(depths, tables.denominator, out=np.ones_like(depths), where=tables.denominator != 0))
    return -scores
