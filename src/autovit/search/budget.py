"""The latency budget as a contract: parsed once, measured as a ratio, checked before and after a search.

A budget is absolute (`12ms`, `0.012s`) or relative to a model (`mobilevit_xxs`, `0.8x:mobilevit_xxs`).
The latency model predicts in units of the table's reference network, so every budget is resolved
into that unit (`ResolvedBudget.ratio`):

- relative: the budget model is timed *interleaved with the reference network* now, so its ratio
  does not depend on how loaded the machine is (absolute ms measured in another stage do);
- absolute: the reference network is timed now and the budget divided by it; without timing
  (`--no-measure`, a table of another device) the table's stored reference time is used, and the
  budget says so.

Before searching, `check_feasible` refuses a budget below the fastest subnet of the space. After
searching, `verify_candidates` times the winner and the next candidates of the Pareto front in the
same interleaved rounds as the reference (and the budget model) and keeps the most accurate one
that *measures* within budget.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from autovit.arch import Arch
from autovit.errors import AutovitError

# A timed model: a model name for `autovit.bench.resolve_model` (timm, autovit_*, arch JSON) or an Arch.
ModelSpec = Any

_RELATIVE = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*x\s*:\s*(\S+)\s*")
_MODEL_NAME = re.compile(r"[A-Za-z_][\w.\-/]*")


@dataclass(frozen=True)
class LatencyBudget:
    """A latency budget as the user wrote it: `ms` (absolute) or `factor` x the latency of `model`."""

    ms: float | None = None
    model: str | None = None
    factor: float = 1.0

    def __post_init__(self) -> None:
        if (self.ms is None) == (self.model is None):
            raise AutovitError("a latency budget is either a time or a model", hint="e.g. '12ms' or "
                                                                                    "'0.8x:mobilevit_xxs'")
        for name, value in (("ms", self.ms), ("factor", self.factor)):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise AutovitError(f"the latency budget's {name} must be positive, got {value}")

    @classmethod
    def parse(cls, text: "str | float | LatencyBudget") -> "LatencyBudget":
        """'12ms' / '0.012s' / '12' (ms) / 'mobilevit_xxs' / '0.8x:mobilevit_xxs'."""
        from autovit.search.config import parse_latency

        if isinstance(text, LatencyBudget):
            return text
        if isinstance(text, (int, float)):
            return cls(ms=parse_latency(text))
        s = str(text).strip()
        rel = _RELATIVE.fullmatch(s)
        if rel:
            return cls(model=rel.group(2), factor=float(rel.group(1)))
        if s[:1].isdigit() or s[:1] == ".":
            return cls(ms=parse_latency(s))
        if not _MODEL_NAME.fullmatch(s):
            raise AutovitError(f"cannot read the latency budget '{text}'",
                               hint="write a time ('12ms', '0.012s') or a model ('mobilevit_xxs', "
                                    "'0.8x:mobilevit_xxs')")
        return cls(model=s)

    @property
    def relative(self) -> bool:
        return self.model is not None

    def __str__(self) -> str:
        if self.model is None:
            return f"{self.ms:g} ms"
        return self.model if self.factor == 1.0 else f"{self.factor:g}x {self.model}"


@dataclass(frozen=True)
class RatioTimes:
    """Models timed interleaved with the reference network: median ratio and ms per name."""

    ratio: Mapping[str, float]
    ms: Mapping[str, float]
    reference_ms: float
    reference_spread: float  # relative IQR of the reference's per-round medians (drift; ratios cancel it)
    ratio_spread: Mapping[str, float] = field(default_factory=dict)  # relative IQR of each per-round ratio
    # relative IQR of the reference's per-round medians within one pairing, median over pairings: its
    # timing noise without the drift between pairings (None: not measured, use reference_spread)
    reference_noise: float | None = None

    @property
    def reference_timing_noise(self) -> float:
        """The noise of a figure converted through the reference's ms: its spread within a pairing
        when measured, else its spread over the whole measurement."""
        return self.reference_spread if self.reference_noise is None else self.reference_noise


# Times the named models interleaved with the table's reference network.
Timer = Callable[[Mapping[str, ModelSpec]], RatioTimes]


@dataclass(frozen=True)
class ResolvedBudget:
    """A budget in the latency model's unit (`ratio` to the reference network), with its ms views."""

    budget: LatencyBudget
    ratio: float
    reference_ms_table: float
    reference_ms_now: float | None = None  # None: not timed here (ms taken at table time)
    reference_spread: float | None = None
    model_ratio: float | None = None  # the budget model's measured ratio to the reference

    @property
    def ms_table(self) -> float:
        """The budget in ms at the table's reference time (what `LatencyModel.predict` returns)."""
        return self.ratio * self.reference_ms_table

    @property
    def ms_now(self) -> float | None:
        return None if self.reference_ms_now is None else self.ratio * self.reference_ms_now

    @property
    def timed(self) -> bool:
        return self.reference_ms_now is not None

    def describe(self) -> str:
        """One line naming every unit, e.g. 'mobilevit_xxs = 1.84x the reference network (2.10 ms now,
        1.95 ms at table time; measured interleaved with the reference)'."""
        now = f"{self.ms_now:.3f} ms now, " if self.ms_now is not None else ""
        how = ("measured interleaved with the reference" if self.budget.relative else
               "converted through the reference timed now" if self.timed else
               "converted with the table's stored reference time (not timed here)")
        return (f"{self.budget} = {self.ratio:.3f}x the reference network ({now}{self.ms_table:.3f} ms at table "
                f"time; {how})")

    def to_dict(self) -> dict[str, Any]:
        return {"budget": str(self.budget), "spec": asdict(self.budget), "ratio": self.ratio,
                "ms_now": self.ms_now, "ms_table": self.ms_table, "reference_ms_now": self.reference_ms_now,
                "reference_ms_table": self.reference_ms_table, "reference_spread": self.reference_spread,
                "model_ratio": self.model_ratio, "description": self.describe()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ResolvedBudget":
        return cls(LatencyBudget(**d["spec"]), float(d["ratio"]), float(d["reference_ms_table"]),
                   d.get("reference_ms_now"), d.get("reference_spread"), d.get("model_ratio"))


def resolve_budget(budget: LatencyBudget, reference_ms_table: float, timer: Timer | None = None) -> ResolvedBudget:
    """The budget in reference-network units. A relative budget needs `timer` (its model is timed
    interleaved with the reference); an absolute one is converted through the reference timed now,
    or, without `timer`, through the table's stored reference time."""
    if budget.relative:
        if timer is None:
            raise AutovitError(f"the latency budget '{budget}' names a model, which must be timed on this machine",
                               hint="drop --no-measure / --force-table, or give the budget in ms (e.g. '12ms')")
        times = timer({budget.model: budget.model})
        model_ratio = float(times.ratio[budget.model])
        return ResolvedBudget(budget, budget.factor * model_ratio, reference_ms_table, times.reference_ms,
                              times.reference_spread, model_ratio)
    if timer is None:
        return ResolvedBudget(budget, budget.ms / reference_ms_table, reference_ms_table)
    times = timer({})
    return ResolvedBudget(budget, budget.ms / times.reference_ms, reference_ms_table, times.reference_ms,
                          times.reference_spread)


# ---------------------------------------------------------------------------- feasibility
def fastest_subnet(latency_model: Any, space: Any, samples: int = 2000, seed: int = 0) -> tuple[Arch, float]:
    """The subnet with the lowest predicted ratio among the space's extremes and `samples` random ones."""
    rng = random.Random(seed)
    res = latency_model.table.resolution
    archs = [a.replace(resolution=res) for a in (space.smallest(), space.width_extremes()[0])]
    archs += [space.sample(rng).replace(resolution=res) for _ in range(samples)]
    ratios = latency_model.predict_ratio(archs)
    i = int(np.argmin(ratios))
    return archs[i], float(ratios[i])


def check_feasible(resolved: ResolvedBudget, latency_model: Any, space: Any) -> float:
    """Raises when even the fastest subnet of `space` is predicted above the budget; returns the
    fastest predicted ratio."""
    _, fastest = fastest_subnet(latency_model, space)
    if fastest <= resolved.ratio:
        return fastest
    b = resolved.budget
    ref_now = resolved.reference_ms_now or resolved.reference_ms_table
    when = "now" if resolved.timed else "at table time"
    reach = f"{fastest:.3f}x the reference network ({fastest * ref_now:.3f} ms {when})"
    if b.relative:
        need = math.ceil(fastest / resolved.model_ratio * 100) / 100
        raise_to = f"'{need:g}x:{b.model}' or more"
    else:
        raise_to = f"'{math.ceil(fastest * ref_now * 100) / 100:g}ms' or more"
    raise AutovitError(
        f"no subnet of the space '{space.name}' at {latency_model.table.resolution}px can meet the latency budget "
        f"{resolved.describe()}: the fastest it reaches is predicted at {reach}",
        hint=f"raise the budget to {raise_to}, search at a lower resolution, or search a smaller space")


# ---------------------------------------------------------------------------- verification
@dataclass(frozen=True)
class VerifiedCandidate:
    """One candidate's predicted and measured latency (reference-network units and ms now)."""

    key: str
    accuracy: float
    predicted_ratio: float
    measured_ratio: float
    measured_ms: float
    budget_fraction: float  # measured / budget, both from the same rounds (<= 1: within budget)
    within: bool  # within budget, allowing the measured noise

    @property
    def error_pct(self) -> float:
        """Prediction error relative to the measurement (%)."""
        return (self.predicted_ratio - self.measured_ratio) / self.measured_ratio * 100


@dataclass
class Verification:
    """The front candidates timed against the budget; `chosen` indexes `rows` (None: none fits)."""

    rows: list[VerifiedCandidate]
    chosen: int | None
    budget_ratio_now: float  # the budget in reference units, from these rounds
    reference_ms: float
    reference_spread: float
    tolerance: float
    budget: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def winner(self) -> VerifiedCandidate | None:
        return None if self.chosen is None else self.rows[self.chosen]

    def to_dict(self) -> dict[str, Any]:
        return {"budget": self.budget, "budget_ratio_now": self.budget_ratio_now,
                "budget_ms_now": self.budget_ratio_now * self.reference_ms, "reference_ms_now": self.reference_ms,
                "reference_spread": self.reference_spread, "tolerance": self.tolerance,
                "chosen": None if self.winner is None else self.winner.key, "met": self.chosen is not None,
                "candidates": [{**asdict(r), "error_pct": r.error_pct} for r in self.rows], "notes": self.notes}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Verification":
        names = VerifiedCandidate.__dataclass_fields__
        rows = [VerifiedCandidate(**{k: v for k, v in r.items() if k in names}) for r in d["candidates"]]
        chosen = next((i for i, r in enumerate(rows) if r.key == d.get("chosen")), None)
        return cls(rows, chosen, float(d["budget_ratio_now"]), float(d["reference_ms_now"]),
                   float(d["reference_spread"]), float(d["tolerance"]), d.get("budget", ""), list(d.get("notes", [])))

    def markdown(self) -> str:
        """The report section: predicted vs measured for each candidate and the verdict."""
        lines = ["## Latency budget verification (measured on this machine)", ""]
        if self.chosen is None:
            lines += [f"**BUDGET NOT MET: no candidate measures within the budget {self.budget}** "
                      f"({self.budget_ratio_now:.3f}x the reference, {self.budget_ratio_now * self.reference_ms:.3f} "
                      "ms now).", ""]
        else:
            w = self.winner
            lines += [f"Returned: the most accurate candidate that measures within the budget {self.budget}: "
                      f"{w.budget_fraction:.3f}x the budget (noise of the budget's figure +-{self.tolerance:.1%}).",
                      ""]
        lines += ["| candidate | top-1 % | predicted (x ref) | measured (x ref) | error | measured ms | "
                  "x budget | within |", "|---|---:|---:|---:|---:|---:|---:|---|"]
        for i, r in enumerate(self.rows):
            mark = " **(returned)**" if i == self.chosen else ""
            lines.append(f"| {i}{mark} | {r.accuracy:.2f} | {r.predicted_ratio:.3f} | {r.measured_ratio:.3f} | "
                         f"{r.error_pct:+.1f}% | {r.measured_ms:.3f} | {r.budget_fraction:.3f} | "
                         f"{'yes' if r.within else 'no'} |")
        lines += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines).rstrip() + "\n"


def front_candidates(best: Any, front: Sequence[Any], budget_ms_table: float, k: int,
                     history: Sequence[Any] = ()) -> list[Any]:
    """Up to `k` candidates to time, the winner first: the Pareto front's points predicted within
    budget, most accurate first (topped up from `history` when the front is short). When there
    are more, the most accurate half is kept and the rest spaced down to the fastest point, so a
    prediction biased low still leaves a candidate that measures within budget."""
    seen, pool = {best.key}, []
    for group in (front, sorted(history, key=lambda c: (-c.accuracy, c.latency_ms, c.key))):
        ranked = sorted(group, key=lambda c: (-c.accuracy, c.latency_ms, c.key)) if group is front else group
        for c in ranked:
            if c.key not in seen and not math.isnan(c.latency_ms) and c.latency_ms <= budget_ms_table:
                seen.add(c.key)
                pool.append(c)
    k = max(1, k)
    if len(pool) < k:
        return [best, *pool]
    head = pool[:k // 2]
    rest = pool[k // 2:]
    n = k - 1 - len(head)
    picks = dict.fromkeys(round((i + 1) * (len(rest) - 1) / n) for i in range(n)) if n > 0 else {}
    return [best, *head, *(rest[i] for i in picks)]


def verify_candidates(candidates: Sequence[Any], latency_model: Any, resolved: ResolvedBudget, timer: Timer,
                      tolerance: float | None = None) -> Verification:
    """Times `candidates` (with `.arch`, `.key`, `.accuracy`; best first) interleaved with the
    reference and, for a relative budget, the budget model; picks the most accurate one that
    measures within budget: strictly if any does, else within `tolerance` (default: the measured
    spread of the budget's figure: the budget model's per-round ratio, or the reference's time)."""
    specs: dict[str, ModelSpec] = {f"cand{i}": c.arch for i, c in enumerate(candidates)}
    b = resolved.budget
    if b.relative:
        specs["budget"] = b.model
    times = timer(specs)
    budget_ratio = b.factor * times.ratio["budget"] if b.relative else b.ms / times.reference_ms
    if tolerance is None:  # the noise of the budget's own figure
        ref_noise = times.reference_timing_noise
        tol = times.ratio_spread.get("budget", ref_noise) if b.relative else ref_noise
    else:
        tol = tolerance
    predicted = latency_model.predict_ratio([c.arch for c in candidates])
    rows = []
    for i, c in enumerate(candidates):
        ratio = float(times.ratio[f"cand{i}"])
        frac = ratio / budget_ratio
        rows.append(VerifiedCandidate(c.key, float(c.accuracy), float(predicted[i]), ratio,
                                      float(times.ms[f"cand{i}"]), frac, frac <= 1.0 + tol))
    strict = [i for i, r in enumerate(rows) if r.budget_fraction <= 1.0]
    loose = [i for i, r in enumerate(rows) if r.within]
    pick = strict or loose
    chosen = max(pick, key=lambda i: (rows[i].accuracy, -i)) if pick else None
    # The reference's raw ms spread mixes its pairings with small and large candidates (cache and clock
    # effects the per-call ratios cancel), so it is reported as the machine's drift, not as the noise.
    notes = ["all figures from the same interleaved rounds: the reference network ran "
             f"{times.reference_ms:.3f} ms (raw times spread {times.reference_spread:.1%} across the pairings, "
             "which the call-by-call ratios cancel); "
             + (f"{b.model} measured {times.ratio['budget']:.3f}x the reference" if b.relative else
                f"the {b.ms:g} ms budget is {budget_ratio:.3f}x the reference now")]
    if chosen is not None and not strict:
        notes.append(f"no candidate measured strictly under budget; returned one within the measured noise "
                     f"({tol:.1%})")
    return Verification(rows, chosen, budget_ratio, times.reference_ms, times.reference_spread, tol, str(b), notes)


# ---------------------------------------------------------------------------- the real timer
@dataclass
class OnnxTimer:
    """`Timer` on this machine: onnxruntime, batch 1, fixed threads, pinned to one CPU; each model
    timed call by call alternated with the table's reference network (`measure_paired`)."""

    resolution: int
    threads: int = 1
    rounds: int = 5
    num_classes: int = 1000

    def __call__(self, models: Mapping[str, ModelSpec]) -> RatioTimes:
        import torch

        from autovit.bench import resolve_model
        from autovit.latency.measure import MeasureConfig, calibrate_runs, measure_paired, time_runner, timing_process
        from autovit.latency.profile import reference_runner
        from autovit.model import build_model

        cfg = MeasureConfig(threads=self.threads, rounds=self.rounds)
        size = (1, 3, self.resolution, self.resolution)
        runners = {}
        for name, spec in models.items():
            torch.manual_seed(0)
            module = (build_model(spec.replace(resolution=self.resolution), self.num_classes).eval()
                      if isinstance(spec, Arch) else resolve_model(spec, self.num_classes, self.resolution).module)
            runners[name] = cfg.runner(module, size)
        reference = reference_runner(cfg, self.resolution)
        with timing_process():
            if runners:
                times = measure_paired(runners, reference, self.rounds)
                ratio = {n: float(np.median(times.ratios(n))) for n in runners}
                ms = {n: float(np.median(times.ms[n])) for n in runners}
                spread = {n: _relative_iqr(times.ratios(n)) for n in runners}
                refs = np.concatenate([times.ref_ms[n] for n in runners])  # per-round medians
                noise = float(np.median([_relative_iqr(times.ref_ms[n]) for n in runners]))
            else:
                n, _ = calibrate_runs(reference)
                refs = np.asarray([time_runner(reference, n) for _ in range(max(self.rounds, 5))])
                ratio, ms, spread, noise = {}, {}, {}, None
        return RatioTimes(ratio, ms, float(np.median(refs)), _relative_iqr(refs), spread, noise)


def _relative_iqr(values: Any) -> float:
    q1, q3 = np.percentile(values, [25, 75])
    return float((q3 - q1) / np.median(values))


# ---------------------------------------------------------------------------- a search run's budget
BUDGET_FILE = "budget.json"


def prepare_budget(budget: LatencyBudget, latency_model: Any, space: Any, out: Any, resume: bool = False,
                   timer: Timer | None = None) -> ResolvedBudget:
    """Resolves `budget` for a search into `out` (reusing the stored one when resuming, so the run's
    budget does not move), refuses an infeasible one, and writes `out/budget.json`."""
    from pathlib import Path

    from autovit.io_utils import save_json

    if latency_model is None:
        raise AutovitError("a latency budget needs a latency table", hint="pass --lut TABLE.json")
    path = Path(out) / BUDGET_FILE
    if resume and path.is_file():
        import json

        stored = json.loads(path.read_text())
        resolved = ResolvedBudget.from_dict(stored["resolved"])
        if resolved.budget != budget:
            raise AutovitError(f"{out} was searched with the latency budget '{resolved.budget}', not '{budget}'",
                               hint="resume with the same --latency-budget, or search into another --out")
        return resolved
    resolved = resolve_budget(budget, latency_model.reference_ms, timer)
    fastest = check_feasible(resolved, latency_model, space)
    save_json(path, {"resolved": resolved.to_dict(), "fastest_predicted_ratio": fastest})
    return resolved


def verify_search(result: Any, latency_model: Any, resolved: ResolvedBudget, timer: Timer,
                  k: int = 6) -> Verification:
    """Verifies a finished search (`SearchResult`): times the winner and the next front candidates
    and makes the most accurate one that measures within budget `result.best`."""
    cands = front_candidates(result.best, result.pareto_latency, resolved.ms_table, k, result.history)
    verification = verify_candidates(cands, latency_model, resolved, timer)
    if verification.chosen is not None:
        result.best = cands[verification.chosen]
        if verification.chosen:
            verification.notes.append(f"the predicted winner measured {verification.rows[0].budget_fraction:.3f}x "
                                      f"the budget; returned front candidate {verification.chosen} instead")
    return verification


def finish_verification(out: Any, resolved: ResolvedBudget, verification: Verification) -> dict[str, Any]:
    """Adds the verification to `out/budget.json` and `out/report.md`; returns budget.json's body."""
    import json
    from pathlib import Path

    from autovit.io_utils import atomic_write_text, save_json

    out = Path(out)
    path = out / BUDGET_FILE
    body = json.loads(path.read_text()) if path.is_file() else {"resolved": resolved.to_dict()}
    body["verification"] = verification.to_dict()
    save_json(path, body)
    best = out / "best.json"
    if best.is_file():
        save_json(best, {**json.loads(best.read_text()), "latency_budget": body})
    report = out / "report.md"
    if report.is_file():
        text = report.read_text().rstrip() + "\n\n"
        atomic_write_text(report, text + f"Latency budget: {resolved.describe()}.\n\n" + verification.markdown())
    return body


# ---------------------------------------------------------------------------- latency validation
def validation_groups(latency_model: Any, space: Any, extremes: bool = True,
                      budget: "LatencyBudget | str | None" = None, timer: Timer | None = None,
                      near: int = 4) -> dict[str, list[Arch]]:
    """Subnets the latency validation times beside the random ones, since search winners live
    there: the space's corners and (given a budget) subnets predicted just under it."""
    from autovit.latency.validate import extreme_subnets, near_budget_subnets

    groups: dict[str, list[Arch]] = {}
    if extremes:
        groups["extremes"] = extreme_subnets(space)
    if budget is not None:
        spec = LatencyBudget.parse(budget)
        if timer is None:
            fp = latency_model.fingerprint or {}
            timer = OnnxTimer(latency_model.table.resolution, int(fp.get("threads", 1)),
                              num_classes=latency_model.table.num_classes)
        resolved = resolve_budget(spec, latency_model.reference_ms, timer)
        groups["near_budget"] = near_budget_subnets(latency_model, space, resolved.ratio, near)
    return groups


# ---------------------------------------------------------------------------- Python API
@dataclass
class BudgetedSearch:
    """A search under a latency budget: the result (its `best` verified when timed), the budget in
    every unit, and the verification (None without a timer)."""

    result: Any
    budget: ResolvedBudget
    verification: Verification | None


def search_within_budget(space: Any, accuracy_fn: Callable[[Arch], float], latency_model: Any, config: Any,
                         budget: "LatencyBudget | str", timer: Timer | None = None, verify: int = 6,
                         out_dir: Any = None, resume: bool = False) -> BudgetedSearch:
    """`autovit.search.search` under `budget` ('12ms', 'mobilevit_xxs', '0.8x:mobilevit_xxs' or a
    `LatencyBudget`): resolves it (timing with `timer`, e.g. `OnnxTimer(resolution)`), refuses an
    infeasible one, searches, then verifies the front with `timer` (skipped without one)."""
    from autovit.search.evolution import search

    spec = LatencyBudget.parse(budget)
    if out_dir is not None:
        resolved = prepare_budget(spec, latency_model, space, out_dir, resume, timer)
    else:
        resolved = resolve_budget(spec, latency_model.reference_ms, timer)
        check_feasible(resolved, latency_model, space)
    result = search(space, accuracy_fn, latency_model, config.replace(latency_budget_ms=resolved.ms_table),
                    out_dir, resume)
    verification = None
    if timer is not None and result.best is not None:
        verification = verify_search(result, latency_model, resolved, timer, verify)
    return BudgetedSearch(result, resolved, verification)


# ---------------------------------------------------------------------------- the final benchmark
def bench_contract(bench: Mapping[str, Any], budget: Mapping[str, Any], model_name: str) -> dict[str, Any] | None:
    """The contract as the final benchmark (`autovit bench` JSON) shows it: the searched model
    `model_name` against its budget (per-round ratio to the budget model, or ms for an absolute
    budget), with the noise of that figure."""
    rows = {r["name"]: r for r in bench.get("models", [])}
    mine = rows.get(model_name)
    spec = budget.get("spec") or {}
    if mine is None or mine.get("median_ms") is None:
        return None
    if spec.get("model"):
        ref = rows.get(spec["model"])
        if ref is None or ref.get("median_ms") is None:  # not in the benchmark, or skipped there
            return None
        per_round = np.asarray(mine["rounds_ms"]) / np.asarray(ref["rounds_ms"]) / float(spec.get("factor", 1.0))
    else:
        per_round = np.asarray(mine["rounds_ms"]) / float(spec["ms"])
    value = float(np.median(per_round))
    q1, q3 = np.percentile(per_round, [25, 75])
    noise = float((q3 - q1) / value) if value else 0.0
    return {"fraction": value, "noise": noise, "met": value <= 1.0, "met_within_noise": value <= 1.0 + noise,
            "budget": budget.get("budget"), "rounds": len(per_round)}


def measure_contract(model: ModelSpec, budget: "LatencyBudget | str", timer: Timer) -> dict[str, Any]:
    """The contract measured directly: the returned `model` (an arch JSON path, name or Arch) timed
    call by call with the reference network and, for a model budget, the budget model, in the same
    rounds; `fraction` is its latency over the budget (<= 1: met), `noise` the spread of that figure."""
    spec = LatencyBudget.parse(budget)
    models = {"returned": model, **({"budget": spec.model} if spec.relative else {})}
    times = timer(models)
    if spec.relative:
        fraction = times.ratio["returned"] / (spec.factor * times.ratio["budget"])
        noise = math.hypot(times.ratio_spread.get("returned", 0.0), times.ratio_spread.get("budget", 0.0))
    else:
        fraction = times.ms["returned"] / spec.ms
        noise = times.reference_timing_noise
    return {"fraction": fraction, "noise": noise, "met": fraction <= 1.0, "met_within_noise": fraction <= 1.0 + noise,
            "budget": str(spec), "reference_spread": times.reference_spread, "returned_ratio": times.ratio["returned"],
            "budget_model_ratio": times.ratio.get("budget"), "returned_ms": times.ms["returned"],
            "method": "call by call alternated with the reference network (autovit.search.budget.OnnxTimer)"}


def contract_line(contract: Mapping[str, Any] | None) -> str:
    """One line for the run report."""
    if contract is None:
        return "Latency budget contract: not measured (no final benchmark of the searched model and its budget)."
    verdict = ("met" if contract["met"] else "met within the measured noise" if contract["met_within_noise"]
               else "**NOT MET**")
    return (f"Latency budget contract: {verdict} -- the searched model measured {contract['fraction']:.3f}"
            f"x its budget ({contract['budget']}) in the final benchmark ("
            + ("timed call by call with the reference network" if "method" in contract else "interleaved rounds")
            + f", noise +-{contract['noise']:.1%}).")
