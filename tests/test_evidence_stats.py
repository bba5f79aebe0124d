"""The evidence studies' shared machinery (benchmarks/_evidence.py): rank correlations with
bootstrap CIs, paired accuracy comparisons, the per-unit result cache, the proxy arch mapping."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from autovit.errors import AutovitError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import _evidence as ev  # noqa: E402


def test_rank_correlation_on_known_data():
    perfect = ev.rank_correlation([1, 2, 3, 4, 5, 6], [10, 20, 30, 40, 50, 60], n_boot=200)
    assert perfect["kendall_tau"] == pytest.approx(1.0) and perfect["spearman_rho"] == pytest.approx(1.0)
    assert perfect["kendall_tau_ci95"] == pytest.approx((1.0, 1.0))
    # one swapped pair of 5: 9 concordant, 1 discordant -> tau 0.8; rho = 1 - 6*2/(5*24) = 0.9
    r = ev.rank_correlation([1, 2, 3, 4, 5], [1, 2, 3, 5, 4], n_boot=200)
    assert r["kendall_tau"] == pytest.approx(0.8) and r["spearman_rho"] == pytest.approx(0.9)
    lo, hi = r["kendall_tau_ci95"]
    assert -1 <= lo < 0.8 <= hi <= 1
    reverse = ev.rank_correlation(range(12), range(12, 0, -1), n_boot=200)
    assert reverse["kendall_tau"] == pytest.approx(-1.0) and reverse["kendall_tau_p"] < 1e-4
    assert ev.rank_correlation([1, 2], [2, 1])["kendall_tau"] is None  # fewer than 3 pairs: no statistic


def test_bootstrap_ci_is_seeded_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    y = x + rng.normal(scale=1.0, size=200)
    a = ev.rank_correlation(x, y, n_boot=200, seed=1)
    assert a["kendall_tau_ci95"] == ev.rank_correlation(x, y, n_boot=200, seed=1)["kendall_tau_ci95"]
    small = ev.rank_correlation(x[:12], y[:12], n_boot=200, seed=1)
    width = lambda r: r["kendall_tau_ci95"][1] - r["kendall_tau_ci95"][0]  # noqa: E731
    assert width(a) < width(small)
    assert a["kendall_tau_ci95"][0] < a["kendall_tau"] < a["kendall_tau_ci95"][1]


def test_paired_accuracy_counts_discordant_images_and_mcnemar():
    a = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0, 0] * 10, bool)
    b = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 1] * 10, bool)
    r = ev.paired_accuracy(a, b)
    assert (r["top1_a"], r["top1_b"], r["diff_points"]) == pytest.approx((80.0, 50.0, 30.0))
    assert (r["only_a_correct"], r["only_b_correct"]) == (40, 10)
    from scipy.stats import binomtest

    assert r["mcnemar_p"] == pytest.approx(binomtest(40, 50, 0.5).pvalue)
    assert r["diff_ci95"][0] < 30 < r["diff_ci95"][1]
    same = ev.paired_accuracy(a, a)
    assert same["mcnemar_p"] == 1.0 and same["diff_ci95"] == pytest.approx((0.0, 0.0))
    with pytest.raises(AutovitError, match="same images"):
        ev.paired_accuracy(a, b[:50])


def test_paired_over_seeds():
    r = ev.paired_over_seeds([50.0, 52.0, 54.0], [49.0, 50.0, 51.0])
    assert r["mean_diff"] == pytest.approx(2.0)
    assert r["ci95"][0] < 2.0 < r["ci95"][1]
    assert 0 < r["ttest_p"] < 0.1
    assert "ttest_p" not in ev.paired_over_seeds([50.0], [49.0])


def test_bools_pack_round_trip():
    values = np.random.default_rng(0).random(10_001) < 0.6
    assert np.array_equal(ev.unpack_bools(ev.pack_bools(values), len(values)), values)


def test_unit_cache_computes_once_and_refuses_corrupt_files(tmp_path):
    cache = ev.UnitCache(tmp_path / "study")
    calls = []

    def compute():
        calls.append(1)
        return {"value": 42}

    first = cache.run("subnet00", compute, log=lambda m: None)
    assert first["value"] == 42 and first["unit"] == "subnet00" and "machine" in first and "wall_s" in first
    again = cache.run("subnet00", compute, log=lambda m: None)
    assert again == first and len(calls) == 1          # resumed: not recomputed
    assert cache.names() == ["subnet00"]
    cache.path("subnet01").write_text('{"unit": "subnet01", "value": ')   # interrupted writer
    with pytest.raises(AutovitError, match="corrupt") as err:
        cache.run("subnet01", compute, log=lambda m: None)
    assert "delete the file" in err.value.hint and len(calls) == 1
    cache.path("subnet02").write_text(json.dumps({"unit": "subnet05", "value": 1}))   # copied under another name
    with pytest.raises(AutovitError, match="not the result of unit 'subnet02'"):
        cache.load("subnet02")
    cache.path("subnet01").unlink()
    assert cache.run("subnet01", compute, log=lambda m: None)["value"] == 42 and len(calls) == 2


def stage_maps(arch) -> list[tuple[int, int]]:
    """The feature-map size after each stage of `arch` on a 32x32 input."""
    import torch

    from autovit.model import AutoViT

    seen = []
    model = AutoViT(arch, num_classes=10)
    hooks = [m.register_forward_hook(lambda mod, i, o: seen.append(tuple(o.shape[-2:]))) for m in model.stages]
    model(torch.zeros(1, 3, 32, 32))
    for h in hooks:
        h.remove()
    return seen


def test_proxy_space_gives_the_transformer_stages_real_token_grids():
    proxy = ev.XXS.proxy_space()
    arch = proxy.largest()
    seen = stage_maps(arch)
    assert seen[-4:] == [(16, 16), (8, 8), (4, 4), (2, 2)]   # the 4 transformer stages (2x2 patches: 8x8..1x1 tokens)
    deploy = ev.XXS.to_deploy(arch)
    assert deploy.resolution == 256 and deploy.layout == ev.XXS.deploy_space().layout
    assert ev.XXS.to_proxy(deploy) == arch                 # same choices both ways


def test_stratified_archs_span_predicted_latency_and_are_reproducible():
    archs = ev.stratified_archs(6, seed=0, pool=300)
    keys = [a.key() for a in archs]
    assert len(set(keys)) == 6 and keys == [a.key() for a in ev.stratified_archs(6, seed=0, pool=300)]
    space = ev.XXS.deploy_space()
    assert archs[0] == space.smallest() and archs[1] == space.largest()
    lat = ev.XXS.latency_model().predict(archs)
    assert lat[0] == min(lat) and lat[1] == max(lat)
    assert list(lat[2:]) == sorted(lat[2:])     # one arch per latency bin, bins in order


def test_mnv4_proxy_gives_the_mqa_stage_a_4x4_grid_and_maps_back_to_224px():
    import pareto_front as pf

    fam = pf.FAMILIES["mnv4_s"]
    proxy = fam.proxy_space()
    arch = proxy.largest()
    assert arch.num_transformer_stages == 1
    seen = stage_maps(arch)
    assert seen == [(32, 32), (16, 16), (8, 8), (8, 8), (4, 4), (4, 4), (4, 4)]  # six UIB stages, then MQA
    deploy = fam.to_deploy(arch)
    assert deploy.resolution == 224 and deploy.layout == fam.deploy_space().layout
    assert fam.to_proxy(deploy) == arch
    xxs = pf.FAMILIES["xxs"]   # the Pareto benchmark times the XXS family at 224 px too
    assert xxs.to_deploy(ev.XXS.proxy_space().smallest()).resolution == 224


def test_pareto_front_dominance_needs_a_faster_model_more_accurate_beyond_noise():
    import pareto_front as pf

    hand = [{"model": "fast_good", "latency_ratio": 0.3, "test_top1": 80.0, "test_images": 10000},
            {"model": "fast_close", "latency_ratio": 0.3, "test_top1": 78.5, "test_images": 10000},
            {"model": "slow_better", "latency_ratio": 0.9, "test_top1": 90.0, "test_images": 10000},
            {"model": "untrained", "latency_ratio": 0.1, "test_top1": None, "test_images": None}]
    # 78.0% on 10,000 images: 80.0% is 3.5 sd away, 78.5% only 0.9 sd; 90% is slower
    assert pf.dominated_by(78.0, 10000, 0.5, hand) == ["fast_good"]
    assert pf.dominated_by(78.0, 10000, 0.25, hand) == []
    assert pf.dominated_by(78.0, 100, 0.5, hand) == []   # 100 images: not beyond the noise


def test_pareto_summary_times_each_family_and_judges_against_both_layouts(tmp_path):
    import dataclasses

    import pareto_front as pf
    import vs_handdesigned as vh

    profile = dataclasses.replace(ev.get_profile("smoke"), results_dir=tmp_path)
    timing = pf.timing_cache(profile)
    timing.save("latency_timm", {"models": {"mobilevit_xxs": {"median_ms": 10.0, "ratio_to_reference_model": 1.0},
                                            "shvit_s1": {"median_ms": 5.0, "ratio_to_reference_model": 0.5}}})
    timing.save("latency_searched_xxs", {"models": {"xxs_0.6": {"ratio_to_reference_model": 0.55}}})
    ev.UnitCache(ev.results_dir(vh.STUDY, profile)).save(
        "train_shvit_s1_cifar_s0", {"params": 1, "full": {"test_top1": 70.0, "test_images": 10000}})
    cache = ev.UnitCache(ev.results_dir(pf.STUDY, profile))
    cache.save("search_xxs_0.6", {"winner": {"inherited_val_top1": 40.0}})
    cache.save("train_xxs_0.6_s0", {"params": 1, "full": {"test_top1": 60.0, "test_images": 10000}})
    cache.save("supernet_mnv4_s", {"inherited_val_top1": {"smallest": 44.3, "largest": 52.4}})
    cache.save("search_mnv4_s_0.5", {"winner": None, "skipped": "x",
                                     "supernet_extremes_top1": {"smallest": 44.1, "largest": 52.9}})
    s = pf.summary(profile, list(pf.FAMILIES))
    # searches record the weights they ran on: retrained weights are told apart from the unit's
    assert s["supernets"]["mnv4_s"] == {"unit": {"smallest": 44.3, "largest": 52.4},
                                        "searches": {"0.5": {"smallest": 44.1, "largest": 52.9}}}
    assert s["supernets"]["xxs"] == {"unit": None, "searches": {}}
    rows = {r["model"]: r for r in s["rows"]}
    assert rows["shvit_s1_cifar"]["latency_ratio"] == 0.5  # timed as deployed: its own layout's latency
    assert rows["shvit_s1"]["test_top1"] is None           # the own-layout training is another unit
    searched = rows["searched xxs @ 0.6x mobilevit_xxs"]
    assert searched["latency_ratio"] == 0.55 and searched["latency_ms"] == 5.5 and searched["within_budget"]
    assert searched["dominated_by"] == ["shvit_s1_cifar"]
    # untrained baselines at most as slow keep the verdict provisional; slower ones do not matter
    assert searched["untrained_faster"] == ["shvit_s1"]
    assert pf.verdict(searched) == "shvit_s1_cifar"
    assert pf.verdict({**searched, "dominated_by": []}) == "none so far; not trained yet: shvit_s1"
    assert pf.verdict({**searched, "dominated_by": [], "untrained_faster": []}) == "none: on or above the front"
    assert rows["searched mnv4_s @ 0.35x mobilevit_xxs"]["latency_ratio"] is None
    assert "latency_searched_xxs" not in s["missing"] and "latency_searched_mnv4_s" in s["missing"]
    assert "train_shvit_s1_cifar_s0" not in s["missing"] and "train_mobilevit_xxs_cifar_s0" in s["missing"]


def test_pareto_front_rejects_an_unknown_unit(capsys, monkeypatch):
    import pareto_front as pf

    monkeypatch.setattr(sys, "argv", ["pareto_front.py", "--profile", "smoke", "--units", "train_nothing_s0"])
    assert pf.main() == 2
    err = capsys.readouterr().err
    assert "unknown unit or group 'train_nothing_s0'" in err and "train_mobilevit_xxs_s0" in err


def test_standalone_units_keep_the_ground_truths_apart(tmp_path):
    import dataclasses

    import supernet_ranking as sr

    profile = dataclasses.replace(ev.get_profile("smoke"), results_dir=tmp_path)
    cache = ev.UnitCache(ev.results_dir("ranking_study", profile))
    for name, top1 in (("plan", None), ("subnet00", 50.0), ("subnet01", 40.0), ("subnet00_long", 70.0),
                       ("subnet00_lr5e-4", 60.0), ("subnet01_lr5e-4", 35.0), ("subnet01_lr5e-4x", 1.0)):
        cache.save(name, {"full": {"test_top1": top1}})
    truths = ev.standalone_truths(profile)
    got = {t: {n: u["full"]["test_top1"] for n, u in sr.standalone_units(profile, truths[t]).items()}
           for t in ("short", "long", "lr5e-4", "best_lr")}
    assert got == {"short": {"subnet00": 50.0, "subnet01": 40.0}, "long": {"subnet00": 70.0},
                   "lr5e-4": {"subnet00": 60.0, "subnet01": 35.0}, "best_lr": {"subnet00": 60.0, "subnet01": 40.0}}
    assert dict(truths["lr5e-4"].changes) == {"lr": 5e-4} and truths["long"].steps == profile.long_steps


def test_reports_cover_every_seed_with_a_unit(tmp_path):
    import dataclasses

    profile = dataclasses.replace(ev.get_profile("smoke"), results_dir=tmp_path)
    assert ev.report_seeds([], "method_comparison", profile) == [0, 1, 2]
    cache = ev.UnitCache(ev.results_dir("method_comparison", profile))
    for name in ("search_latency_s4", "train_random_s3", "latency"):
        cache.save(name, {})
    # a later run asked for seed 7 only still reports seeds 0-2 and the seeds that have units
    assert ev.report_seeds([7], "method_comparison", profile) == [0, 1, 2, 3, 4, 7]


def test_method_comparison_reports_whether_winners_keep_the_budget(tmp_path):
    import dataclasses

    import method_comparison as mc

    profile = dataclasses.replace(ev.get_profile("smoke"), results_dir=tmp_path)
    cache = ev.UnitCache(ev.results_dir(mc.STUDY, profile))
    assert "Not timed yet" in mc.report(profile, [0, 1])

    def row(measured: float, predicted: float) -> dict:
        return {"measured_ratio": measured, "predicted_ratio": predicted, "budget_ratio": 1.8,
                "prediction_error_pct": 100 * (predicted / measured - 1), "within_budget_measured": measured <= 1.8}

    cache.save("latency_s0", {"winners": {"latency": row(1.6, 1.5), "random": row(1.9, 1.7)}})
    cache.save("latency_s1", {"winners": {"latency": row(2.0, 1.8), "random": row(1.5, 1.5)}})
    text = mc.report(profile, [0, 1])
    assert "| latency-aware search (ours) | [0, 1] | 1.800 | 1.650 | -8.1% [-10.0, -6.2] | 1.800 | 1/2 |" in text
    assert "| random search | [0, 1] | 1.700 | 1.600 | -5.3% [-10.5, +0.0] | 1.800 | 1/2 |" in text
    assert "FLOPs-constrained search | [" not in text.split("keep the budget")[1]  # not timed: no row


def test_rank_correlation_beyond_size_removes_what_size_explains():
    size = np.array([1, 2, 4, 8, 16, 32, 64, 128], float)
    wobble = np.array([0.3, -0.2, 0.1, -0.4, 0.2, -0.1, 0.4, -0.3])
    # both track log(size) strongly, and their leftovers are opposite: tau 1 with size, -1 beyond it
    x, y = 10 * np.log(size) + wobble, 5 * np.log(size) - wobble
    assert ev.rank_correlation(x, y, n_boot=100)["kendall_tau"] == pytest.approx(1.0)
    assert ev.rank_correlation_beyond_size(x, y, size, n_boot=100)["kendall_tau"] == pytest.approx(-1.0)
    # leftovers that agree: +1 beyond size although y falls with size
    assert ev.rank_correlation_beyond_size(x, -np.log(size) + wobble, size, n_boot=100)["kendall_tau"] == pytest.approx(1.0)
    assert ev.rank_correlation_beyond_size([1, 2], [2, 1], [1, 2])["kendall_tau"] is None
    # 3 points: the residuals are one vector up to scale (tau +-1 by construction): undefined
    assert ev.rank_correlation_beyond_size([1, 3, 2], [2, 1, 3], [1, 2, 4])["kendall_tau"] is None


def test_rank_correlation_beyond_size_refits_the_line_in_every_resample():
    from scipy.stats import kendalltau

    rng = np.random.default_rng(3)
    size = np.exp(rng.uniform(0, 3, 9))
    x, y = np.log(size) + rng.normal(0, 0.5, 9), -np.log(size) + rng.normal(0, 0.5, 9)
    z = np.log(size)
    boot = np.random.default_rng(0)
    taus = []
    for _ in range(200):
        i = boot.integers(0, 9, 9)
        if len(np.unique(i)) < 4:
            continue
        rx = x[i] - np.polyval(np.polyfit(z[i], x[i], 1), z[i])
        ry = y[i] - np.polyval(np.polyfit(z[i], y[i], 1), z[i])
        t = kendalltau(rx, ry).statistic
        if np.isfinite(t):
            taus.append(t)
    expected = tuple(np.percentile(taus, [2.5, 97.5]))
    got = ev.rank_correlation_beyond_size(x, y, size, n_boot=200)["kendall_tau_ci95"]
    assert got == pytest.approx(expected)
