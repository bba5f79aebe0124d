"""Table building, subnet timing and validation with a mocked timer (synthetic, deterministic)."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest

from autovit.latency import profile as prof
from autovit.latency import validate as val
from autovit.errors import AutovitError
from autovit.latency.blocks import BlockSig, context_key, space_blocks
from autovit.latency.imputation import select_anchors
from autovit.latency.lut import synthetic_table
from autovit.latency.measure import MeasureConfig, RoundTimes, measure_paired, measure_rounds
from autovit.latency.predictor import LatencyModel
from autovit.space import SearchSpace

REF_MS = 10.0
DRIFT = (1.0, 1.15, 0.9, 1.3, 1.05)  # the machine's speed per round: ratios must not care


def true_cost(sig: str) -> float:
    return 0.05 + (zlib.crc32(sig.encode()) % 1000) / 1000  # ms, reproducible


def fake_ms(name: str) -> float:
    base = name.split("#")[0]
    if base == "ref":  # the stability check times the reference alone
        return REF_MS
    if base.startswith("ctx:"):
        return 1.0 + (zlib.crc32(base.encode()) % 100) / 100
    if base.startswith("net"):
        return 5.0 + int(base[3:])
    sig = BlockSig.parse(base)
    return fake_ms(context_key(sig)) + sig.copies * true_cost(base)


def fake_rounds(runners, reference, groups=None, rounds=5, *args, spread=False, **kwargs) -> RoundTimes:
    groups = groups or [[n] for n in runners]
    ms = {n: [] for n in runners}
    ref_of = {n: [] for n in runners}
    refs = []
    for r in range(rounds):
        drift = DRIFT[r % len(DRIFT)] * (3.0 if spread and r % 2 else 1.0)
        for g in groups:
            refs.append(REF_MS * drift)
            for n in g:
                ms[n].append(fake_ms(n) * drift)
                ref_of[n].append(REF_MS * drift)
    return RoundTimes(ms, ref_of, refs)


@pytest.fixture
def mocked(monkeypatch):
    monkeypatch.setattr(MeasureConfig, "runner", lambda self, module, size, key=None: (lambda: None))
    monkeypatch.setattr(prof, "measure_rounds", fake_rounds)
    return monkeypatch


def _sigs():
    sigs = space_blocks(SearchSpace.builtin("xxs"))
    return [s for s in sigs if s.kind in ("stem", "attn", "head")] + [s for s in sigs if s.kind == "mbconv"][:6]


def test_in_context_difference_is_exact_under_drift(mocked) -> None:
    sigs = _sigs()
    built = prof.build_table(SearchSpace.builtin("xxs"), 256, MeasureConfig(rounds=5), sigs=sigs)
    t = built.table
    assert len(t.entries) == len(sigs) and t.meta["modules_measured"] == len(sigs)
    for s in sigs:
        e = t.entries[str(s)]
        assert e["ratio_to_ref"] == pytest.approx(true_cost(str(s)) / REF_MS, rel=1e-9)
        assert e["count"] == 5 and e["copies"] == s.copies and e["fingerprint"] == t.to_dict()["fingerprint_id"]
    assert t.fingerprint["backend"] == "ort" and t.fingerprint["threads"] == 1 and t.fingerprint["resolution"] == 256


def test_default_build_measures_the_anchors_and_imputes_the_rest(mocked) -> None:
    space = SearchSpace.builtin("xxs")
    sigs = space_blocks(space)
    anchors = {str(s) for s in select_anchors(sigs)}
    t = prof.build_table(space, 256, MeasureConfig(rounds=5)).table
    assert set(t.entries) == {str(s) for s in sigs}
    assert t.meta["modules_measured"] == len(anchors) == 66 and t.meta["modules_imputed"] == len(sigs) - 66
    for key, e in t.entries.items():
        if key in anchors:
            assert e["source"] == "measured" and e["ratio_to_ref"] == pytest.approx(true_cost(key) / REF_MS, rel=1e-9)
        else:
            assert e["source"] == "imputed" and e["count"] == 0 and e["ratio_to_ref"] >= 0
    assert set(t.meta["imputation"]) == {"mbconv", "tfixed", "attn", "mlp"}
    full = prof.build_table(space, 256, MeasureConfig(rounds=5), measure="all").table
    assert full.meta["modules_measured"] == len(sigs) and full.meta["modules_imputed"] == 0
    assert all(e["source"] == "measured" for e in full.entries.values())
    with pytest.raises(AutovitError, match="unknown measure mode 'some'"):
        prof.build_table(space, 256, MeasureConfig(rounds=5), measure="some")


@pytest.mark.parametrize("name,res,anchors", [("mnv4_s", 224, 97), ("mnv4_m", 256, 66)])
def test_mnv4_family_builds_a_table_with_uib_and_mqa_contexts(mocked, name, res, anchors) -> None:
    space = SearchSpace.builtin(name)
    sigs = space_blocks(space)
    t = prof.build_table(space, res, MeasureConfig(rounds=5)).table
    assert set(t.entries) == {str(s) for s in sigs}
    assert t.meta["modules_measured"] == len(select_anchors(sigs)) == anchors
    mqa = [s for s in sigs if s.kind == "mqa"]
    assert mqa and all(context_key(s) == f"ctx:adapter,c={dict(s.params)['d']},h={dict(s.params)['h']}" for s in mqa)
    for s in mqa + [s for s in sigs if s.kind == "uib"]:
        e = t.entries[str(s)]
        if e["source"] == "measured":
            assert e["ratio_to_ref"] == pytest.approx(true_cost(str(s)) / REF_MS, rel=1e-9)


def test_unstable_machine_is_refused_before_any_block_is_measured(mocked) -> None:
    measured: list[int] = []  # number of runners of every measure_rounds call

    def unstable(runners, *a, **k):
        measured.append(len(runners))
        return fake_rounds(runners, *a, spread=True, **k)

    mocked.setattr(prof, "measure_rounds", unstable)
    with pytest.raises(prof.UnstableMachineError, match=r"spread \d+% \(IQR / median\) before measuring") as err:
        prof.build_table(SearchSpace.builtin("xxs"), 256, MeasureConfig(rounds=5), sigs=_sigs())
    assert measured == [1]  # only the reference's stability check ran
    assert "--force-unstable" in err.value.hint
    shown: list[str] = []
    built = prof.build_table(SearchSpace.builtin("xxs"), 256, MeasureConfig(rounds=5), sigs=_sigs(), force=True,
                             warn=shown.append)
    ref = built.table.reference
    assert ref["precheck_spread"] > prof.MAX_REFERENCE_SPREAD and ref["spread"] > prof.MAX_REFERENCE_SPREAD
    assert len(shown) == 2 and "before measuring" in shown[0] and "over the block timings" in shown[1]
    assert built.table.meta["warnings"] == shown


def test_stable_machine_measures_without_warnings(mocked) -> None:
    shown: list[str] = []
    t = prof.build_table(SearchSpace.builtin("xxs"), 256, MeasureConfig(rounds=5), sigs=_sigs(), warn=shown.append).table
    assert shown == [] and "warnings" not in t.meta
    assert t.reference["precheck_spread"] == t.reference["spread"] == pytest.approx(0.15 / 1.05)  # DRIFT's IQR / median


def test_noise_during_the_measurement_keeps_the_table_with_a_warning(mocked) -> None:
    """A machine that passed the check and got busy later: the work is kept, the warning says so."""
    mocked.setattr(prof, "measure_rounds", lambda runners, *a, **k: fake_rounds(runners, *a, spread=len(runners) > 1, **k))
    shown: list[str] = []
    t = prof.build_table(SearchSpace.builtin("xxs"), 256, MeasureConfig(rounds=5), sigs=_sigs(), warn=shown.append).table
    assert t.reference["precheck_spread"] < prof.MAX_REFERENCE_SPREAD < t.reference["spread"]
    assert len(shown) == 1 and "over the block timings" in shown[0] and "kept" in shown[0]
    assert t.meta["warnings"] == shown


def test_a_fit_that_drops_the_table_warns(mocked) -> None:
    """Subnet latencies that follow the block counts alone: NNLS zeroes every table term."""
    space = SearchSpace.builtin("xxs")

    def by_counts(archs, *a, **k):
        ratio = np.array([0.3 + 0.05 * sum(s.depth for s in x.mbconv) + 0.02 * sum(s.depth for s in x.transformer)
                          for x in archs])
        return prof.SubnetTimes(list(archs), ratio, ratio * REF_MS, ratio * 0, REF_MS, 0.01)

    mocked.setattr(prof, "measure_subnets", by_counts)
    shown: list[str] = []
    model = prof.profile_space(space, 256, MeasureConfig(rounds=5), fit_subnets=16, warn=shown.append)
    assert model.table.model["table_share"] < prof.MIN_TABLE_SHARE
    assert len(shown) == 1 and shown[0].startswith("the fit dropped the lookup table")
    assert model.table.meta["warnings"] == shown


def test_subnet_timing_and_validation_report(mocked, tmp_path) -> None:
    space = SearchSpace.builtin("xxs")
    table = synthetic_table(space, seed=0)
    mocked.setattr(prof, "seeded_model", lambda arch, n: None)
    archs = prof.fit_archs(space, 12, seed=0)
    # whole subnets: make "measured" = exact table sum * 1.1 + 0.02 so the fitted model is exact
    raw = LatencyModel(table)
    truth = {f"net{i}": v for i, v in enumerate(raw.predict_ratio(archs) * 1.1 + 0.02)}

    def subnet_rounds(runners, reference, rounds=5, *a, **k):
        names = list(runners)
        ms = {n: [truth_for[n] * REF_MS * d for d in DRIFT[:rounds]] for n in names}
        return RoundTimes(ms, {n: [REF_MS * d for d in DRIFT[:rounds]] for n in names},
                          [REF_MS * d for d in DRIFT[:rounds]])

    truth_for = truth
    mocked.setattr(prof, "measure_paired", subnet_rounds)
    times = prof.measure_subnets(archs, MeasureConfig(rounds=5))
    np.testing.assert_allclose(times.ratio, list(truth.values()), rtol=1e-12)
    model = LatencyModel.fit(table, archs, times.ratio)
    np.testing.assert_allclose(model.predict_ratio(archs), times.ratio, rtol=1e-6)
    table.model = {"coef": model.coef, "fit": times.to_dict()}
    model = LatencyModel(table, model.coef)
    held = prof.sample_distinct(space, 10, 1001, archs)
    corners = val.extreme_subnets(space)
    truth_for = {f"net{i}": v for i, v in enumerate(LatencyModel(table).predict_ratio(held + corners) * 1.1 + 0.02)}
    mocked.setattr(val, "subnet_runners", lambda archs, *a, **k: [None] * len(archs))
    mocked.setattr(val, "reference_runner", lambda *a, **k: None)
    report = val.run_validation(model, space, samples=10, seed=1, config=MeasureConfig(rounds=5),
                                groups={"extremes": corners})
    assert report["samples"] == 10 and len(report["measured_ratio"]) == 10  # headline: the random ones
    assert report["groups"]["extremes"]["n"] == len(corners) >= 2 and report["groups"]["extremes"]["mape"] < 1e-6
    m = report["metrics"]
    assert m["mape"] < 1e-6 and m["within_5"] == 100 and m["kendall_tau"] == pytest.approx(1.0)
    assert report["retest_noise"]["mape"] == 0
    assert set(report["ablations"]) == {"latency_model", "raw_table_sum", "single_table_scale", "macs_linear",
                                         "flops_proxy", "params_proxy"}  # the slow MLP ablation is opt-in
    phases: list[tuple] = []
    mocked.setattr(val, "mlp_predictor", lambda space, archs, y: (lambda batch: np.arange(1.0, len(batch) + 1)))
    with_mlp = val.run_validation(model, space, samples=10, seed=1, config=MeasureConfig(rounds=5),
                                  progress=lambda *p: phases.append(p), mlp_ablation=True)
    assert with_mlp["ablations"]["hat_mlp"]["trained_on"] == 12
    assert [p for p in phases if p[0] == "ablation: HAT MLP"] == [("ablation: HAT MLP", 0, 1), ("ablation: HAT MLP", 1, 1)]
    assert report["ablations"]["raw_table_sum"]["bias"] < 0  # raw sum misses the 1.1x scale and intercept
    png = val.plot_validation(report, tmp_path / "v.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    json.dumps(report)


def test_error_metrics_definitions() -> None:
    m = val.error_metrics([1.0, 2.15, 2.8, 4.0], [1.0, 2.0, 3.0, 4.0])
    assert m["mape"] == pytest.approx((0 + 7.5 + 20 / 3 + 0) / 4)
    assert m["max_error"] == pytest.approx(7.5) and m["within_10"] == 100 and m["within_5"] == 50
    assert m["kendall_tau"] == pytest.approx(1.0)


def test_measure_rounds_pairs_each_group_with_one_reference(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr("autovit.latency.measure.time_runner", lambda run, runs: run())
    monkeypatch.setattr("autovit.latency.measure.calibrate_runs", lambda run, *a, **k: (3, 1.0))

    def make(name, value):
        return lambda: (calls.append(name), value)[1]

    runners = {"a": make("a", 2.0), "b": make("b", 3.0)}
    times = measure_rounds(runners, make("ref", 4.0), [["a", "b"]], rounds=3)
    assert calls == ["ref", "a", "b"] * 3
    assert times.timing("a").ratio_to_ref == pytest.approx(0.5) and times.reference_spread == 0


def test_measure_paired_alternates_reference_and_network(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr("autovit.latency.measure.time_runner", lambda run, runs: run())
    monkeypatch.setattr("autovit.latency.measure.calibrate_runs", lambda run, *a, **k: (3, 100.0))
    load = iter([1.0, 1.0, 2.0, 2.0, 1.5, 1.5] * 10)  # the machine's slowdown changes call by call

    def make(name, value):
        def run():
            calls.append(name)
            return value * next(load)
        return run

    times = measure_paired({"net": make("net", 30.0)}, make("ref", 10.0), rounds=2, target_ms=300.0, warmup=0)
    assert calls == ["ref", "net"] * 6
    np.testing.assert_allclose(times.ratios("net"), [3.0, 3.0])  # pairwise ratios cancel the slowdown


def test_profile_cli_prints_warnings_as_one_line_and_names_the_spreads(mocked, tmp_path, capsys) -> None:
    from autovit.cli import main
    from autovit.latency import measure

    mocked.setattr(measure, "pin_process", lambda cpu: None)
    mocked.setattr(prof, "measure_rounds", lambda *a, **k: fake_rounds(*a, spread=True, **k))
    with pytest.raises(SystemExit) as exc:
        main(["latency", "profile", "--out", str(tmp_path / "t.json"), "--fit-subnets", "0", "--rounds", "5",
              "--force-unstable"])
    assert exc.value.code in (0, None)
    out, err = (" ".join(text.split()) for text in capsys.readouterr())
    assert "warning: the reference network's timings spread" in err and "before measuring" in err
    assert "UserWarning" not in err and "warnings.warn" not in err
    assert "in the stability check before measuring" in out and "over the block timings" in out
    assert json.loads((tmp_path / "t.json").read_text())["meta"]["warnings"][0].endswith("because of --force-unstable (the table may be noisy)")
