"""`PipelineConfig`: one YAML file describing a whole `autovit run` (see configs/*.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping


from autovit.errors import AutovitError


@dataclass(frozen=True)
class LatencySection:
    table: str | None = None          # reuse this table JSON instead of profiling this machine
    threads: int = 1
    rounds: int = 7
    fit_subnets: int = 24
    measure: str = "anchors"          # anchors (measure a few variants per block kind, impute the rest) or all
    validate_samples: int = 50        # 0 skips the validation stage
    bench_rounds: int = 5             # interleaved rounds when timing the baselines and the result
    force_table: bool = False         # search with a table from another device (its ms are that device's)
    force_unstable: bool = False      # write the table even when the machine is too noisy to measure
    num_classes: int | None = None    # classifier size the table is profiled with (default 1000); set it to the
    #                                   dataset's, or predictions carry a 1000-class head the shipped model lacks

    def __post_init__(self) -> None:
        from autovit.latency.imputation import MEASURE_MODES

        if self.measure not in MEASURE_MODES:
            raise AutovitError(f"latency.measure is '{self.measure}'", hint=f"use one of {', '.join(MEASURE_MODES)}")


@dataclass(frozen=True)
class SupernetSection:
    checkpoint: str | None = None     # reuse this trained supernet instead of training one
    train: Mapping[str, Any] = field(default_factory=dict)  # TrainConfig fields (docs/training.md)


@dataclass(frozen=True)
class SearchSection:
    latency_budget: str = "mobilevit_xxs"   # '12ms', 'mobilevit_xxs' or '0.8x:mobilevit_xxs' (docs/search.md)
    params_budget: str | None = None
    budgets: str | None = None              # sweep, e.g. '8ms,10ms,12ms'
    args: Mapping[str, Any] = field(default_factory=dict)  # more `autovit search` flags

    def __post_init__(self) -> None:
        from autovit.search.budget import LatencyBudget

        if self.latency_budget:
            LatencyBudget.parse(self.latency_budget)  # bad spellings fail when the config is read


@dataclass(frozen=True)
class ExportSection:
    formats: tuple[str, ...] = ("safetensors", "torchscript", "onnx")
    finetune_steps: int = 0


@dataclass(frozen=True)
class PipelineConfig:
    """Everything `autovit run` needs; each section feeds one or more stages."""

    name: str
    out: str
    space: str = "xxs"
    resolution: int | None = None      # search/deploy resolution (default: the space's)
    seed: int = 0
    latency: LatencySection = field(default_factory=LatencySection)
    supernet: SupernetSection = field(default_factory=SupernetSection)
    search: SearchSection = field(default_factory=SearchSection)
    export: ExportSection = field(default_factory=ExportSection)
    baselines: tuple[str, ...] = ("mobilevit_xxs", "mobilenetv2_100")

    @classmethod
    def load(cls, path: str | Path) -> "PipelineConfig":
        from autovit.io_utils import read_yaml

        data = read_yaml(path, "pipeline config", "pass a YAML such as configs/quickstart.yaml")
        try:
            return cls.from_dict(data)
        except AutovitError as err:
            raise AutovitError(f"{path}: {err.message}", err.hint) from None

    @classmethod
    def from_dict(cls, data: Any) -> "PipelineConfig":
        if not isinstance(data, Mapping):
            raise AutovitError("a pipeline config must be a mapping")
        sections = {"latency": LatencySection, "supernet": SupernetSection, "search": SearchSection,
                    "export": ExportSection}
        values = _fields(cls, data, "config")
        for key, kind in sections.items():
            values[key] = kind(**_fields(kind, data.get(key) or {}, key))
        for key in ("name", "out"):
            if key not in values:
                raise AutovitError(f"the pipeline config is missing '{key}'")
        if "baselines" in values:
            values["baselines"] = tuple(values["baselines"])
        if "formats" in (data.get("export") or {}):
            values["export"] = ExportSection(**{**_fields(ExportSection, data["export"], "export"),
                                                "formats": tuple(data["export"]["formats"])})
        cfg = cls(**values)
        cfg.check()
        return cfg

    def check(self) -> None:
        """Checks the settings every stage will pass on (training options, search flags) up front,
        so a mistyped key fails now rather than when its stage starts, maybe hours later."""
        from autovit.train.config import TrainConfig

        train = self.supernet.train
        if not isinstance(train, Mapping):
            raise AutovitError("'supernet.train' must be a mapping of TrainConfig fields",
                               hint="see docs/training.md for the fields")
        names = [f.name for f in fields(TrainConfig)]
        for key in train:
            if key not in names:
                raise AutovitError(f"unknown key '{key}' in supernet.train", hint=_did_you_mean(str(key), names))
        try:
            TrainConfig().replace(**{"seed": self.seed, **dict(train)})
        except AutovitError as err:
            raise AutovitError(f"supernet.train: {err.message}", err.hint) from None
        check_search_args(self.search.args)
        if self.latency.force_table and not self.latency.table:
            raise AutovitError("latency.force_table is set but latency.table is not",
                               hint="put the other device's table in latency.table, or drop latency.force_table "
                                    "to profile this machine")

    def to_dict(self) -> dict[str, Any]:
        def conv(obj: Any) -> Any:
            if hasattr(obj, "__dataclass_fields__"):
                return {f.name: conv(getattr(obj, f.name)) for f in fields(obj)}
            if isinstance(obj, (tuple, list)):
                return [conv(v) for v in obj]
            if isinstance(obj, Mapping):
                return {k: conv(v) for k, v in obj.items()}
            return obj

        return conv(self)


# `autovit search` options the pipeline sets itself, and the config key that sets each one.
PIPELINE_SEARCH_OPTIONS = {"supernet": "supernet.checkpoint (or supernet.train)", "lut": "latency.table",
                           "latency_budget": "search.latency_budget", "params_budget": "search.params_budget",
                           "budgets": "search.budgets", "seed": "the top-level seed",
                           "force_table": "latency.force_table", "baselines": "baselines", "out": "out",
                           "resume": "nothing (a rerun resumes by itself)"}


def _did_you_mean(key: str, names: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    known = f"known keys: {', '.join(sorted(names))}"
    return f"did you mean '{close[0]}'? ({known})" if close else known


def check_search_args(args: Any) -> None:
    """`search.args` must be `autovit search` settings (spelled as keys, e.g. coarse_samples) with values
    of their types; the settings the pipeline sets itself are refused with the key to use instead."""
    from autovit.search.session import SearchRunConfig, search_option_names, search_options

    if not isinstance(args, Mapping):
        raise AutovitError("'search.args' must be a mapping of `autovit search` flags",
                           hint="e.g. args: {population: 20, generations: 10}")
    names = search_option_names()
    for key in args:
        key = str(key)
        if key in PIPELINE_SEARCH_OPTIONS:
            raise AutovitError(f"search.args sets '{key}', which the pipeline sets itself",
                               hint=f"set it with {PIPELINE_SEARCH_OPTIONS[key]}")
        if key.replace("-", "_") not in names:
            usable = [n for n in names if n not in PIPELINE_SEARCH_OPTIONS]
            raise AutovitError(f"unknown key '{key}' in search.args (not an `autovit search` option)",
                               hint=_did_you_mean(key, usable))
    try:  # wrong values fail here, as they would when the stage starts
        SearchRunConfig(supernet="-", **search_options(args))
    except AutovitError as err:
        raise AutovitError(f"search.args: {err.message}", err.hint or "see `autovit search --help` for the "
                                                                      "settings and their values") from None


def _fields(cls: type, data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise AutovitError(f"'{where}' must be a mapping")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names - ({"latency", "supernet", "search", "export"} if where == "config" else set()))
    if unknown:
        allowed = sorted(names | ({"latency", "supernet", "search", "export"} if where == "config" else set()))
        raise AutovitError(f"unknown key '{unknown[0]}' in {where}", hint=_did_you_mean(str(unknown[0]), allowed))
    return {k: v for k, v in data.items() if k in names and k not in ("latency", "supernet", "search", "export")}
