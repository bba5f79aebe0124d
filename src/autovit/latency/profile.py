"""Building a latency table by in-context measurement, and timing whole subnets.

Every block variant of a space is timed inside a small context network, with and without the
block (`autovit.latency.blocks.context_pair`); the cost is the paired per-round difference,
divided by the number of stacked copies. Every timing is normalised by a fixed reference network
timed in the same round, so the table is stored in reference-ratio units that survive the
10-16% drift of absolute times on shared machines.

Three stability figures, all the reference network's IQR / median, are kept with a table:
`reference.precheck_spread` (back-to-back timings before anything is measured: the machine is
refused here, before minutes of work), `reference.spread` (over all rounds of the block
measurement, drift included) and `model.fit.reference_spread` (over the fitting-subnet timings).
"""

from __future__ import annotations

import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from autovit.arch import Arch
from autovit.errors import AutovitError
from autovit.latency.blocks import BlockSig, context_key, context_pair, space_blocks
from autovit.latency.imputation import DEFAULT_PER_FEATURE, blocks_to_measure, impute_entries
from autovit.latency.lut import LatencyTable, clamp_negative_costs, fingerprint_id
from autovit.latency.measure import MeasureConfig, MeasureLog, RoundTimes, measure_paired, measure_rounds
from autovit.model import build_model
from autovit.space import SearchSpace

# Relative IQR of the reference timings above which a machine is too unstable for a table.
MAX_REFERENCE_SPREAD = 0.4
PRECHECK_ROUNDS = 15  # back-to-back reference timings (~target_ms each) of the stability check
# Below this share of the predicted latency (on the fitting subnets) the fit has dropped the table.
MIN_TABLE_SHARE = 0.05
WITHS_PER_GROUP = 4  # blocks timed right after one timing of their shared context network

Progress = Callable[[str, int, int], None]  # (phase, done, total)
Warn = Callable[[str], None]  # one-line warning for the user (the CLI prints it; default: warnings.warn)


class UnstableMachineError(AutovitError):
    """The reference network's timings spread too much to trust any measurement."""


def reference_arch(resolution: int) -> Arch:
    """The fixed reference network: the smallest arch of the XXS space at `resolution`."""
    return SearchSpace.builtin("xxs").smallest().replace(resolution=resolution)


def seeded_model(arch: Arch, num_classes: int) -> torch.nn.Module:
    """The network of `arch` with seed-0 weights, in eval mode: what every latency measurement times."""
    torch.manual_seed(0)
    return build_model(arch, num_classes).eval()


def reference_runner(config: MeasureConfig, resolution: int) -> Callable[[], None]:
    arch = reference_arch(resolution)
    return config.runner(seeded_model(arch, 1000), (1, 3, resolution, resolution), f"reference|{arch.key()}")


def check_stability(spread: float, max_spread: float = MAX_REFERENCE_SPREAD, force: bool = False,
                    when: str = "in the stability check") -> str | None:
    """Raises `UnstableMachineError` when the reference spread (IQR / median) exceeds `max_spread`;
    with `force`, returns the warning to show instead (None when the spread is within the limit)."""
    if spread <= max_spread:
        return None
    what = _spread_text(spread, max_spread, when)
    if force:
        return f"{what}: measuring anyway because of --force-unstable (the table may be noisy)"
    raise UnstableMachineError(
        f"the machine is too unstable to measure: {what}; nothing was measured or written",
        hint="stop other jobs on the measured core (or pin to another with --cpu), then retry; "
             "--force-unstable measures and writes the table anyway")


def noisy_measurement(spread: float, max_spread: float, when: str) -> str | None:
    """The warning for a reference spread above `max_spread` during a measurement, whose results
    are kept (None within the limit)."""
    if spread <= max_spread:
        return None
    return (f"{_spread_text(spread, max_spread, when)}: kept, as ratios to the interleaved reference cancel "
            "most drift; check the table with `autovit latency validate`")


def _spread_text(spread: float, max_spread: float, when: str) -> str:
    return f"the reference network's timings spread {spread:.0%} (IQR / median) {when}, above the {max_spread:.0%} limit"


def reference_stability(config: MeasureConfig, resolution: int, rounds: int = PRECHECK_ROUNDS,
                        reference: Callable[[], None] | None = None) -> tuple[float, float]:
    """(median ms, spread = IQR / median) of `rounds` back-to-back timings of the reference network."""
    ref = reference or reference_runner(config, resolution)
    times = measure_rounds({"ref": ref}, ref, None, rounds, config.target_ms)
    return float(np.median(times.reference_ms)), times.reference_spread


def _python_warning(message: str) -> None:
    warnings.warn(message, stacklevel=3)


def _note(meta: dict[str, Any], warn: Warn | None, message: str | None) -> None:
    """Shows `message` and keeps it with the table (meta['warnings'])."""
    if message:
        meta.setdefault("warnings", []).append(message)
        (warn or _python_warning)(message)


@dataclass
class TableBuild:
    table: LatencyTable
    times: RoundTimes
    seconds: float


def build_table(space: SearchSpace, resolution: int | None = None, config: MeasureConfig = MeasureConfig(),
                num_classes: int = 1000, progress: Progress | None = None, max_spread: float = MAX_REFERENCE_SPREAD,
                force: bool = False, sigs: Sequence[BlockSig] | None = None, measure: str = "anchors",
                anchors_per_feature: int = DEFAULT_PER_FEATURE, log: MeasureLog | None = None,
                warn: Warn | None = None) -> TableBuild:
    """Measures block variants of `space` in context; returns the (unfitted) table.

    ``measure="anchors"`` (default) measures the anchors of `autovit.latency.imputation` and
    imputes the other variants from operator counts; ``"all"`` measures every variant. An explicit
    `sigs` list is measured as given, with nothing imputed. A stability check of the reference runs
    first and refuses an unstable machine (`UnstableMachineError`, unless `force`) before any block
    is exported or timed; a spread above `max_spread` during the measurement itself is a warning.
    With a `log`, timings are checkpointed to it and reused from it (`measure_rounds`)."""
    t0 = time.time()
    res = resolution or space.resolution[0]
    all_sigs = list(sigs) if sigs is not None else space_blocks(space, res, num_classes)
    sigs = blocks_to_measure(all_sigs, "all" if sigs is not None else measure, anchors_per_feature)
    meta: dict[str, Any] = {}
    ref = reference_runner(config, res)
    _, precheck_spread = reference_stability(config, res, reference=ref)
    _note(meta, warn, check_stability(precheck_spread, max_spread, force, "before measuring"))
    torch.manual_seed(0)
    runners: dict[str, Callable[[], None]] = {}
    by_ctx: dict[str, list[BlockSig]] = {}
    for i, sig in enumerate(sigs):
        with_net, without, _ = context_pair(sig, space.layout)
        ctx = context_key(sig)
        size = (1, 3, res, res)
        if ctx not in runners:
            runners[ctx] = config.runner(without, size, f"{ctx}|{res}")
        runners[str(sig)] = config.runner(with_net, size, f"{sig}|copies={sig.copies}|{res}")
        by_ctx.setdefault(ctx, []).append(sig)
        if progress:
            progress("export", i + 1, len(sigs))
    groups, ctx_alias = [], {}
    for ctx, members in by_ctx.items():
        for j in range(0, len(members), WITHS_PER_GROUP):
            alias = f"{ctx}#{j}"
            runners[alias] = runners[ctx]
            groups.append([alias] + [str(s) for s in members[j:j + WITHS_PER_GROUP]])
            for s in members[j:j + WITHS_PER_GROUP]:
                ctx_alias[str(s)] = alias
    export_seconds = time.time() - t0
    times = measure_rounds(runners, ref, groups, config.rounds, config.target_ms, config.warmup,
                           progress=(lambda d, n: progress("measure", d, n)) if progress else None,
                           log=log, phase="blocks")
    _note(meta, warn, noisy_measurement(times.reference_spread, max_spread, "over the block timings"))
    fp = config.fingerprint(res)
    fid = fingerprint_id(fp)
    entries = {}
    for sig in sigs:
        key, alias = str(sig), ctx_alias[str(sig)]
        copies = sig.copies
        diff_ms = (np.asarray(times.ms[key]) - np.asarray(times.ms[alias])) / copies
        diff_ratio = (times.ratios(key) - times.ratios(alias)) / copies
        q1, q3 = np.percentile(diff_ms, [25, 75])
        r1, r3 = np.percentile(diff_ratio, [25, 75])
        entries[key] = {
            "median_ms": float(np.median(diff_ms)), "iqr_ms": float(q3 - q1), "count": len(diff_ms),
            "ratio_to_ref": float(np.median(diff_ratio)), "ratio_iqr": float(r3 - r1), "copies": copies,
            "with_ms": float(np.median(times.ms[key])), "without_ms": float(np.median(times.ms[alias])),
            "fingerprint": fid,
        }
    ref_ms = np.asarray(times.reference_ms)
    q1, q3 = np.percentile(ref_ms, [25, 75])
    ref_median = float(np.median(ref_ms))
    entries, imputation = impute_entries(entries, all_sigs, ref_median, fid)
    clamped = clamp_negative_costs(entries)  # noise larger than a block; loading refuses negative costs
    table = LatencyTable(
        space=space.name, resolution=res, fingerprint=fp, entries=entries, num_classes=num_classes,
        reference={"arch": reference_arch(res).to_dict(), "median_ms": ref_median,
                   "iqr_ms": float(q3 - q1), "count": len(ref_ms), "spread": times.reference_spread,
                   "precheck_spread": precheck_spread},
        meta={**meta, "layout": space.layout.to_dict(), "method": "in-context (network with minus without the block)",
              "rounds": config.rounds, "target_ms": config.target_ms, "modules_measured": len(sigs),
              "modules_imputed": len(all_sigs) - len(sigs), "imputation": imputation, "clamped_negative": clamped,
              "context_networks": len(by_ctx), "export_seconds": round(export_seconds, 1), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "build_seconds": round(time.time() - t0, 1)},
    )
    return TableBuild(table, times, time.time() - t0)


def _fmt_coef(coef: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.3g}" for k, v in coef.items())


@dataclass
class SubnetTimes:
    """Whole-subnet timings: ratio to the reference (the model's unit) and milliseconds."""

    archs: list[Arch]
    ratio: np.ndarray
    ms: np.ndarray
    iqr_ms: np.ndarray
    reference_ms: float
    reference_spread: float

    def to_dict(self) -> dict[str, Any]:
        return {"archs": [a.to_dict() for a in self.archs], "ratio": self.ratio.tolist(), "ms": self.ms.tolist(),
                "iqr_ms": self.iqr_ms.tolist(), "reference_ms": self.reference_ms,
                "reference_spread": self.reference_spread}


def subnet_runners(archs: Sequence[Arch], config: MeasureConfig, num_classes: int = 1000,
                   progress: Progress | None = None) -> list[Callable[[], None]]:
    out = []
    for i, a in enumerate(archs):
        out.append(config.runner(seeded_model(a, num_classes), (1, 3, a.resolution, a.resolution),
                                 f"subnet|{a.key()}|{num_classes}"))
        if progress:
            progress("export", i + 1, len(archs))
    return out


def time_subnets(archs: Sequence[Arch], runners: Sequence[Callable[[], None]], reference: Callable[[], None],
                 config: MeasureConfig, progress: Progress | None = None, log: MeasureLog | None = None,
                 phase: str = "subnets") -> SubnetTimes:
    """Times prepared subnet runners interleaved with the reference (checkpointed to `log` under `phase`)."""
    named = {f"net{i}": r for i, r in enumerate(runners)}
    times = measure_paired(named, reference, config.rounds,
                           progress=(lambda d, n: progress("measure", d, n)) if progress else None,
                           log=log, phase=phase)
    ratio = np.array([float(np.median(times.ratios(n))) for n in named])
    ms = np.array([float(np.median(times.ms[n])) for n in named])
    iqr = np.array([float(np.subtract(*np.percentile(times.ms[n], [75, 25]))) for n in named])
    return SubnetTimes(list(archs), ratio, ms, iqr, float(np.median(times.reference_ms)), times.reference_spread)


def measure_subnets(archs: Sequence[Arch], config: MeasureConfig = MeasureConfig(), num_classes: int = 1000,
                    progress: Progress | None = None, log: MeasureLog | None = None) -> SubnetTimes:
    """Exports and times whole subnets (batch 1), each interleaved with the reference."""
    if not archs:
        raise AutovitError("no subnets to measure")
    runners = subnet_runners(archs, config, num_classes, progress)
    ref = reference_runner(config, archs[0].resolution)
    return time_subnets(archs, runners, ref, config, progress, log)


def sample_distinct(space: SearchSpace, n: int, seed: int, exclude: Sequence[Arch] = ()) -> list[Arch]:
    """`n` distinct random archs of `space` (none in `exclude`), reproducible from `seed`."""
    rng = random.Random(seed)
    seen = {a.key() for a in exclude}
    out: list[Arch] = []
    for _ in range(100 * n):
        a = space.sample(rng)
        if a.key() not in seen:
            seen.add(a.key())
            out.append(a)
            if len(out) == n:
                return out
    raise AutovitError(f"the space '{space.name}' has fewer than {n} distinct archs to sample")


def fit_archs(space: SearchSpace, n: int, seed: int = 0) -> list[Arch]:
    """The fitting set: the smallest and largest arch plus random ones (covering the range)."""
    ends = [space.smallest(), space.largest()]
    return ends + sample_distinct(space, max(0, n - 2), seed, ends)


def profile_space(space: SearchSpace, resolution: int | None = None, config: MeasureConfig = MeasureConfig(),
                  fit_subnets: int = 30, seed: int = 0, num_classes: int = 1000, progress: Progress | None = None,
                  max_spread: float = MAX_REFERENCE_SPREAD, force: bool = False,
                  subnet_config: MeasureConfig | None = None, measure: str = "anchors",
                  anchors_per_feature: int = DEFAULT_PER_FEATURE, log: MeasureLog | None = None,
                  warn: Warn | None = None) -> Any:
    """The whole table build: check the machine's stability, measure the blocks in context
    (`build_table`), time `fit_subnets` whole subnets, fit the Eq. 6 coefficients (NNLS) and return
    the fitted model. Warnings (noisy timings, a fit that dropped the table) go to `warn` and into
    the table's meta['warnings'].

    With a `log` (see `profile_log`), every timing is checkpointed, and a rerun after a kill reuses
    the timings already taken with the same settings."""
    from autovit.latency.predictor import LatencyModel

    t0 = time.time()
    res = resolution or space.resolution[0]
    built = build_table(space, res, config, num_classes, progress, max_spread, force, measure=measure,
                        anchors_per_feature=anchors_per_feature, log=log, warn=warn)
    table = built.table
    model = LatencyModel(table)
    if fit_subnets:
        archs = [a.replace(resolution=res) for a in fit_archs(space, fit_subnets, seed)]
        t1 = time.time()
        times = measure_subnets(archs, subnet_config or config, num_classes,
                                (lambda p, d, n: progress(f"fit-{p}", d, n)) if progress else None, log)
        table.meta["fit_seconds"] = round(time.time() - t1, 1)
        _note(table.meta, warn, noisy_measurement(times.reference_spread, max_spread, "over the fitting-subnet timings"))
        model, selection = LatencyModel.fit_select(table, archs, times.ratio)
        pred = model.predict_ratio(archs)
        share = model.table_share(archs)
        table.model = {"coef": model.coef, "terms": list(model.coef), "selection": selection,
                       "method": "nnls, relative error; term set chosen by leave-one-out MAPE",
                       "fit": {**times.to_dict(), "seed": seed}, "table_share": share,
                       "fit_mape": float(np.mean(np.abs(pred - times.ratio) / times.ratio) * 100)}
        if share < MIN_TABLE_SHARE:
            _note(table.meta, warn, f"the fit dropped the lookup table: its terms give {share:.1%} of the predicted "
                                    f"latency of the fitting subnets (coefficients {_fmt_coef(model.coef)}), so "
                                    "predictions rest on block counts and MACs, not on the measured blocks; "
                                    "re-profile on a quieter core or with more --fit-subnets")
    table.meta["build_seconds"] = round(time.time() - t0, 1)
    table.meta["fit_subnets"] = fit_subnets
    return LatencyModel(table, table.model["coef"] if table.model else None)



def partial_path(out: str | Path) -> Path:
    """Where the timings of a measurement writing `out` are checkpointed: `<out>.partial.json`."""
    out = Path(out)
    return out.with_name(out.name + ".partial.json")


def profile_log(out: str | Path, space: SearchSpace, resolution: int | None, config: MeasureConfig,
                fit_subnets: int, seed: int, num_classes: int, measure: str, anchors_per_feature: int,
                subnet_config: MeasureConfig | None = None) -> MeasureLog:
    """The checkpoint of `profile_space` for the table `out`, keyed by every setting the timings
    depend on (space, resolution, measurement config, device fingerprint, fitting set, versions)."""
    from dataclasses import asdict

    from autovit.latency.lut import VERSION

    res = resolution or space.resolution[0]
    settings = {"what": "latency profile", "table_version": VERSION, "space": space.to_dict(), "resolution": res,
                "config": {k: v for k, v in asdict(config).items() if k != "cache_dir"},
                "subnet_config": subnet_config and {k: v for k, v in asdict(subnet_config).items() if k != "cache_dir"},
                "fingerprint": config.fingerprint(res), "fit_subnets": fit_subnets, "seed": seed,
                "num_classes": num_classes, "measure": measure, "anchors_per_feature": anchors_per_feature}
    return MeasureLog(partial_path(out), settings)
