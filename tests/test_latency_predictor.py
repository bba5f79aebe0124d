"""LatencyModel on synthetic tables: exact additive prediction, NNLS recovery, batching, Eq. 7."""

from __future__ import annotations

import random

import numpy as np
import pytest

from autovit.latency.blocks import arch_blocks
from autovit.latency.lut import LatencyTableError, synthetic_table
from autovit.latency.predictor import FEATURES, MACS_TERM, SIMPLE_FEATURES, LatencyModel, fit_nnls
from autovit.registry import paper_arch
from autovit.space import SearchSpace


@pytest.fixture(scope="module")
def xxs() -> SearchSpace:
    return SearchSpace.builtin("xxs")


def _archs(space: SearchSpace, n: int, seed: int = 0) -> list:
    rng = random.Random(seed)
    return [space.sample(rng) for _ in range(n)]


@pytest.mark.parametrize("name", ["xxs", "s"])
def test_raw_model_is_exact_table_sum(name: str) -> None:
    space = SearchSpace.builtin(name)
    table = synthetic_table(space, seed=3)
    model = LatencyModel(table)
    archs = _archs(space, 200)
    expected = np.array([sum(n * table.cost(s) for s, n in arch_blocks(a)) for a in archs]) * table.reference_ms
    np.testing.assert_allclose(model.predict(archs), expected, rtol=1e-12)
    assert model.predict_one(archs[0]) == pytest.approx(expected[0], rel=1e-12)


def test_fast_path_equals_feature_matrix(xxs: SearchSpace) -> None:
    table = synthetic_table(xxs, seed=1)
    coef = dict(zip(FEATURES + (MACS_TERM,), np.linspace(0.3, 2.0, len(FEATURES) + 1)))
    model = LatencyModel(table, coef)
    archs = _archs(xxs, 150, seed=5)
    via_features = model.features(archs) @ np.array(list(model.coef.values()))
    np.testing.assert_allclose(model.predict_ratio(archs), via_features, rtol=1e-12)
    np.testing.assert_allclose(model.predict_ratio(archs), model.predict_ratio(archs), rtol=0)  # cached == fresh


def test_nnls_recovers_known_coefficients(xxs: SearchSpace) -> None:
    table = synthetic_table(xxs, seed=2)
    true = {"table_stem": 1.0, "table_mbconv": 0.8, "table_tfixed": 1.3, "table_attn": 0.9, "table_mlp": 1.1,
            "table_head": 1.0, "mbconv_blocks": 0.002, "transformer_layers": 0.004, "transformer_stages": 0.01,
            "intercept": 0.05}
    archs = _archs(xxs, 60, seed=7)
    y = LatencyModel(table, true).predict_ratio(archs)
    fitted = LatencyModel.fit(table, archs, y, FEATURES)
    for k, v in true.items():
        assert fitted.coef[k] == pytest.approx(v, rel=1e-6, abs=1e-9)


def test_nnls_keeps_coefficients_non_negative() -> None:
    rng = np.random.default_rng(0)
    X = rng.uniform(0.5, 1.5, size=(30, 3))
    y = X @ np.array([1.0, -0.5, 0.2]) + 2.0
    assert (fit_nnls(X, y) >= 0).all()


def test_single_scale_variant_and_save_load_round_trip(xxs: SearchSpace, tmp_path) -> None:
    table = synthetic_table(xxs, seed=4)
    archs = _archs(xxs, 20, seed=9)
    y = LatencyModel(table).predict_ratio(archs) * 1.2 + 0.03
    model = LatencyModel.fit(table, archs, y, SIMPLE_FEATURES)
    assert model.coef["table"] == pytest.approx(1.2, rel=1e-6) and model.coef["intercept"] == pytest.approx(0.03)
    path = model.save(tmp_path / "t.json")
    loaded = LatencyModel.load(path)
    assert loaded.coef == model.coef and loaded.space_name == "xxs" and loaded.fingerprint == table.fingerprint
    np.testing.assert_array_equal(loaded.predict(archs), model.predict(archs))


def test_predicts_a_hundred_thousand_archs_in_one_batch(xxs: SearchSpace) -> None:
    model = LatencyModel(synthetic_table(xxs))
    pool = _archs(xxs, 500, seed=11)
    out = model.predict([pool[i % 500] for i in range(100_000)])
    assert out.shape == (100_000,) and np.isfinite(out).all() and (out > 0).all()
    np.testing.assert_array_equal(out[:500], out[500:1000])


def test_missing_block_names_it_and_how_to_add(xxs: SearchSpace) -> None:
    table = synthetic_table(xxs)
    key = next(k for k in table.entries if k.startswith("attn:"))
    del table.entries[key]
    arch = next(a for a in _archs(xxs, 300) if any(str(s) == key for s, _ in arch_blocks(a)))
    with pytest.raises(LatencyTableError, match=f"no entry for block '{key}'") as err:
        LatencyModel(table).predict([arch])
    assert "autovit latency profile" in err.value.hint and "import" in err.value.hint


def test_wrong_resolution_or_layout_is_refused(xxs: SearchSpace) -> None:
    model = LatencyModel(synthetic_table(xxs))
    arch = paper_arch("xxs")
    with pytest.raises(LatencyTableError, match="built at 256px"):
        model.predict([arch.replace(resolution=224)])
    other = paper_arch("s")  # same layout but blocks of another space
    with pytest.raises(LatencyTableError, match="no entry for block"):
        model.predict([other])


def test_fit_select_prefers_the_term_set_that_generalises(xxs: SearchSpace) -> None:
    table = synthetic_table(xxs, seed=8)
    archs = _archs(xxs, 30, seed=3)
    per_kind = {"table_stem": 1.0, "table_mbconv": 0.5, "table_tfixed": 2.0, "table_attn": 1.5, "table_mlp": 0.7,
                "table_head": 1.0, "intercept": 0.1}
    y = LatencyModel(table, per_kind).predict_ratio(archs)
    model, sel = LatencyModel.fit_select(table, archs, y, candidates=(FEATURES, SIMPLE_FEATURES))
    assert sel["chosen"] == list(FEATURES) and min(sel["loo_mape"].values()) < 1e-6
    y = LatencyModel(table, {"table": 1.3, "intercept": 0.1}).predict_ratio(archs)
    model, sel = LatencyModel.fit_select(table, archs, y, candidates=(SIMPLE_FEATURES,))
    assert model.coef["table"] == pytest.approx(1.3)
