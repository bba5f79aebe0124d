"""Shared machinery of the evidence studies (issue 13, docs/evidence.md): the study profiles, the
per-unit result cache, the CIFAR proxy <-> deployment arch mapping, standalone training with a
half-length checkpoint, per-image correctness, and the statistics (rank correlations with
bootstrap CIs, paired accuracy comparisons).

A study is a set of units (one subnet trained alone, one supernet training choice, one search
seed, ...). Each finished unit is one JSON file under benchmarks/results/<study>/<profile>/,
written atomically and committed, so a study accumulates over several runs on a small machine:
a unit that exists is never recomputed, a unit file that cannot be read is a clear error.
"""

from __future__ import annotations

import base64
import json
import os
import platform
import random
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from autovit.errors import AutovitError

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DATA_DIR = "/work/shared/data/cifar10"  # the lossy CIFAR-10 copy of this workplace (--data-dir)
RUNS = ROOT / "runs"
PROXY_SPACE_FILE = ROOT / "src" / "autovit" / "spaces" / "xxs_cifar.yaml"
LUT = ROOT / "luts" / "xxs_ort_1t_256.json"
# mobilevit_xxs measured with this table's reference network in interleaved rounds
# (benchmarks/results/search_cifar10.md): the deployment budget in table units.
DEFAULT_BUDGET_MS = 30.0


@dataclass(frozen=True)
class Profile:
    """The size of every study. `cpu` is the default; `gpu` the bigger study for one modern GPU
    (AMP, channels_last); `smoke` proves the code in a minute (its numbers mean nothing)."""

    name: str
    device: str
    standalone_steps: int        # steps of each subnet trained alone (half of it is the settling check)
    long_steps: int              # the ranking study's second, longer length (rank agreement = settled)
    supernet_passes: int         # subnet forward/backward passes per supernet training choice
    n_subnets: int               # ranking-study subnets, stratified over predicted latency
    val_images: int              # held-out images (from train) for inherited accuracy and search
    test_images: int             # test-split images for standalone accuracy (0: all 10,000)
    calib_images: int
    population: int
    generations: int
    parents: int
    batch_size: int = 64
    num_workers: int = 0
    amp: bool = False
    channels_last: bool = False
    threads: int | None = None
    results_dir: Path | None = None  # None: benchmarks/results/<study>/<profile>
    # inherited-accuracy evaluation dtype (SubnetEvaluator: float32 = no autocast); bf16 is ~1.7x
    # faster on this CPU and within 0.2 top-1 points of float32 (docs/evidence.md)
    eval_dtype: str = "bfloat16"

    def train_overrides(self) -> dict[str, Any]:
        return dict(batch_size=self.batch_size, num_workers=self.num_workers, device=self.device, amp=self.amp,
                    channels_last=self.channels_last, threads=self.threads)


PROFILES = {
    # 703 steps of batch 64 = one CIFAR-10 epoch (45,000 training images)
    "cpu": Profile("cpu", "cpu", standalone_steps=2 * 703, long_steps=8 * 703, supernet_passes=8000, n_subnets=12,
                   val_images=5000, test_images=0, calib_images=1024, population=16, generations=8, parents=4),
    # 176 steps of batch 256 = one epoch; units run several at a time on the one GPU (gpu_study.py)
    "gpu": Profile("gpu", "cuda", standalone_steps=10 * 176, long_steps=30 * 176, supernet_passes=30 * 176,
                   n_subnets=16, val_images=5000, test_images=0, calib_images=2048, population=16, generations=8, parents=4,
                   batch_size=256, num_workers=2, amp=True, channels_last=True, threads=1),
    "smoke": Profile("smoke", "cpu", standalone_steps=4, long_steps=8, supernet_passes=8, n_subnets=3, val_images=64,
                     test_images=64, calib_images=64, population=4, generations=1, parents=2, batch_size=16,
                     threads=1, results_dir=RUNS / "evidence_smoke"),
}


def resume_search(out: Path) -> bool:
    """Whether `out` holds a stopped search's state (a unit's search continues from its last
    finished generation when the machine still has it)."""
    from autovit.search.state import STATE_FILE

    return (out / STATE_FILE).exists()


def search_progress(label: str, log: Callable[[str], None]) -> Callable[[str, int, int], None]:
    """A search `progress` callback that logs each finished generation (and the coarse stage's end)."""

    def report(stage: str, done: int, total: int) -> None:
        if stage != "coarse" or done == total:
            log(f"{label}: {stage} {done}/{total}")

    return report


def subnet_evaluator(profile: Profile, supernet: Any, trainer: Any, data: Any) -> Any:
    """The studies' inherited-accuracy evaluator: BN recalibrated on the trainer's calibration
    batches, top-1 on `profile.val_images` held-out training images, under `profile.eval_dtype`."""
    from autovit.supernet.evaluate import SubnetEvaluator

    val = batches(limited(data.val, profile.val_images))
    return SubnetEvaluator(supernet, trainer.calibration_batches(), val, eval_dtype=profile.eval_dtype)


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise AutovitError(f"unknown profile '{name}'", hint=f"use one of {', '.join(PROFILES)}")
    return PROFILES[name]


def results_dir(study: str, profile: Profile) -> Path:
    """Where a study's unit files live: benchmarks/results/<study>/<profile> (smoke: under runs/)."""
    return (profile.results_dir or RESULTS) / study / profile.name


def run_dir(study: str, profile: Profile, unit: str, arch: Any = None) -> Path:
    """Checkpoints of a unit (git-ignored runs/); named after the arch too, so a checkpoint of
    another arch (a re-planned study, a re-run search) is never resumed."""
    import hashlib

    tag = f"_{hashlib.sha1(arch.key().encode()).hexdigest()[:8]}" if arch is not None else ""
    return (profile.results_dir or RUNS / "evidence") / "_runs" / profile.name / study / f"{unit}{tag}"


# ---------------------------------------------------------------------------------- records
def machine_record(threads: int | None = None) -> dict[str, Any]:
    """Where a unit ran: platform, CPU, cores, torch threads, GPU, library versions."""
    import torch

    from autovit.bench import versions
    from autovit.latency.measure import device_fingerprint

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"platform": platform.platform(), "processor": device_fingerprint("torch")["cpu"],
            "cpus": os.cpu_count(), "torch_threads": threads or torch.get_num_threads(), "gpu": gpu,
            "versions": versions()}


def command_line() -> str:
    return " ".join([Path(sys.executable).name, *sys.argv])


class UnitCache:
    """One JSON file per finished unit under `folder`: a unit that exists is never recomputed."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.json"

    def load(self, name: str) -> dict[str, Any] | None:
        """The unit's result, None when it has not run; a file that is not a result is an error."""
        path = self.path(name)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise AutovitError(f"unit result {path} is corrupt ({err})",
                               hint="delete the file to recompute that unit") from None
        if not isinstance(data, dict) or data.get("unit") != name:
            raise AutovitError(f"unit result {path} is not the result of unit '{name}'",
                               hint="delete the file to recompute that unit") from None
        return data

    def save(self, name: str, result: dict[str, Any]) -> dict[str, Any]:
        from autovit.io_utils import save_json

        result = {"unit": name, **result}
        save_json(self.path(name), result)
        return result

    def run(self, name: str, compute: Callable[[], dict[str, Any]], log: Callable[[str], None] = print) -> dict:
        """The cached result of unit `name`, or `compute()`'s, saved with its wall time and machine."""
        cached = self.load(name)
        if cached is not None:
            return cached
        log(f"unit {name}: computing")
        t0 = time.time()
        result = compute()
        result.setdefault("wall_s", round(time.time() - t0, 1))
        result.setdefault("machine", machine_record())
        result.setdefault("command", command_line())
        result.setdefault("finished", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        saved = self.save(name, result)
        log(f"unit {name}: done in {result['wall_s']:.0f}s -> {self.path(name)}")
        return saved

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.folder.glob("*.json")) if self.folder.is_dir() else []


# ---------------------------------------------------------------------------------- statistics
def _bootstrap(stat: Callable[[np.ndarray], float], n: int, n_boot: int, seed: int) -> tuple[float, float] | None:
    """Percentile 95% CI of `stat(indices)` over resampled index sets; resamples where the
    statistic is undefined (e.g. all ties) are dropped."""
    rng = np.random.default_rng(seed)
    values = [stat(rng.integers(0, n, n)) for _ in range(n_boot)]
    values = [v for v in values if np.isfinite(v)]
    if len(values) < n_boot // 2:
        return None
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


Pairs = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def rank_correlation(x: Sequence[float], y: Sequence[float], n_boot: int = 2000, seed: int = 0,
                     pairs: Pairs | None = None) -> dict[str, Any]:
    """Kendall tau and Spearman rho of x vs y with their p-values and paired-bootstrap 95% CIs.

    `pairs(i)` gives the two sequences compared on the items of index array `i` (default x[i],
    y[i]); the point estimate uses all items, each bootstrap resample its own `i`, so a statistic
    computed from the items (a fitted line) is refitted per resample."""
    import warnings

    from scipy.stats import kendalltau, spearmanr

    warnings.filterwarnings("ignore", message=".*is constant.*")  # undefined statistics are reported as None
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    pairs = pairs or (lambda i: (x[i], y[i]))
    out: dict[str, Any] = {"n": n}
    if n < 3:
        return {**out, "kendall_tau": None, "spearman_rho": None, "note": "fewer than 3 pairs"}
    px, py = pairs(np.arange(n))
    for name, fn in (("kendall_tau", kendalltau), ("spearman_rho", spearmanr)):
        res = fn(px, py)
        stat = float(res.statistic)
        out[name] = stat if np.isfinite(stat) else None
        out[name + "_p"] = float(res.pvalue) if np.isfinite(res.pvalue) else None
        out[name + "_ci95"] = _bootstrap(lambda i, fn=fn: float(fn(*pairs(i)).statistic), n, n_boot, seed)
    return out


def rank_correlation_beyond_size(x: Sequence[float], y: Sequence[float], size: Sequence[float],
                                 n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """`rank_correlation` of x vs y after removing from each what log(size) explains: the residuals
    of a least-squares line on log(size), refitted in every bootstrap resample. Does x rank y beyond
    the size both may track? Undefined below 4 distinct items (the residuals of 3 points on a line
    are one fixed vector up to scale, so their tau is +-1 whatever the data); resamples with fewer
    are dropped."""
    x, y, z = np.asarray(x, float), np.asarray(y, float), np.log(np.asarray(size, float))
    if len(x) < 4:
        return {"n": len(x), "kendall_tau": None, "spearman_rho": None, "note": "fewer than 4 pairs"}

    def residuals(i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(np.unique(i)) < 4 or len(np.unique(z[i])) < 2:
            return np.zeros(len(i)), np.zeros(len(i))  # constant: the statistic is undefined, dropped
        fit = lambda v: v[i] - np.polyval(np.polyfit(z[i], v[i], 1), z[i])  # noqa: E731
        return fit(x), fit(y)

    return rank_correlation(x, y, n_boot, seed, pairs=residuals)


def paired_accuracy(correct_a: np.ndarray, correct_b: np.ndarray, n_boot: int = 2000, seed: int = 0) -> dict:
    """A vs B on the same images: top-1 difference (points) with a paired-bootstrap 95% CI, and the
    exact McNemar test on the discordant images."""
    from scipy.stats import binomtest

    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if a.shape != b.shape:
        raise AutovitError(f"paired comparison needs the same images: {a.shape} vs {b.shape}")
    diff = a.astype(float) - b.astype(float)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    ci = _bootstrap(lambda i: 100 * float(diff[i].mean()), len(diff), n_boot, seed)
    return {"images": len(diff), "top1_a": 100 * float(a.mean()), "top1_b": 100 * float(b.mean()),
            "diff_points": 100 * float(diff.mean()), "diff_ci95": ci, "only_a_correct": only_a,
            "only_b_correct": only_b, "mcnemar_p": float(p)}


def paired_over_seeds(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Per-seed paired differences a - b: mean, t-based 95% CI and paired t-test p (n seeds)."""
    from scipy import stats

    d = np.asarray(a, float) - np.asarray(b, float)
    out: dict[str, Any] = {"n": len(d), "mean_diff": float(d.mean()) if len(d) else None}
    if len(d) >= 2 and d.std(ddof=1) > 0:
        half = float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))
        out.update(ci95=(out["mean_diff"] - half, out["mean_diff"] + half),
                   ttest_p=float(stats.ttest_rel(a, b).pvalue))
    return out


def pack_bools(values: Iterable[bool]) -> str:
    """Per-image correctness as compact base64 (bit-packed) for a unit's JSON."""
    arr = np.asarray(list(values), bool)
    return base64.b64encode(np.packbits(arr).tobytes()).decode()


def unpack_bools(text: str, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(base64.b64decode(text), np.uint8))[:n].astype(bool)


# ---------------------------------------------------------------------------------- spaces and archs
@dataclass(frozen=True)
class Family:
    """A deployment space (builtin name, searched and timed at `resolution`, default the space's),
    its CIFAR proxy layout (same choices, trained and evaluated at 32 px) and its latency table."""

    deploy: str
    proxy_file: Path
    lut: Path
    resolution: int | None = None

    def deploy_space(self) -> Any:
        from autovit.space import SearchSpace

        space = SearchSpace.builtin(self.deploy)
        return space.with_resolution(self.resolution) if self.resolution else space

    def proxy_space(self) -> Any:
        from autovit.space import SearchSpace

        return SearchSpace.from_yaml(self.proxy_file)

    def to_deploy(self, arch: Any) -> Any:
        """The same choices at the deployment setting: what latency is predicted and measured for."""
        space = self.deploy_space()
        return space.validate(arch.replace(layout=space.layout, resolution=space.resolution[0]))

    def to_proxy(self, arch: Any) -> Any:
        """The same choices in the CIFAR proxy layout at 32 px: what is trained and evaluated."""
        space = self.proxy_space()
        return space.validate(arch.replace(layout=space.layout, resolution=space.resolution[0]))

    def latency_model(self) -> Any:
        """The deployment latency model. Only predictions are used, so another machine (a GPU box)
        may load it: the table's fingerprint is not enforced."""
        from autovit.search.runner import load_latency_model

        return load_latency_model(self.lut, self.deploy_space(), force=True)


# the seeds of the method comparison and the hand-designed baselines; a run may compute a subset, its
# report always covers all of them (and any other seed that was asked for)
SEEDS = (0, 1, 2)


def report_seeds(asked: Iterable[int], study: str, profile: "Profile") -> list[int]:
    """The seeds a report covers: `SEEDS`, any other seed a run was asked for and any seed that has
    a unit (`*_s<seed>`) of `study`."""
    found = {int(m.group(1)) for n in UnitCache(results_dir(study, profile)).names()
             if (m := re.search(r"_s(\d+)$", n))}
    return sorted({*SEEDS, *asked, *found})


SPACES = ROOT / "src" / "autovit" / "spaces"
# the evidence studies' family (issue 13): XXS at 256 px; the Pareto benchmark adds others (issue 14)
XXS = Family("xxs", PROXY_SPACE_FILE, LUT)


def stratified_archs(n: int, seed: int, pool: int = 4000) -> list[Any]:
    """`n` distinct deployment archs, one from each of `n` equal-count bins of predicted latency
    over a seeded pool (per-dimension draws), the largest and smallest archs included."""
    space = XXS.deploy_space()
    rng = random.Random(seed)
    archs = {a.key(): a for a in (space.sample(rng) for _ in range(pool))}
    archs = list(archs.values())
    lat = XXS.latency_model().predict(archs)
    order = np.argsort(lat)
    picked = [space.smallest(), space.largest()] if n >= 2 else []
    bins = np.array_split(order, max(n - len(picked), 1))
    for b in bins[: n - len(picked)]:
        picked.append(archs[int(rng.choice(list(b)))])
    return picked


@dataclass(frozen=True)
class StandaloneTruth:
    """One ground truth of the ranking study: its subnets trained alone for `steps` with the
    cifar-cpu recipe changed by `changes`; its units are named `subnetNN<suffix>`. A truth with
    `best_of` trains nothing: per subnet, the best test top-1 of those truths (the subnets that have
    all of them)."""

    name: str
    suffix: str
    label: str
    steps: int
    purpose: str
    changes: tuple[tuple[str, Any], ...] = ()
    best_of: tuple[str, ...] = ()


def standalone_truths(profile: Profile) -> dict[str, StandaloneTruth]:
    """The ranking study's ground truths: the recipe at two lengths (rank settling) and the recipe
    check -- peak lr 5e-4 instead of 2e-3: MobileViT's 2e-3 at batch 1024 scaled to batch 64 by
    the square root, since 2e-3 at batch 64 may be what keeps deep transformer subnets from training
    -- and, since the two lrs suit different subnets, each subnet's better lr (a tuned ground truth)."""
    short, long = profile.standalone_steps, profile.long_steps
    return {t.name: t for t in (
        StandaloneTruth("short", "", f"{short} steps", short, "the ground truth"),
        StandaloneTruth("long", "_long", f"{long} steps", long, "rank settling between two training lengths"),
        StandaloneTruth("lr5e-4", "_lr5e-4", f"{short} steps, lr 5e-4", short,
                        "recipe check: does a lower peak lr change the ranks?", (("lr", 5e-4),)),
        StandaloneTruth("best_lr", "_best_lr", f"{short} steps, better of lr 2e-3 / 5e-4", short,
                        "tuned ground truth: each subnet at its better peak lr", best_of=("short", "lr5e-4")))}


def study_plan(profile: Profile, seed: int = 0) -> list[dict[str, Any]]:
    """The ranking study's subnets (fixed once, in the committed unit `plan` of ranking_study):
    name, proxy arch, predicted deployment latency, params and MACs at 32 px."""
    from autovit.costs import count_macs, count_params

    def compute() -> dict[str, Any]:
        archs = stratified_archs(profile.n_subnets, seed)
        lat = XXS.latency_model().predict(archs)
        rows = []
        for i, (arch, ms) in enumerate(zip(archs, lat)):
            proxy = XXS.to_proxy(arch)
            rows.append({"name": f"subnet{i:02d}", "arch": proxy.to_dict(), "key": proxy.key(),
                         "predicted_deploy_ms": float(ms), "params": count_params(proxy, 10),
                         "macs_32px": count_macs(proxy, 10)})
        return {"seed": seed, "latency_table": str(LUT.relative_to(ROOT)), "subnets": rows}

    return UnitCache(results_dir("ranking_study", profile)).run("plan", compute)["subnets"]


def load_arch(data: dict[str, Any]) -> Any:
    from autovit.arch import Arch

    return XXS.proxy_space().validate(Arch.from_dict(data))


# ---------------------------------------------------------------------------------- training
def train_config(profile: Profile, data_dir: str, seed: int, **changes: Any) -> Any:
    """The one recipe of every study: the cifar-cpu preset at 32 px, held-out validation split of
    5,000 training images (never the test split), the profile's runtime settings."""
    from autovit.train.config import preset

    base = dict(data_dir=data_dir, resolution=32, val_size=5000, calib_images=profile.calib_images,
                ckpt_every_steps=100, eval_every_epoch=False, progress=False, tensorboard=False,
                log_every_steps=10, seed=seed, **profile.train_overrides())
    base.update(changes)
    return preset("cifar-cpu").replace(**base)


def limited(dataset: Any, n: int, seed: int = 0) -> Any:
    """A fixed, seeded subset of `n` images of `dataset` (all when n is 0 or more than it has);
    not the first n: CIFAR-10's test split is stored sorted by class."""
    from autovit.data import Subset

    if not n or n >= len(dataset):
        return dataset
    return Subset(dataset, np.sort(np.random.default_rng(seed).permutation(len(dataset))[:n]).tolist())


def batches(dataset: Any, batch_size: int = 250) -> list[tuple[Any, Any]]:
    """`dataset` (eval transform) as a list of tensor batches, transformed once: evaluating many
    subnets on the same images then costs only the forward passes."""
    from autovit.data import eval_loader

    return [(images, target) for images, target in eval_loader(dataset, batch_size)]


def predict_correct(model: Any, dataset: Any, batch_size: int = 256, device: Any = None) -> np.ndarray:
    """Per-image top-1 correctness of `model` (eval mode) on `dataset`."""
    import torch

    from autovit.data import eval_loader

    device = device or next(model.parameters()).device
    model.eval()
    out = []
    with torch.no_grad():
        for images, target in eval_loader(dataset, batch_size):
            logits = model(images.to(device))
            out.append((logits.argmax(1).cpu() == target).numpy())
    return np.concatenate(out) if out else np.zeros(0, bool)


def train_standalone(model: Any, cfg: Any, data: Any, out_dir: Path, val: Any, test: Any,
                     log: Callable[[str], None]) -> dict[str, Any]:
    """Trains `model` alone for cfg.max_steps, recording held-out and test top-1 at half the steps
    (same run, mid-schedule: the rank-settling check) and at the end. An interrupted run (autovit
    or timm model) resumes from out_dir's last checkpoint."""
    from _log import LogConsole
    from autovit.io_utils import save_json
    from autovit.train.trainer import Trainer

    trainer = Trainer(cfg, model, data, out_dir=out_dir, console=LogConsole())
    last = out_dir / "checkpoints" / "last.pt"
    half_file = out_dir / "half.json"
    if last.is_file():
        trainer.resume(last)
    elif half_file.is_file():  # left by a run that wrote no checkpoint: not this run's
        half_file.unlink()
    half_step = max(cfg.max_steps // 2, 1)

    def at_half(tr: Any, step_log: Any) -> None:
        if tr.step == half_step and not half_file.is_file():
            save_json(half_file, scores(tr.model, val, test, "half", tr.step, tr.device))
            log(f"half ({tr.step} steps): held-out top-1 {json.loads(half_file.read_text())['val_top1']:.2f}%")

    trainer.callbacks.append(at_half)
    trainer.fit()
    result = scores(trainer.model, val, test, "full", trainer.step, trainer.device)
    half = json.loads(half_file.read_text()) if half_file.is_file() else None
    return {"steps": trainer.step, "train_s": round(trainer.elapsed_s, 1), "full": result, "half": half}


def scores(model: Any, val: Any, test: Any, name: str, step: int, device: Any) -> dict[str, Any]:
    val_c, test_c = predict_correct(model, val, device=device), predict_correct(model, test, device=device)
    return {"name": name, "step": step, "val_top1": 100 * float(val_c.mean()), "val_images": len(val_c),
            "test_top1": 100 * float(test_c.mean()), "test_images": len(test_c), "test_correct": pack_bools(test_c)}


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        lines.append("| " + " | ".join("" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))
                                       for v in row) + " |")
    return lines


def fmt_ci(ci: Sequence[float] | None, digits: int = 2) -> str:
    return "n/a" if not ci else f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def write_report(study: str, profile: Profile, summary: dict[str, Any], text: str) -> str:
    """Writes a study's report as `<study>/<profile>.json` (summary) and `.md` (text); returns the text."""
    from autovit.io_utils import atomic_write_text, save_json

    folder = results_dir(study, profile).parent
    save_json(folder / f"{profile.name}.json", summary)
    atomic_write_text(folder / f"{profile.name}.md", text)
    return text


def study_parser(doc: str | None, profile: str = "cpu") -> Any:
    """The argument parser every study script starts from: --profile and --data-dir."""
    import argparse

    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default=profile, choices=list(PROFILES))
    ap.add_argument("--data-dir", default=DATA_DIR)
    return ap


def run_cli(body: Callable[[], None]) -> int:
    """Runs a study's `main` body: an `AutovitError` is one message on stderr and exit code 2."""
    try:
        body()
    except AutovitError as err:
        print(f"error: {err.message}" + (f"\nhint: {err.hint}" if err.hint else ""), file=sys.stderr)
        return 2
    return 0

