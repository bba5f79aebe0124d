"""The latency budget contract (autovit.search.budget) with synthetic timings: no network is timed."""

from __future__ import annotations

import json
import types
from types import SimpleNamespace

import numpy as np
import pytest

from autovit.arch import Arch
from autovit.cli import main
from autovit.errors import AutovitError
from autovit.search.budget import (LatencyBudget, RatioTimes, ResolvedBudget, bench_contract, contract_line,
                                   resolve_budget, verify_candidates)
from search_toys import tiny_space, write_toy_supernet, write_toy_table

# Synthetic machine: ms of each model on a quiet machine; the reference network runs 1 ms.
QUIET_MS = {"reference": 1.0, "mobilevit_xxs": 1.8}


class FakeTimer:
    """Times every model at `QUIET_MS x slowdown` (archs: `arch_ratio(index, arch)` x the reference)."""

    def __init__(self, slowdown: float = 1.0, arch_ratio=None, spread: float = 0.02, model_ms=None,
                 ratio_spread=None, reference_noise=None) -> None:
        self.slowdown, self.arch_ratio, self.spread, self.calls = slowdown, arch_ratio, spread, []
        self.ratio_spread, self.reference_noise = ratio_spread or {}, reference_noise
        self.model_ms = {**QUIET_MS, **(model_ms or {})}

    def __call__(self, models) -> RatioTimes:
        self.calls.append(dict(models))
        ref = QUIET_MS["reference"] * self.slowdown
        ratio = {}
        for i, (name, spec) in enumerate(models.items()):
            ratio[name] = (self.arch_ratio(i, spec) if isinstance(spec, Arch) else
                           self.model_ms[spec] / self.model_ms["reference"])
        return RatioTimes(ratio, {n: r * ref for n, r in ratio.items()}, ref, self.spread, self.ratio_spread,
                          self.reference_noise)


@pytest.mark.parametrize("text, expected", [
    ("12ms", LatencyBudget(ms=12.0)), ("0.012s", LatencyBudget(ms=12.0)), ("12", LatencyBudget(ms=12.0)),
    ("mobilevit_xxs", LatencyBudget(model="mobilevit_xxs")),
    ("0.8x:mobilevit_xxs", LatencyBudget(model="mobilevit_xxs", factor=0.8)),
    (" 1.5x : resnet18 ", LatencyBudget(model="resnet18", factor=1.5)),
])
def test_budget_spellings(text, expected) -> None:
    assert LatencyBudget.parse(text) == expected
    assert LatencyBudget.parse(expected) is expected


@pytest.mark.parametrize("text, words", [("12M", "is a time"), ("0x:mobilevit_xxs", "must be positive"),
                                         ("mobile vit", "cannot read the latency budget")])
def test_bad_budget_spellings(text, words) -> None:
    with pytest.raises(AutovitError, match=words):
        LatencyBudget.parse(text)


def test_a_budget_timed_on_a_slower_machine_gives_the_same_ratio() -> None:
    budget = LatencyBudget.parse("0.8x:mobilevit_xxs")
    quiet = resolve_budget(budget, reference_ms_table=0.9, timer=FakeTimer(1.0))
    loaded = resolve_budget(budget, reference_ms_table=0.9, timer=FakeTimer(1.5))
    assert quiet.ratio == pytest.approx(0.8 * 1.8) and loaded.ratio == pytest.approx(quiet.ratio)
    assert loaded.ms_table == pytest.approx(quiet.ms_table) == pytest.approx(0.8 * 1.8 * 0.9)
    assert loaded.ms_now == pytest.approx(1.5 * quiet.ms_now)
    # an absolute budget converts through the reference timed now: the same 2 ms is a tighter
    # budget (in reference units) on the slower machine, and the description says how it was converted
    fast, slow = (resolve_budget(LatencyBudget.parse("2ms"), 0.9, FakeTimer(s)) for s in (1.0, 1.5))
    assert fast.ratio == pytest.approx(2.0) and slow.ratio == pytest.approx(2.0 / 1.5)
    assert "converted through the reference timed now" in slow.describe()
    untimed = resolve_budget(LatencyBudget.parse("2ms"), 0.5)
    assert untimed.ratio == pytest.approx(4.0) and not untimed.timed and "not timed here" in untimed.describe()
    assert ResolvedBudget.from_dict(json.loads(json.dumps(loaded.to_dict()))) == loaded


def test_a_model_budget_cannot_be_resolved_without_timing() -> None:
    with pytest.raises(AutovitError, match="must be timed on this machine"):
        resolve_budget(LatencyBudget.parse("mobilevit_xxs"), 1.0)


def _cands(n: int):
    space = tiny_space()
    archs = [space.smallest(), *[space.sample(__import__("random").Random(i)) for i in range(n - 1)]]
    return [SimpleNamespace(arch=a, key=f"k{i}", accuracy=90.0 - i) for i, a in enumerate(archs)]


class RatioModel:
    def __init__(self, ratios) -> None:
        self.ratios = ratios

    def predict_ratio(self, archs):
        return np.asarray(self.ratios[:len(archs)], dtype=float)


def test_verification_returns_the_next_candidate_when_the_winner_measures_over_budget() -> None:
    budget = resolve_budget(LatencyBudget.parse("mobilevit_xxs"), 1.0, FakeTimer())
    measured = [2.5, 1.9, 1.6]  # the winner (1.8x predicted) runs 2.5x the reference: over the 1.8x budget
    timer = FakeTimer(arch_ratio=lambda i, arch: measured[i], spread=0.02)
    v = verify_candidates(_cands(3), RatioModel([1.75, 1.7, 1.5]), budget, timer)
    assert "budget" in timer.calls[0] and len(timer.calls[0]) == 4  # budget model in the same rounds
    assert v.chosen == 2 and v.winner.key == "k2" and v.winner.budget_fraction == pytest.approx(1.6 / 1.8)
    assert [r.within for r in v.rows] == [False, False, True]
    assert v.rows[0].error_pct == pytest.approx((1.75 - 2.5) / 2.5 * 100)
    assert "BUDGET NOT MET" not in v.markdown() and "**(returned)**" in v.markdown()
    # within the measured noise (2%) when nothing is strictly under budget
    timer = FakeTimer(arch_ratio=lambda i, arch: [2.5, 1.82, 1.9][i], spread=0.02)
    assert verify_candidates(_cands(3), RatioModel([1.7] * 3), budget, timer).chosen == 1
    # the tolerance is the noise of the budget's own ratio, not the reference's raw ms spread (which
    # mixes pairings): a machine whose reference drifts 48% still judges within 1%, and says so
    timer = FakeTimer(arch_ratio=lambda i, arch: [1.85, 1.815, 1.9][i], spread=0.48, ratio_spread={"budget": 0.01})
    v = verify_candidates(_cands(3), RatioModel([1.7] * 3), budget, timer)
    assert v.chosen == 1 and v.tolerance == pytest.approx(0.01) and [r.within for r in v.rows] == [False, True, False]
    assert "noise of the budget's figure +-1.0%" in v.markdown() and "48.0% across the pairings" in v.markdown()
    # an ms budget: the reference's noise within a pairing (1%), not its drift between pairings (48%),
    # so a candidate 30% over the budget is not accepted as "within the noise"
    in_ms = resolve_budget(LatencyBudget.parse("1.8ms"), 1.0, FakeTimer())
    timer = FakeTimer(arch_ratio=lambda i, arch: [2.34, 1.815, 1.9][i], spread=0.48, reference_noise=0.01)
    v = verify_candidates(_cands(3), RatioModel([1.7] * 3), in_ms, timer)
    assert v.chosen == 1 and v.tolerance == pytest.approx(0.01) and [r.within for r in v.rows] == [False, True, False]
    timer = FakeTimer(arch_ratio=lambda i, arch: [2.34, 2.5, 2.6][i], spread=0.48, reference_noise=0.01)
    assert verify_candidates(_cands(3), RatioModel([1.7] * 3), in_ms, timer).chosen is None
    # none within budget: no choice, and the report says so
    timer = FakeTimer(arch_ratio=lambda i, arch: 3.0)
    v = verify_candidates(_cands(3), RatioModel([1.7] * 3), budget, timer)
    assert v.chosen is None and "BUDGET NOT MET" in v.markdown() and v.to_dict()["met"] is False


def test_bench_contract_line() -> None:
    bench = {"models": [{"name": "mobilevit_xxs", "median_ms": 2.0, "rounds_ms": [2.0, 2.0, 2.2, 1.8]},
                        {"name": "runs/x/arch.json", "median_ms": 1.7, "rounds_ms": [1.8, 1.6, 1.98, 1.62]}]}
    resolved = resolve_budget(LatencyBudget.parse("mobilevit_xxs"), 1.0, FakeTimer()).to_dict()
    c = bench_contract(bench, resolved, "runs/x/arch.json")
    assert c["fraction"] == pytest.approx(0.9) and c["met"] and c["rounds"] == 4
    assert contract_line(c).startswith("Latency budget contract: met -- the searched model measured 0.900x its "
                                       "budget (mobilevit_xxs)")
    tight = resolve_budget(LatencyBudget.parse("0.8x:mobilevit_xxs"), 1.0, FakeTimer()).to_dict()
    assert "**NOT MET**" in contract_line(bench_contract(bench, tight, "runs/x/arch.json"))


# ---------------------------------------------------------------------------- the CLI
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("budget_cli")
    space = tiny_space()
    return {"dir": d, "supernet": write_toy_supernet(d / "supernet.pt", space),
            "lut": write_toy_table(d / "lut.json", space)}


SMALL = ["--population", "4", "--generations", "1", "--parents", "2", "--coarse-samples", "300",
         "--coarse-top-k", "4", "--calib-images", "32", "--val-images", "32", "--no-impact"]


def _run(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    return exit_info.value.code, " ".join((captured.out + captured.err).split())


def _fake(monkeypatch, timer) -> None:
    monkeypatch.setattr("autovit.search.budget.OnnxTimer", lambda *a, **k: timer)


def test_infeasible_model_budget_exits_2_with_the_fastest_latency(files, monkeypatch, capsys) -> None:
    _fake(monkeypatch, FakeTimer())  # mobilevit_xxs = 1.8x the reference; the tiny space's fastest is 0.138x
    code, text = _run(["search", "--supernet", str(files["supernet"]), "--lut", str(files["lut"]),
                       "--latency-budget", "0.05x:mobilevit_xxs", "--out", str(files["dir"] / "infeasible"),
                       *SMALL], capsys)
    assert code == 2, text
    assert "no subnet of the space 'tiny' at 64px can meet the latency budget 0.05x mobilevit_xxs = 0.090x" in text
    assert "fastest it reaches is predicted at 0.138x the reference network (0.138 ms now)" in text
    assert "raise the budget to '0.08x:mobilevit_xxs' or more" in text and "lower resolution" in text
    assert not (files["dir"] / "infeasible" / "state.json").exists()  # refused before searching


def test_search_returns_a_candidate_that_measures_within_budget(files, monkeypatch, capsys) -> None:
    out = files["dir"] / "verified"
    # every arch measures at its key's hash: the predicted winner (first timed) measures 5x the budget
    _fake(monkeypatch, FakeTimer(arch_ratio=lambda i, arch: 9.0 if i == 0 else 0.2))
    code, text = _run(["search", "--supernet", str(files["supernet"]), "--lut", str(files["lut"]),
                       "--latency-budget", "mobilevit_xxs", "--out", str(out), "--json", *SMALL], capsys)
    assert code in (0, None), text
    budget = json.loads((out / "budget.json").read_text())
    assert budget["resolved"]["ratio"] == pytest.approx(1.8) and budget["resolved"]["ms_table"] == pytest.approx(18)
    ver = budget["verification"]
    assert ver["met"] and ver["candidates"][0]["within"] is False and ver["chosen"] != ver["candidates"][0]["key"]
    best = json.loads((out / "best.json").read_text())
    assert best["key"] == ver["chosen"] and best["latency_budget"]["verification"]["met"]
    assert "## Latency budget verification" in (out / "report.md").read_text()
    # a resumed run keeps its budget: another one is refused
    code, text = _run(["search", "--supernet", str(files["supernet"]), "--lut", str(files["lut"]),
                       "--latency-budget", "0.9x:mobilevit_xxs", "--out", str(out), "--resume", *SMALL], capsys)
    assert code == 2 and "was searched with the latency budget 'mobilevit_xxs', not '0.9x mobilevit_xxs'" in text
    # nothing within budget: the outputs are written, the report says so, the exit status is 2
    _fake(monkeypatch, FakeTimer(arch_ratio=lambda i, arch: 9.0))
    code, text = _run(["search", "--supernet", str(files["supernet"]), "--lut", str(files["lut"]),
                       "--latency-budget", "mobilevit_xxs", "--out", str(files["dir"] / "over"), *SMALL], capsys)
    assert code == 2 and "no candidate of the search measures within the latency budget mobilevit_xxs" in text
    assert "BUDGET NOT MET" in (files["dir"] / "over" / "report.md").read_text()


def test_front_candidates_keep_the_most_accurate_and_reach_the_fastest() -> None:
    def cand(key, acc, ms):
        return SimpleNamespace(key=key, accuracy=acc, latency_ms=ms)

    front = [cand(f"f{i}", 90.0 - i, 2.0 - 0.1 * i) for i in range(10)]  # f0 most accurate, f9 fastest
    over = cand("over", 99.0, 2.5)
    from autovit.search.budget import front_candidates

    picked = front_candidates(front[0], [over, *front], 2.0, 6)
    assert [c.key for c in picked] == ["f0", "f1", "f2", "f3", "f6", "f9"]
    short = front_candidates(front[0], front[:2], 2.0, 6, history=[cand("h", 80.0, 1.0), cand("big", 95.0, 3.0)])
    assert [c.key for c in short] == ["f0", "f1", "h"]


def test_verification_round_trips_and_validation_groups() -> None:
    budget = resolve_budget(LatencyBudget.parse("mobilevit_xxs"), 1.0, FakeTimer())
    timer = FakeTimer(arch_ratio=lambda i, a: [2.0, 1.5, 1.0][i])
    v = verify_candidates(_cands(3), RatioModel([1.7] * 3), budget, timer)
    from autovit.search.budget import Verification, validation_groups

    back = Verification.from_dict(json.loads(json.dumps(v.to_dict())))
    assert back.markdown() == v.markdown() and back.chosen == 1
    from autovit.latency.predictor import LatencyModel
    from autovit.latency.lut import synthetic_table

    space = tiny_space()
    model = LatencyModel(synthetic_table(space, seed=0, resolution=64))
    groups = validation_groups(model, space, True, "0.5x:mobilevit_xxs", FakeTimer(), near=3)
    assert space.smallest() in groups["extremes"] and space.largest() in groups["extremes"]
    near = model.predict_ratio(groups["near_budget"])
    assert len(near) == 3 and np.all(near <= 0.9) and np.all(near >= 0.5 * near.max())


def test_python_api_searches_within_a_model_budget_and_verifies() -> None:
    from autovit.latency.lut import synthetic_table
    from autovit.latency.predictor import LatencyModel
    from autovit.search import SearchConfig
    from autovit.search.budget import search_within_budget
    from search_toys import params_accuracy

    space = tiny_space()
    model = LatencyModel(synthetic_table(space, seed=0, resolution=64))
    fastest = float(model.predict_ratio([space.smallest()])[0])
    # the budget model runs 3x the fastest subnet; the predicted winner measures slow, the rest fast
    timer = FakeTimer(arch_ratio=lambda i, arch: 100.0 if i == 0 else fastest, model_ms={"mobilevit_xxs": 3 * fastest})
    cfg = SearchConfig(population=6, generations=1, parents=2, coarse_samples=300, coarse_top_k=6, seed=0)
    run = search_within_budget(space, params_accuracy, model, cfg, "mobilevit_xxs", timer=timer)
    assert run.budget.ratio == pytest.approx(3 * fastest)
    assert run.result.config.latency_budget_ms == pytest.approx(run.budget.ms_table)
    assert run.verification.chosen not in (None, 0) and run.result.best.key == run.verification.winner.key
    with pytest.raises(AutovitError, match="can meet the latency budget"):
        search_within_budget(space, params_accuracy, model, cfg, "0.01x:mobilevit_xxs", timer=FakeTimer())


def test_pipeline_passes_the_budget_through(tmp_path, monkeypatch) -> None:
    from autovit.pipeline import PipelineConfig
    from autovit.pipeline import run as run_mod

    from autovit import api

    calls: dict[str, list] = {}
    monkeypatch.setattr(api, "profile_latency", lambda cfg, *a, **k: calls.setdefault("latency", []).append(cfg))
    monkeypatch.setattr(api, "run_search", lambda cfg, *a, **k: calls.setdefault("search", []).append(cfg)
                        or types.SimpleNamespace(check_budget=lambda: None))
    monkeypatch.setattr(api, "run_bench", lambda cfg, *a, **k: calls.setdefault("bench", []).append(cfg))
    monkeypatch.setattr(run_mod.Pipeline, "_num_classes", lambda self: 10)
    measured = []
    monkeypatch.setattr("autovit.search.budget.OnnxTimer", lambda *a: a)
    monkeypatch.setattr("autovit.search.budget.measure_contract",
                        lambda model, budget, timer: measured.append((model, budget, timer)) or {"fraction": 0.9})
    cfg = PipelineConfig.from_dict({"name": "t", "out": str(tmp_path / "run"), "resolution": 32,
                                    "latency": {"num_classes": 10},
                                    "search": {"latency_budget": "0.8x:mobilevit_xxs"}, "baselines": ["resnet18"]})
    pipe = run_mod.Pipeline(cfg)
    assert pipe.budget == LatencyBudget(model="mobilevit_xxs", factor=0.8)
    assert pipe._baseline_names() == ["mobilevit_xxs", "resnet18"]
    for stage in (pipe._latency, pipe._search, pipe._final_bench):
        try:
            stage(tmp_path)
        except FileNotFoundError:
            pass  # the stage reads outputs the fake calls did not write
    (latency,), (search,), (bench,) = calls["latency"], calls["search"], calls["bench"]
    assert latency.num_classes == 10
    assert search.latency_budget == LatencyBudget(model="mobilevit_xxs", factor=0.8)  # typed, no string in between
    assert bench.reference == "mobilevit_xxs"
    # the contract is timed in the final benchmark: the exported model against its budget, shipped head size
    assert measured == [(bench.models[0], pipe.budget, (32, 1, 5, 10))]
    assert json.loads((tmp_path / "contract.json").read_text()) == {"fraction": 0.9}
    with pytest.raises(AutovitError, match="cannot read the latency budget"):
        PipelineConfig.from_dict({"name": "t", "out": "o", "search": {"latency_budget": "mobile vit"}})


def test_contract_measured_call_by_call_does_not_move_with_the_load() -> None:
    from autovit.search.budget import measure_contract

    quiet = measure_contract("mine", "mobilevit_xxs", FakeTimer(1.0, model_ms={"mine": 1.62}))
    loaded = measure_contract("mine", "mobilevit_xxs", FakeTimer(1.5, model_ms={"mine": 1.62}))
    assert quiet["fraction"] == pytest.approx(0.9) == pytest.approx(loaded["fraction"]) and loaded["met"]
    assert loaded["returned_ms"] == pytest.approx(1.5 * quiet["returned_ms"])
    tight = measure_contract("mine", "0.8x:mobilevit_xxs", FakeTimer(model_ms={"mine": 1.62}))
    assert tight["fraction"] == pytest.approx(1.125) and not tight["met"]
    assert contract_line(tight).startswith("Latency budget contract: **NOT MET** -- the searched model measured "
                                           "1.125x its budget (0.8x mobilevit_xxs) in the final benchmark (timed "
                                           "call by call with the reference network")
    assert measure_contract("mine", "2ms", FakeTimer(model_ms={"mine": 1.62}))["fraction"] == pytest.approx(0.81)
