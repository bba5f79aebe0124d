"""autovit: latency-aware NAS for hybrid CNN + ViT models (the AutoViT paper).

`import autovit` registers the paper models (`autovit_xxs|xs|s`) with timm. The public names below
are resolved on first use (PEP 562), and the `autovit` command line imports only this file, typer
and rich until a command runs, so `autovit --help` does not pay for torch and timm.
"""

from __future__ import annotations

import sys
from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "Arch": "autovit.arch", "Layout": "autovit.arch", "MBConvStage": "autovit.arch",
    "TransformerStage": "autovit.arch", "count_macs": "autovit.costs", "count_params": "autovit.costs",
    "stage_costs": "autovit.costs", "ArchError": "autovit.errors", "AutovitError": "autovit.errors",
    "SpaceError": "autovit.errors", "AutoViT": "autovit.model", "build_model": "autovit.model",
    "SearchSpace": "autovit.space", "paper_arch": "autovit.registry", "resolve_arch": "autovit.registry",
    # the Python API (autovit.api): one typed config and one function per job
    **{name: "autovit.api" for name in (
        "BenchConfig", "ExportConfig", "ProfileConfig", "SearchRunConfig", "TrainSubnetConfig",
        "TrainSupernetConfig", "ValidateConfig", "export_model", "profile_latency", "run_bench", "run_search",
        "train_subnet", "train_supernet", "validate_latency")},
    "LatencyBudget": "autovit.search.budget", "LatencyModel": "autovit.latency.predictor",
    "PipelineConfig": "autovit.pipeline", "run_pipeline": "autovit.pipeline",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'autovit' has no attribute '{name}'")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


def _imported_for_the_cli() -> bool:
    """True while this package is imported on the way to `autovit.cli` (console script, `import
    autovit.cli`, `python -m autovit.cli`). Reads the import machinery's frames (CPython); when it
    cannot tell, the answer is False and the package imports eagerly as before, only slower."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name in ("_find_and_load", "_get_module_details"):
            name = frame.f_locals.get("name", frame.f_locals.get("mod_name"))
            if isinstance(name, str) and (name == "autovit.cli" or name.startswith("autovit.cli.")):
                return True
        frame = frame.f_back
    return False


if not _imported_for_the_cli():
    # Registers autovit_* with timm (imports torch and timm). CLI commands that build models by
    # name import autovit.registry themselves.
    from autovit import registry as _registry  # noqa: F401
