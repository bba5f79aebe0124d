"""`autovit run CONFIG.yaml`: latency table -> supernet -> search -> export -> report.

Each stage runs the same code as its CLI command (so a pipeline run and hand-run commands give the
same files), lives in its own folder under the run directory, and is skipped when its outputs exist
for the same configuration. Stages that are long (supernet training, search) also resume inside
themselves from their own checkpoints, so a crash loses at most one checkpoint interval.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import yaml

from autovit.errors import AutovitError
from autovit.io_utils import atomic_write_text, save_json
from autovit.pipeline.config import PipelineConfig
from autovit.pipeline.stages import Stage, run_stages
from autovit.space import SearchSpace


def invoke(args: list[str]) -> None:
    """Runs one `autovit` CLI command in this process; raises on a non-zero exit.

    In non-standalone mode click returns exit codes instead of raising (130 = interrupted)."""
    from autovit.cli import app

    import torch

    what = f"`autovit {' '.join(map(str, args[:2]))}`"
    # CLI commands assume a process of their own: the latency commands pin it to one CPU and set
    # thread counts. Restore both, or the next stage (training) runs 2 threads on 1 CPU, ~10x slower.
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    threads = torch.get_num_threads()
    exits, errors = cli_exceptions()
    try:
        code = app(args=[str(a) for a in args], standalone_mode=False)
    except exits as exc:
        code = exc.exit_code
    except errors as exc:
        raise AutovitError(f"{what}: {getattr(exc, 'format_message', exc.__str__)()}") from None
    finally:
        if affinity is not None:
            os.sched_setaffinity(0, affinity)
        torch.set_num_threads(threads)
    if code == 130:
        raise KeyboardInterrupt(f"{what} was interrupted; rerun `autovit run` to resume")
    if isinstance(code, int) and code != 0:
        raise AutovitError(f"{what} exited with code {code}")


def cli_exceptions() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(exit, usage error) exception classes a command may raise: typer >= 0.22 vendors its own click,
    older typer raises click's."""
    import typer

    exits: list[type] = [typer.Exit]
    errors: list[type] = [getattr(typer, "TyperException", typer.BadParameter)]
    try:
        import click

        exits.append(click.exceptions.Exit)
        errors.append(click.ClickException)
    except ImportError:
        pass
    return tuple(exits), tuple(errors)


def _flags(options: dict[str, Any]) -> list[str]:
    """{'population': 20, 'compare': True} -> ['--population', '20', '--compare']."""
    out: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            out.append(flag)
        elif value is False:
            out.append("--no-" + key.replace("_", "-"))
        elif value is not None:
            out += [flag, str(value)]
    return out


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

    def __init__(self, cfg: PipelineConfig, log: Callable[[str], None] = print) -> None:
        self.cfg = cfg
        self.root = Path(cfg.out)
        self.log = log
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
        from autovit.search.runner import load_supernet_checkpoint

        return load_supernet_checkpoint(self.supernet_ckpt).num_classes

    def _latency(self, d: Path) -> dict[str, Any]:
        lat = self.cfg.latency
        if lat.table:
            shutil.copyfile(lat.table, d / "table.json")
            return {"table": str(lat.table), "profiled": False}
        invoke(["latency", "profile", "--space", self.space_file, "--out", d / "table.json",
                "--threads", lat.threads, "--rounds", lat.rounds, "--fit-subnets", lat.fit_subnets,
                "--blocks", lat.measure, "--seed", self.cfg.seed, *(["--force-unstable"] if lat.force_unstable else []),
                *(["--num-classes", lat.num_classes] if lat.num_classes else [])])
        return {"table": str(d / "table.json"), "profiled": True}

    def _validate(self, d: Path) -> dict[str, Any]:
        invoke(["latency", "validate", "--lut", self.table, "--samples", self.cfg.latency.validate_samples,
                "--rounds", self.cfg.latency.rounds, "--plot", d / "validation.png", "--out", d / "validation.json",
                *(["--latency-budget", self.cfg.search.latency_budget] if self.budget else [])])
        return {"validation": str(d / "validation.json")}

    def _supernet(self, d: Path) -> dict[str, Any]:
        if self.cfg.supernet.checkpoint:
            if not self.supernet_ckpt.is_file():
                raise AutovitError(f"supernet checkpoint not found: {self.supernet_ckpt}",
                                   hint="fix supernet.checkpoint in the config, or remove it to train one")
            return {"checkpoint": str(self.supernet_ckpt), "trained": False}
        train = {"seed": self.cfg.seed, "resolution": self.resolution, **dict(self.cfg.supernet.train)}
        cfg_file = d / "train.yaml"
        atomic_write_text(cfg_file, yaml.safe_dump(train, sort_keys=False))
        args = ["supernet", "train", "--space", self.space_file, "--config", cfg_file, "--out", d]
        if (d / "checkpoints" / "last.pt").is_file():
            args += ["--resume"]
        invoke(args)
        return {"checkpoint": str(d / "supernet.pt"), "trained": True}

    def _bench_args(self) -> list[str]:
        return ["--resolution", self.resolution, "--threads", self.cfg.latency.threads,
                "--rounds", self.cfg.latency.bench_rounds,
                "--num-classes", self._num_classes()]

    def _baselines(self, d: Path) -> dict[str, Any]:
        if not self._baseline_names():
            save_json(d / "baselines.json", {"models": []})
            return {"models": []}
        invoke(["bench", *self._baseline_names(), *self._bench_args(), "--out", d / "baselines.json"])
        return {"models": self._baseline_names()}

    def _search(self, d: Path) -> dict[str, Any]:
        s = self.cfg.search
        # The budget as the user wrote it: `autovit search` times it against the table's reference.
        args = ["search", "--supernet", self.supernet_ckpt, "--lut", self.table, "--seed", self.cfg.seed, "--out", d]
        if self.budget:
            args += ["--latency-budget", s.latency_budget]
        if self._baseline_names():
            args += ["--baselines", self.root / "baselines" / "baselines.json"]
        if s.params_budget:
            args += ["--params-budget", s.params_budget]
        if s.budgets:
            args += ["--budgets", s.budgets]
        if self.cfg.latency.force_table:
            args += ["--force-table"]
        args += _flags(dict(s.args))
        if (d / "state.json").is_file():
            args.append("--resume")
        invoke(args)
        budget = _read_json(d / "budget.json") if (d / "budget.json").is_file() else None
        return {"best": str(d / "best.json"), "latency_budget": budget}

    def _export(self, d: Path) -> dict[str, Any]:
        from autovit.pipeline.report import evaluate_exported

        args = ["export", "--supernet", self.supernet_ckpt, "--arch", self.root / "search" / "best.json",
                "--out", d / "model", "--formats", ",".join(self.cfg.export.formats)]
        if self.cfg.export.finetune_steps:
            args += ["--finetune-steps", self.cfg.export.finetune_steps]
        invoke(args)
        metrics = evaluate_exported(self, d / "model")
        save_json(d / "export.json", metrics)
        return metrics

    def _final_bench(self, d: Path) -> dict[str, Any]:
        arch = self.root / "export" / "model" / "arch.json"
        names = self._baseline_names()
        first = self.budget.model if self.budget and self.budget.model else (names[0] if names else None)
        reference = ["--reference", first] if first else []
        invoke(["bench", arch, *names, *self._bench_args(), *reference, "--out", d / "bench.json"])
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
