"""treeshap: the compiled tables give exactly LightGBM's pred_contrib (path-dependent TreeSHAP), for
NaNs, zeros, tiny values, infinities and values exactly on split thresholds, under every missing-value
handling; unsupported models fail clearly."""

import pickle

import lightgbm as lgb
import numpy as np
import pytest

from compliance_assets.ml.treeshap import K_ZERO_THRESHOLD, compile_tables, contributions

N_ROWS = 3000


def make_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """8 features: NaN-laced, zero-heavy, few distinct values, constant, and plain noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N_ROWS, 8))
    X[rng.random(N_ROWS) < 0.15, 0] = np.nan
    X[rng.random(N_ROWS) < 0.4, 1] = 0.0
    X[:, 2] = rng.integers(0, 4, N_ROWS)
    X[:, 3] = 1.0
    X[rng.random(N_ROWS) < 0.1, 4] = np.nan
    X[rng.random(N_ROWS) < 0.3, 4] = 0.0
    signal = np.nan_to_num(X[:, 0], nan=1.0) + X[:, 1] + 0.7 * X[:, 2] - np.nan_to_num(X[:, 4], nan=-1.0) + X[:, 5] * X[:, 6]
    y = (signal + rng.normal(size=N_ROWS) > 0.8).astype(int)
    return X, y


def train(X: np.ndarray, y: np.ndarray, rounds: int = 30, **params) -> lgb.Booster:
    base = {"objective": "binary", "verbose": -1, "min_data_in_leaf": 10, "num_threads": 1, "seed": 1}
    return lgb.train({**base, **params}, lgb.Dataset(X, y), num_boost_round=rounds)


def splits(booster: lgb.Booster) -> list[dict]:
    found, stack = [], [t["tree_structure"] for t in booster.dump_model()["tree_info"]]
    while stack:
        node = stack.pop()
        if "split_feature" in node:
            found.append(node)
            stack += [node["left_child"], node["right_child"]]
    return found


def probe_rows(X: np.ndarray, booster: lgb.Booster) -> np.ndarray:
    """X plus rows putting each split feature exactly on (and one ulp around) its threshold, and rows
    with -0.0, tiny values around kZeroThreshold, +-inf and NaN in every column."""
    rng = np.random.default_rng(7)
    rows = []
    for node in splits(booster):
        threshold = node["threshold"]
        for value in (threshold, np.nextafter(threshold, -np.inf), np.nextafter(threshold, np.inf)):
            row = X[rng.integers(len(X))].copy()
            row[node["split_feature"]] = value
            rows.append(row)
    specials = [-0.0, 1e-36, -1e-36, K_ZERO_THRESHOLD, -K_ZERO_THRESHOLD, np.nextafter(K_ZERO_THRESHOLD, 1.0), np.inf, -np.inf, np.nan]
    for value in specials:
        for column in range(X.shape[1]):
            row = X[rng.integers(len(X))].copy()
            row[column] = value
            rows.append(row)
    return np.vstack([X, np.asarray(rows)])


def assert_matches_lightgbm(booster: lgb.Booster, X: np.ndarray) -> None:
    tables = compile_tables(booster)
    phi = contributions(tables, X)
    expected = booster.predict(X, pred_contrib=True)
    assert phi.shape == (len(X), X.shape[1])
    np.testing.assert_allclose(phi, expected[:, :-1], rtol=0, atol=1e-9)
    np.testing.assert_allclose(tables.base_value, expected[:, -1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(phi.sum(axis=1) + tables.base_value, booster.predict(X, raw_score=True), rtol=0, atol=1e-9)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return make_data()


@pytest.mark.parametrize(
    ("params", "missing_types"),
    [
        ({"max_depth": 3, "num_leaves": 8}, {"NaN", "None"}),
        ({"max_depth": 5, "num_leaves": 31}, {"NaN", "None"}),
        ({"max_depth": 4, "num_leaves": 15, "use_missing": True, "zero_as_missing": True}, {"Zero"}),
        ({"max_depth": 4, "num_leaves": 15, "use_missing": False}, {"None"}),
        ({"max_depth": 6, "num_leaves": 40, "min_data_in_leaf": 3}, {"NaN", "None"}),
    ],
    ids=["depth3", "depth5", "zero_as_missing", "no_missing", "depth6"],
)
def test_matches_lightgbm_pred_contrib(data, params, missing_types):
    X, y = data
    booster = train(X, y, **params)
    nodes = splits(booster)
    assert missing_types <= {node["missing_type"] for node in nodes}
    assert {node["default_left"] for node in nodes} == {True, False} or missing_types == {"None"}
    assert_matches_lightgbm(booster, probe_rows(X, booster))


def test_regression_objective_and_float32_input(data):
    X, y = data
    booster = train(X, y.astype(float) + X[:, 2], objective="regression", max_depth=4, num_leaves=15)
    assert_matches_lightgbm(booster, probe_rows(X, booster))
    X32 = X.astype(np.float32)  # converted to float64 exactly as LightGBM does
    np.testing.assert_allclose(contributions(compile_tables(booster), X32), booster.predict(X32, pred_contrib=True)[:, :-1], rtol=0, atol=1e-9)


def test_single_leaf_trees_only_shift_the_base_value(data):
    X, y = data
    booster = train(X, y, rounds=3, min_gain_to_split=1e9)
    assert all(t["num_leaves"] == 1 for t in booster.dump_model()["tree_info"])
    tables = compile_tables(booster)
    assert not contributions(tables, X).any()
    assert_matches_lightgbm(booster, X)


def test_tables_pickle(data):
    X, y = data
    booster = train(X, y, rounds=10, max_depth=3, num_leaves=8)
    tables = compile_tables(booster)
    np.testing.assert_array_equal(contributions(pickle.loads(pickle.dumps(tables)), X), contributions(tables, X))


def test_rejects_categorical_splits(data):
    X, y = data
    Xc = X.copy()
    Xc[:, 7] = np.random.default_rng(3).integers(0, 6, len(X))
    y = (y + (Xc[:, 7] == 2)) % 2
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "min_data_per_group": 5, "cat_smooth": 1, "num_threads": 1},
        lgb.Dataset(Xc, y, categorical_feature=[7]), num_boost_round=10,
    )
    assert any(node["decision_type"] == "==" for node in splits(booster))
    with pytest.raises(ValueError, match="categorical"):
        compile_tables(booster)


def test_rejects_too_deep_trees_and_wrong_width(data):
    X, y = data
    with pytest.raises(ValueError, match="deeper than 6"):
        compile_tables(train(X, y, rounds=3, max_depth=-1, num_leaves=63, min_data_in_leaf=2))
    tables = compile_tables(train(X, y, rounds=2, max_depth=3, num_leaves=8))
    with pytest.raises(ValueError, match="shape"):
        contributions(tables, X[:, :5])
