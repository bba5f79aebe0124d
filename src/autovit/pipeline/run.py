"""`autovit run CONFIG.yaml`: latency table -> supernet -> search -> export -> report.

Each stage calls the library function its CLI command calls (autovit.api: so a pipeline run and
hand-run commands give the same files), lives in its own folder under the run directory, and is
skipped when its outputs exist for the same configuration. Stages that are long (supernet training, search) also resume inside
themselves from their own checkpoints, so a crash loses at most one checkpoint interval.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

from autovit import api
from autovit.errors import AutovitError
from autovit.io_utils import atomic_write_text, save_json
from autovit.pipeline.config import PipelineConfig
from autovit.pipeline.stages import Stage, run_stages
from autovit.space import SearchSpace


def _file_identity(path: str | None) -> dict[str, Any] | None:
    """A given input file's path, size and mtime: editing or replacing it invalidates its stages."""
    if not path:
        return None
    try:
        st = Path(path).stat()
    except OSError:
        return {"path": str(path)}
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


class Pipeline:
    """The stages of one run folder, built from a `PipelineConfig`."""

    def __init__(self, cfg: PipelineConfig, log: Callable[[str], None] = print, console: Any = None,
                 progress: Callable[[str, int, int], None] | None = None) -> None:
        """`log`: one line per stage event; `console`: a rich Console for the training log (None:
        silent); `progress(phase, done, total)`: progress of the latency and search stages."""
        self.cfg = cfg
        self.root = Path(cfg.out)
        self.log = log
        self.console = console
        self.progress = progress
        base = SearchSpace.load(cfg.space)
        self.space = base.with_resolution(cfg.resolution) if cfg.resolution else base
        self.resolution = self.space.resolution[0]
        self.space_file = self.root / "space.yaml"
        self.check_inputs()

    def check_inputs(self) -> None:
        """The files the config names exist and fit (before any stage runs, not hours later)."""
        lat, ckpt = self.cfg.latency, self.cfg.supernet.checkpoint
        if lat.table:
            if not Path(lat.table).is_file():
                raise AutovitError(f"latency.table not found: {lat.table}",
                                   hint="fix the path, or remove latency.table to profile this machine")
            from autovit.search.runner import load_latency_model

            load_latency_model(lat.table, self.space, lat.force_table)
        if ckpt and not Path(ckpt).is_file():
            raise AutovitError(f"supernet checkpoint not found: {ckpt}",
                               hint="fix supernet.checkpoint in the config, or remove it to train one")

    # ---------------------------------------------------------------- paths
    @property
    def table(self) -> Path:
        return self.root / "latency" / "table.json"

    @property
    def supernet_ckpt(self) -> Path:
        given = self.cfg.supernet.checkpoint
        return Path(given) if given else self.root / "supernet" / "supernet.pt"

    # ---------------------------------------------------------------- stages
    def stages(self) -> list[Stage]:
        """The stages in order, each with the settings that determine it (see docs/pipeline.md)."""
        cfg = self.cfg
        space = self.space.to_dict()
        lat = cfg.latency
        table = {"space": space, "table": _file_identity(lat.table), "threads": lat.threads, "rounds": lat.rounds,
                 "fit_subnets": lat.fit_subnets, "measure": lat.measure, "force_unstable": lat.force_unstable,
                 "num_classes": lat.num_classes, "seed": cfg.seed}
        bench = {"models": self._baseline_names(), "res": self.resolution, "threads": lat.threads,
                 "bench_rounds": lat.bench_rounds}
        out = [Stage("latency", table, self._latency, ("table.json",))]
        if lat.validate_samples and not lat.force_table:
            out.append(Stage("latency_validation", {"samples": lat.validate_samples, "rounds": lat.rounds,
                                                     "budget": cfg.search.latency_budget},
                             self._validate, ("validation.json", "validation.png"), after=("latency",)))
        train = dict(cfg.supernet.train)
        out += [
            Stage("supernet", {"space": space, "train": train, "checkpoint": _file_identity(cfg.supernet.checkpoint),
                               "seed": cfg.seed, "res": self.resolution}, self._supernet, ()),
            # the baselines need only the class count of the supernet's data, not its weights
            Stage("baselines", {**bench, "dataset": train.get("dataset"), "data_dir": train.get("data_dir"),
                                "checkpoint": _file_identity(cfg.supernet.checkpoint)},
                  self._baselines, ("baselines.json",)),
            Stage("search", {"search": cfg.search.__dict__, "seed": cfg.seed, "force_table": lat.force_table},
                  self._search, ("best.json",), after=("latency", "supernet", "baselines")),
            Stage("export", {"export": cfg.export.__dict__}, self._export, ("export.json",),
                  after=("supernet", "search")),
            Stage("final_bench", bench, self._final_bench, ("bench.json",), after=("baselines", "export")),
        ]
        return out

    def run(self) -> Path:
        """Runs every stage (skipping finished ones) and returns the report's path.

        Holds the run folder's lock throughout; a second run on the same folder is refused."""
        from autovit.pipeline.report import write_report
        from autovit.run_folder import adopt, has_marker, open_run_folder

        if self.root.is_dir() and not has_marker(self.root) and any(self.root.iterdir()):
            if not (self.root / "config.json").is_file():
                raise AutovitError(f"{self.root} is not empty and is not an autovit run folder",
                                   hint="point `out:` (or --out) at a new or empty folder, e.g. runs/my-run")
            adopt(self.root, "pipeline")  # a run folder of an autovit version without markers
        with open_run_folder(self.root, "pipeline", self.log):
            save_json(self.root / "config.json", self.cfg.to_dict())
            if not self._space_file_current():
                atomic_write_text(self.space_file, self.space.to_yaml())
            protected = [Path(p) for p in (self.cfg.latency.table, self.cfg.supernet.checkpoint) if p]
            summaries = run_stages(self.root, self.stages(), self.log, protected)
            return write_report(self, summaries)

    def _space_file_current(self) -> bool:
        try:
            return self.space_file.exists() and SearchSpace.from_yaml(self.space_file) == self.space
        except AutovitError:  # damaged: it is ours, rewrite it
            return False

    def _baseline_names(self) -> list[str]:
        names = list(self.cfg.baselines)
        model = self.budget.model if self.budget else None
        if model and model not in names:
            names.insert(0, model)
        return names

    @property
    def budget(self) -> Any:
        """The search's `LatencyBudget` (None: no latency budget), parsed once from the config."""
        from autovit.search.budget import LatencyBudget

        text = self.cfg.search.latency_budget
        return LatencyBudget.parse(text) if text else None

    def _num_classes(self) -> int:
        from autovit.train.checkpoint import load_supernet_checkpoint

        return load_supernet_checkpoint(self.supernet_ckpt).num_classes

    def _progress(self, stage: str) -> Callable[[str, int, int], None] | None:
        """The progress callback of one stage: its phases named after it ('validation export')."""
        progress = self.progress
        if progress is None:
            return None
        return lambda phase, done, total: progress(f"{stage} {phase}", done, total)

    def _warn(self, message: str) -> None:
        self.log(f"warning: {message}")

    def _latency(self, d: Path) -> dict[str, Any]:
        lat = self.cfg.latency
        if lat.table:
            shutil.copyfile(lat.table, d / "table.json")
            return {"table": str(lat.table), "profiled": False}
        api.profile_latency(api.ProfileConfig(out=d / "table.json", space=str(self.space_file), threads=lat.threads,
                                              rounds=lat.rounds, fit_subnets=lat.fit_subnets, blocks=lat.measure,
                                              seed=self.cfg.seed, force_unstable=lat.force_unstable,
                                              **({"num_classes": lat.num_classes} if lat.num_classes else {})),
                            self._progress("latency"), warn=self._warn, note=self.log)
        return {"table": str(d / "table.json"), "profiled": True}

    def _validate(self, d: Path) -> dict[str, Any]:
        lat = self.cfg.latency
        api.validate_latency(api.ValidateConfig(lut=self.table, samples=lat.validate_samples, rounds=lat.rounds,
                                                plot=d / "validation.png", out=d / "validation.json",
                                                latency_budget=self.budget),
                             self._progress("validation"), warn=self._warn, note=self.log)
        return {"validation": str(d / "validation.json")}

    def _supernet(self, d: Path) -> dict[str, Any]:
        from autovit.train.config import TrainConfig

        if self.cfg.supernet.checkpoint:
            if not self.supernet_ckpt.is_file():
                raise AutovitError(f"supernet checkpoint not found: {self.supernet_ckpt}",
                                   hint="fix supernet.checkpoint in the config, or remove it to train one")
            return {"checkpoint": str(self.supernet_ckpt), "trained": False}
        train = TrainConfig.from_dict({"seed": self.cfg.seed, "resolution": self.resolution,
                                       **dict(self.cfg.supernet.train)})
        resume = "auto" if (d / "checkpoints" / "last.pt").is_file() else None
        api.train_supernet(api.TrainSupernetConfig(train, space=str(self.space_file), out=d, resume=resume),
                           self.console)
        return {"checkpoint": str(d / "supernet.pt"), "trained": True}

    def _bench(self, models: list[str], out: Path, reference: str | None = None) -> None:
        lat = self.cfg.latency
        api.run_bench(api.BenchConfig(models=tuple(models), resolution=self.resolution, threads=lat.threads,
                                      rounds=lat.bench_rounds, num_classes=self._num_classes(),
                                      reference=reference, out=out), warn=self._warn)

    def _baselines(self, d: Path) -> dict[str, Any]:
        if not self._baseline_names():
            save_json(d / "baselines.json", {"models": []})
            return {"models": []}
        self._bench(self._baseline_names(), d / "baselines.json")
        return {"models": self._baseline_names()}

    def _search(self, d: Path) -> dict[str, Any]:
        from autovit.search.session import SearchRunConfig, search_options

        s = self.cfg.search
        # The budget as the user wrote it (a LatencyBudget): the search times it against the table's reference.
        cfg = SearchRunConfig(supernet=self.supernet_ckpt, lut=self.table, seed=self.cfg.seed, out=d,
                              latency_budget=self.budget, params_budget=s.params_budget, budgets_ms=s.budgets or (),
                              force_table=self.cfg.latency.force_table, resume=(d / "state.json").is_file(),
                              baselines=(self.root / "baselines" / "baselines.json"
                                         if self._baseline_names() else None),
                              **search_options(s.args))
        api.run_search(cfg, self._progress("search")).check_budget()
        budget = _read_json(d / "budget.json") if (d / "budget.json").is_file() else None
        return {"best": str(d / "best.json"), "latency_budget": budget}

    def _export(self, d: Path) -> dict[str, Any]:
        from autovit.pipeline.report import evaluate_exported

        api.export_model(api.ExportConfig(out=d / "model", supernet=self.supernet_ckpt,
                                          arch=str(self.root / "search" / "best.json"),
                                          formats=tuple(self.cfg.export.formats),
                                          finetune_steps=self.cfg.export.finetune_steps),
                         warn=self._warn, console=self.console)
        metrics = evaluate_exported(self, d / "model")
        save_json(d / "export.json", metrics)
        return metrics

    def _final_bench(self, d: Path) -> dict[str, Any]:
        arch = self.root / "export" / "model" / "arch.json"
        names = self._baseline_names()
        first = self.budget.model if self.budget and self.budget.model else (names[0] if names else None)
        self._bench([str(arch), *names], d / "bench.json", reference=first)
        if self.budget and not self.cfg.latency.force_table and self.cfg.search.args.get("measure", True):
            from autovit.search.budget import OnnxTimer, measure_contract

            timer = OnnxTimer(self.resolution, self.cfg.latency.threads, max(self.cfg.latency.bench_rounds, 5),
                              self._num_classes())
            save_json(d / "contract.json", measure_contract(str(arch), self.budget, timer))
        return {"bench": str(d / "bench.json")}


def run_pipeline(config: str | Path | PipelineConfig, log: Callable[[str], None] = print) -> Path:
    """Runs (or resumes) the pipeline of `config`; returns the report path."""
    cfg = config if isinstance(config, PipelineConfig) else PipelineConfig.load(config)
    return Pipeline(cfg, log).run()
