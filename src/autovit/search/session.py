"""One search run of a trained supernet, as a library call: `run_search(SearchRunConfig(...))`.

Loads the supernet checkpoint and the latency table, resolves the latency budget (timed here when it
names a model), runs the coarse and the fine stage (resumable from `out/state.json`), verifies the
front on this machine and writes every output file (docs/search.md). `autovit search` builds the
config from its options and prints the returned `SearchRunResult`; `autovit run` calls it directly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping

from autovit.errors import AutovitError
from autovit.search.budget import LatencyBudget, ResolvedBudget, Verification
from autovit.search.config import SearchConfig, parse_count, parse_latency_list

ProgressFn = Callable[[str, int, int], None]

# SearchRunConfig fields that are SearchConfig settings under the same name.
_ALGORITHM = ("objective", "cost_lambda", "cost_metric", "min_accuracy", "coarse_samples", "coarse_top_k",
              "coarse_rank", "population", "generations", "parents", "p_depth", "p_block", "p_crossover", "seed")


@dataclass(frozen=True)
class SearchRunConfig:
    """Everything one search run needs; the algorithm's settings default to `SearchConfig`'s (paper
    section 4.1). Budgets are typed: `latency_budget` a `LatencyBudget` (a time
    or a model timed here; text such as '12ms' or 'mobilevit_xxs' is parsed on construction),
    `params_budget`/`macs_budget` plain counts ('2M' is parsed), `budgets_ms` a sweep in ms."""

    supernet: Path
    out: Path = Path("runs/search")
    lut: Path | None = None
    latency_budget: LatencyBudget | None = None
    params_budget: float | None = None
    macs_budget: float | None = None
    budgets_ms: tuple[float, ...] = ()
    objective: str = SearchConfig.objective
    cost_lambda: float = SearchConfig.cost_lambda
    cost_metric: str = SearchConfig.cost_metric
    min_accuracy: float | None = SearchConfig.min_accuracy
    space: str | None = None               # expected space, checked against the checkpoint
    dataset: str | None = None             # default: the supernet's training data
    data_dir: str | None = None
    val_images: int | None = None
    calib_images: int | None = None        # default: the training config's
    batch_size: int = 256
    population: int = SearchConfig.population
    generations: int = SearchConfig.generations
    parents: int = SearchConfig.parents
    p_depth: float = SearchConfig.p_depth
    p_block: float = SearchConfig.p_block
    p_crossover: float = SearchConfig.p_crossover
    coarse_samples: int = SearchConfig.coarse_samples
    coarse_top_k: int = SearchConfig.coarse_top_k
    coarse_rank: str = SearchConfig.coarse_rank
    seed: int = SearchConfig.seed
    resume: bool = False
    measure: bool = True                   # time the budget and the winner here (False: trust the table)
    verify_candidates: int = 6
    compare: bool = False                  # also run random-search and FLOPs-constrained baselines
    impact: bool = True                    # Eq. 7 latency impact of the winner's modules
    baselines: Path | None = None          # `autovit bench --json` output to plot
    force_table: bool = False
    device: str = "auto"
    eval_dtype: str = "float32"            # accuracy evaluation under autocast: float32 | bfloat16 | float16

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        for name in ("supernet", "out", "lut", "baselines"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                put(name, Path(value))
        if self.latency_budget is not None:
            put("latency_budget", LatencyBudget.parse(self.latency_budget))
        if isinstance(self.params_budget, str):
            put("params_budget", parse_count(self.params_budget))
        if isinstance(self.macs_budget, str):
            put("macs_budget", parse_count(self.macs_budget, "MACs budget"))
        if isinstance(self.budgets_ms, str):
            put("budgets_ms", parse_latency_list(self.budgets_ms))
        from autovit.supernet.evaluate import EVAL_DTYPES

        if self.eval_dtype not in EVAL_DTYPES:
            raise AutovitError(f"unknown evaluation dtype '{self.eval_dtype}'",
                               hint=f"use one of {', '.join(EVAL_DTYPES)} (bfloat16: ~1.7x faster on CPUs with "
                                    "native bf16, top-1 within ~0.2 points)")
        self.search_config()  # bad settings fail before anything is loaded

    def replace(self, **changes: Any) -> "SearchRunConfig":
        return dataclasses.replace(self, **changes)

    def search_config(self, num_classes: int = 1000, latency_budget_ms: float | None = None) -> SearchConfig:
        """The algorithm's settings (`SearchConfig`); the latency budget in the table's ms once resolved."""
        if latency_budget_ms is None and self.latency_budget is not None:
            latency_budget_ms = self.latency_budget.ms  # None for a model budget: resolved when timed
        return SearchConfig(latency_budget_ms=latency_budget_ms, params_budget=self.params_budget,
                            macs_budget=self.macs_budget, budgets_ms=self.budgets_ms, num_classes=num_classes,
                            **{name: getattr(self, name) for name in _ALGORITHM})


# `autovit search` flags spelled otherwise than the SearchRunConfig field they set.
OPTION_FIELDS = {"lambda": "cost_lambda", "budgets": "budgets_ms"}
_WITH_UNITS = ("latency_budget", "params_budget", "macs_budget", "budgets_ms")
_KINDS = {"int": (int, "integer"), "float": ((int, float), "float"), "bool": (bool, "boolean"),
          "str": (str, "string"), "Path": (str, "path")}


def search_option_names() -> list[str]:
    """The settings a config file may give, spelled as `autovit search` flags (coarse_samples, lambda)."""
    fields_to_flags = {v: k for k, v in OPTION_FIELDS.items()}
    return sorted(fields_to_flags.get(f.name, f.name) for f in fields(SearchRunConfig))


def search_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Settings spelled as `autovit search` flags (e.g. from a pipeline config's `search.args`) ->
    SearchRunConfig fields, each value checked to be of its field's type."""
    types = {f.name: str(f.type) for f in fields(SearchRunConfig)}
    out: dict[str, Any] = {}
    for key, value in options.items():
        name = OPTION_FIELDS.get(str(key).replace("-", "_"), str(key).replace("-", "_"))
        if name not in types:
            raise AutovitError(f"unknown search option '{key}'", hint="see `autovit search --help`")
        kind, label = next((v for k, v in _KINDS.items() if types[name].startswith(k)), (object, "value"))
        if name in _WITH_UNITS and isinstance(value, str):
            pass  # '300M', '12ms': parsed by SearchRunConfig
        elif value is not None or "None" not in types[name]:
            if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
                raise AutovitError(f"Invalid value for '--{str(key).replace('_', '-')}': {value!r} is not a "
                                   f"valid {label}")
        out[name] = value
    return out


@dataclass
class SearchRunResult:
    """What a finished run returns (rank 0; other torchrun ranks get `summary` None)."""

    out: Path
    summary: dict[str, Any] | None
    result: Any = None                       # the evolution's `SearchResult`
    budget: ResolvedBudget | None = None
    verification: Verification | None = None
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def within_budget(self) -> bool:
        """False when the front was timed and no candidate measured within the latency budget."""
        return self.verification is None or self.verification.chosen is not None

    def check_budget(self) -> None:
        """Raises the one clear error of a run whose front all measures over the latency budget."""
        if not self.within_budget:
            raise AutovitError(f"no candidate of the search measures within the latency budget {self.budget.budget} "
                               f"on this machine (see {self.out / 'report.md'})",
                               hint="raise the budget, pass --verify-candidates N to time more of the front, or "
                                    "re-profile the latency table on a quiet machine (`autovit latency profile`)")


def run_search(cfg: SearchRunConfig, progress: ProgressFn | None = None) -> SearchRunResult:
    """Runs (or with `cfg.resume`, continues) the latency-aware coarse-to-fine search (paper
    Algorithm 1) in `cfg.out`, which it holds for the run; returns the result and writes best.json,
    pareto.json/csv, history.csv, search.png and report.md there."""
    from autovit.run_folder import open_run_folder

    with open_run_folder(cfg.out, "search"):
        return _run(cfg, progress or (lambda *_: None))


def _run(cfg: SearchRunConfig, progress: ProgressFn) -> SearchRunResult:
    from autovit.io_utils import ensure_writable_dir
    from autovit.search.budget import OnnxTimer, prepare_budget, verify_search
    from autovit.search.coarse import coarse_search
    from autovit.search.evolution import EvolutionarySearch
    from autovit.search.outputs import load_baselines
    from autovit.search.runner import load_latency_model, search_inputs, validation_evaluator
    from autovit.train.checkpoint import load_supernet_checkpoint
    from autovit.train.distributed import init_distributed

    out = cfg.out
    ensure_writable_dir(out)
    if (cfg.latency_budget or cfg.budgets_ms) and cfg.lut is None:
        raise AutovitError("a latency budget needs a latency table", hint="pass --lut TABLE.json "
                                                                         "(build one with `autovit latency profile`)")
    if not cfg.resume and (out / "state.json").is_file():
        raise AutovitError(f"{out} already holds a search", hint="pass --resume to continue it, or another --out")
    base = load_baselines(cfg.baselines) if cfg.baselines else []
    rank = init_distributed(cfg.device).rank
    loaded = load_supernet_checkpoint(cfg.supernet, cfg.space)
    config = cfg.search_config(loaded.num_classes)
    latency_model = load_latency_model(cfg.lut, loaded.space, cfg.force_table) if cfg.lut else None
    timer = budget_timer = None
    if cfg.measure and not cfg.force_table and latency_model is not None:
        # the budget in the table's units (its head size); the candidates as they ship
        res, threads = latency_model.table.resolution, int(latency_model.fingerprint.get("threads", 1))
        budget_timer = OnnxTimer(res, threads, num_classes=latency_model.table.num_classes)
        timer = OnnxTimer(res, threads, num_classes=loaded.num_classes)
    resolved = None
    if cfg.latency_budget is not None:
        resolved = prepare_budget(cfg.latency_budget, latency_model, loaded.space, out, cfg.resume, budget_timer)
        config = config.replace(latency_budget_ms=resolved.ms_table)
    coarse = None if cfg.resume else coarse_search(loaded.space, config, latency_model, progress)
    evaluator, data_info = validation_evaluator(loaded, cfg.dataset, cfg.data_dir, cfg.val_images, cfg.calib_images,
                                                cfg.batch_size, cfg.device, cfg.seed, cfg.eval_dtype)
    inputs = search_inputs(loaded, cfg.lut, data=cfg.dataset, data_dir=cfg.data_dir, val_images=cfg.val_images,
                           calib_images=cfg.calib_images, eval_dtype=cfg.eval_dtype)
    engine = EvolutionarySearch(loaded.space, evaluator, latency_model, config, out, progress=progress,
                                inputs=inputs)
    result = engine.run(resume=cfg.resume, coarse=coarse)
    # Baselines evaluate like the search (split across ranks), so every rank runs them.
    comparison_runs = _comparison_runs(result, evaluator, latency_model, loaded.space) if cfg.compare else {}
    if rank != 0:
        return SearchRunResult(out, None, result, resolved)
    verification = None
    if resolved is not None and timer is not None and result.best is not None:
        verification = verify_search(result, latency_model, resolved, timer, cfg.verify_candidates)
    run = _write_outputs(cfg, result, engine.latency_of, evaluator, latency_model, loaded.space,
                         comparison_runs, base, data_info, verification)
    run.budget = resolved
    if verification is not None:
        from autovit.search.budget import finish_verification

        run.summary["latency_budget"] = finish_verification(out, resolved, verification)
    return run


def _comparison_runs(result: Any, evaluator: Any, latency_model: Any, space: Any) -> dict[str, Any]:
    """Random search (same evaluations and budgets) and FLOPs-constrained search (MACs <= the winner's)."""
    from autovit.search.baselines import flops_constrained_search, random_search

    if result.best is None:
        return {}
    return {"random search": random_search(space, evaluator, latency_model, result.config, result.evaluations),
            "FLOPs-constrained": flops_constrained_search(space, evaluator, latency_model, result.config,
                                                          result.best.macs)}


def _write_outputs(cfg: SearchRunConfig, result: Any, latency_of: Callable[..., Any], evaluator: Any,
                   latency_model: Any, space: Any, comparison_runs: Mapping[str, Any], base: list,
                   data_info: dict[str, Any], verification: Verification | None) -> SearchRunResult:
    """Impact table, measured latency and every output file of a finished search (rank 0)."""
    from autovit.search.impact import latency_impact
    from autovit.search.outputs import write_outputs
    from autovit.search.runner import finite, measured_latencies

    if result.best is None:
        raise AutovitError("the search evaluated no candidate", hint="raise --generations or --population")
    out, best = cfg.out, result.best
    rows = latency_impact(best.arch, space, evaluator, latency_of) if cfg.impact else None
    extra = {name: r.best.arch for name, r in comparison_runs.items() if r.best is not None}
    measured: dict[str, float] = {}
    if cfg.measure and (verification is None or extra or result.best_per_budget):
        table_classes = getattr(getattr(latency_model, "table", None), "num_classes", 1000)
        measured = measured_latencies(result, extra, num_classes=table_classes)
    if verification is not None:  # the winner's time from the verification rounds
        measured.update({r.key: r.measured_ms for r in verification.rows})
    comparison = [{"name": "latency-aware search (ours)", "accuracy": best.accuracy,
                   "latency_ms": finite(best.latency_ms), "measured_ms": measured.get(best.key),
                   "params": best.params, "macs": best.macs, "evaluations": result.evaluations}]
    for name, r in comparison_runs.items():
        if r.best is not None:
            comparison.append({"name": name, "accuracy": r.best.accuracy, "latency_ms": finite(r.best.latency_ms),
                               "measured_ms": measured.get(name), "params": r.best.params, "macs": r.best.macs,
                               "evaluations": r.evaluations})
    notes = [f"accuracy: top-1 on {data_info['val_images']} held-out validation images of {data_info['dataset']} "
             f"({data_info['resolution']}px), inherited weights, BN recalibrated on {data_info['calib_images']} "
             "training images", f"supernet: {cfg.supernet}", f"latency table: {cfg.lut or 'none'}"]
    if cfg.measure:
        notes.append("measured latency: this machine, onnxruntime, batch 1, 1 thread (autovit bench)")
    files = write_outputs(out, result, result.cloud, measured, rows, base, comparison if comparison_runs else [],
                          {k: v.history for k, v in comparison_runs.items()}, notes,
                          {"data": data_info, "supernet": str(cfg.supernet), "lut": str(cfg.lut) if cfg.lut else None})
    summary = {"out": str(out), "best": files.get("best") and str(files["best"]), "accuracy": best.accuracy,
               "predicted_ms": finite(best.latency_ms), "measured_ms": measured.get(best.key),
               "params": best.params, "macs": best.macs, "key": best.key,
               "evaluations": result.evaluations, "timing": result.timing, "comparison": comparison,
               "best_per_budget": {f"{k:g}": None if v is None else {"key": v.key, "accuracy": v.accuracy,
                                                                     "predicted_ms": v.latency_ms, "params": v.params}
                                   for k, v in result.best_per_budget.items()},
               "files": {k: str(v) for k, v in files.items()}}
    return SearchRunResult(out, summary, result, None, verification, {k: Path(v) for k, v in files.items()})
