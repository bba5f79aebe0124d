"""Issue 13 on one GPU: every evidence study at the `gpu` profile (more epochs and subnets, AMP,
channels_last, batch 256), aimed at under 10 minutes on one modern GPU, same unit files and reports
as the CPU runs (benchmarks/results/<study>/gpu/).

The studies' units are independent processes scheduled on the one GPU, several at a time
(`--parallel`; small models leave a big GPU mostly idle, so concurrency is where the time goes):
phase 1 trains the supernets, the ranking-study subnets and the timm models (own and CIFAR
layouts); phase 2 runs the searches and trains their winners, one process per seed (they need the
supernet); phase 3 trains the searched model of vs_handdesigned (it needs seed 0's winner). Every
process stops at the deadline; finished units stay, and running the script again continues with
the missing ones.

    python benchmarks/gpu_study.py                          # on the GPU box
    python benchmarks/gpu_study.py --profile smoke --minutes 5 --parallel 2   # CPU check of the plumbing
    python benchmarks/gpu_study.py --profile cpu --minutes 150 --parallel 2   # a CPU chunk: 1 thread per job

The gpu profile is sized by estimate and has not run on a GPU yet (docs/evidence.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import _evidence as ev
from _log import log

HERE = Path(__file__).resolve().parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent / "src"), os.environ.get("PYTHONPATH", "")])}


def jobs(profile: ev.Profile, data_dir: str, choice: str, seeds: list[int]) -> list[list[list[str]]]:
    """Phases of commands; the commands of one phase run concurrently."""
    common = ["--profile", profile.name, "--data-dir", data_dir]
    plan = [row["name"] for row in ev.study_plan(profile)]
    import vs_handdesigned as vs

    phase1 = [["supernet_ranking.py", *common, "--choices", c] for c in dict.fromkeys(["uniform", choice])]
    phase1 += [["ranking_study.py", *common, "--only", name] for name in plan]
    phase1 += [["ranking_study.py", *common, "--truth", "lr5e-4", "--only", name] for name in plan]  # recipe check
    phase1 += [["vs_handdesigned.py", *common, "--models", m, "--no-latency", "--seeds", *map(str, seeds)]
               for m in vs.TIMM_MODELS]
    # issue 14's Pareto benchmark: its timing units (budgets, latency_*) are CPU measurements made on the
    # target machine and must exist already; the GPU trains the mnv4_s supernet, the other timm models,
    # then searches and trains each family's winners
    import pareto_front as pf

    pareto = ["pareto_front.py", *common, "--supernet-choice", choice, "--units"]
    phase1 += [[*pareto, "supernet_mnv4_s"]]
    phase1 += [[*pareto, f"train_{m}_s0"] for m in pf.TIMM if m not in vs.TIMM_MODELS]
    # the layout-matched baselines (each timm model in the CIFAR proxy layout) last: ~4x the MACs
    phase1 += [["vs_handdesigned.py", *common, "--models", m + vs.CIFAR_SUFFIX, "--no-latency", "--seeds",
                *map(str, seeds)] for m in vs.TIMM_MODELS]
    phase1 += [[*pareto, f"train_{m}{vs.CIFAR_SUFFIX}_s0"] for m in pf.TIMM if m not in vs.TIMM_MODELS]
    phase2 = [["method_comparison.py", *common, "--supernet-choice", choice, "--seeds", str(s)] for s in seeds]
    phase2 += [[*pareto, f] for f in pf.FAMILIES]
    phase3 = [["vs_handdesigned.py", *common, "--models", vs.SEARCHED, "--no-latency", "--seeds", *map(str, seeds)]]
    return [phase1, phase2, phase3]


def run_phase(commands: list[list[str]], parallel: int, deadline: float, logs: Path,
              env: dict[str, str] = ENV) -> list[int]:
    """Runs `commands` (scripts in benchmarks/ + args), at most `parallel` at once, killed at the deadline."""
    pending, running, codes = list(enumerate(commands)), [], [0] * len(commands)
    while pending or running:
        while pending and len(running) < parallel and time.time() < deadline:
            i, cmd = pending.pop(0)
            out = open(logs / f"job{i:02d}_{Path(cmd[0]).stem}.log", "w")
            running.append((i, subprocess.Popen([sys.executable, str(HERE / cmd[0]), *cmd[1:]], stdout=out,
                                                stderr=subprocess.STDOUT, cwd=HERE.parent, env=env), out))
        if time.time() >= deadline:
            pending.clear()
            for _, proc, _ in running:
                proc.terminate()
        for item in list(running):
            i, proc, out = item
            if proc.poll() is not None:
                codes[i] = proc.returncode
                out.close()
                running.remove(item)
        time.sleep(1)
    return codes


def main() -> int:
    ap = ev.study_parser(__doc__, profile="gpu")
    ap.add_argument("--minutes", type=float, default=9.5, help="deadline for the whole study")
    ap.add_argument("--parallel", type=int, default=8, help="unit processes at once on the GPU")
    ap.add_argument("--supernet-choice", default="sandwich_kd")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(ev.SEEDS))
    args = ap.parse_args()
    t0 = time.time()
    deadline = t0 + 60 * args.minutes
    profile = ev.get_profile(args.profile)
    logs = ev.RUNS / "gpu_study" / profile.name
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(ENV)
    if profile.device == "cpu":  # CPU runs (smoke, or a cpu chunk): the cores split between the jobs
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.parallel)))
    for n, phase in enumerate(jobs(profile, args.data_dir, args.supernet_choice, args.seeds), 1):
        log(f"phase {n}: {len(phase)} jobs, {(deadline - time.time()) / 60:.1f} min left")
        codes = run_phase(phase, args.parallel, deadline, logs, env)
        failed = [" ".join(phase[i][:1] + phase[i][-2:]) for i, c in enumerate(codes) if c != 0]
        if failed:
            log(f"phase {n}: {len(failed)} job(s) failed or were stopped (logs in {logs}): {failed}")
    for script in ("supernet_ranking.py", "ranking_study.py", "method_comparison.py", "vs_handdesigned.py",
                   "pareto_front.py"):
        subprocess.run([sys.executable, str(HERE / script), "--profile", profile.name, "--report",
                        *(["--seeds", *map(str, args.seeds)] if script in ("method_comparison.py",
                                                                          "vs_handdesigned.py") else [])],
                       cwd=HERE.parent, env=ENV, stdout=subprocess.DEVNULL)
    log(f"gpu study: {(time.time() - t0) / 60:.1f} min; reports in benchmarks/results/*/{profile.name}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
