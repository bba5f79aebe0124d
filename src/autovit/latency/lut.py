"""The versioned JSON latency lookup table (one per search space, resolution, device and runtime).

Entries are keyed by canonical block signatures (`autovit.latency.blocks.BlockSig`). Each holds
the block's in-context cost as a ratio to the reference network (the unit the latency model
works in) and in milliseconds, with IQR and sample count. No pickles: plain JSON only.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from autovit.arch import Layout, parse_layout
from autovit.errors import AutovitError
from autovit.io_utils import save_json
from autovit.latency.blocks import BlockSig
from autovit.latency.measure import fingerprint_mismatch

FORMAT = "autovit-latency-table"
# 2: MBConv keeps its 1x1 expand conv at expansion 1, so version-1 tables time other blocks.
VERSION = 2


# A block costing more than this many reference networks is a corrupt entry, not a measurement.
MAX_RATIO = 1e3


class LatencyTableError(AutovitError):
    """A latency table is malformed, missing a block, or built for something else."""


def _bad_number(value: Any, upper: float) -> str | None:
    """Why `value` is not a usable block cost (None when it is one)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return f"{value!r} is not a number"
    if not math.isfinite(x):
        return f"{x} is not finite"
    if x < 0:
        return f"{x} is negative"
    if x > upper:
        return f"{x:g} is implausibly large"
    return None


def clamp_negative_costs(entries: dict[str, dict[str, Any]]) -> list[str]:
    """Sets negative block costs to 0 and returns the signatures whose cost (`ratio_to_ref`) was
    negative; the measured value is kept as ``negative_ratio``. A block "faster than its context"
    is timing noise larger than the block. A negative `median_ms` (a median of other differences
    than the ratio's) is set to 0 as well, kept as ``negative_ms``."""
    clamped = []
    for key, entry in entries.items():
        if float(entry["ratio_to_ref"]) < 0:
            entry["negative_ratio"] = float(entry["ratio_to_ref"])
            entry["ratio_to_ref"] = 0.0
            clamped.append(key)
        if float(entry.get("median_ms", 0.0)) < 0:
            entry["negative_ms"] = float(entry["median_ms"])
            entry["median_ms"] = 0.0
    return clamped


def fingerprint_id(fp: Mapping[str, Any]) -> str:
    """Short stable hash of a device fingerprint (stored with every entry)."""
    return hashlib.sha1(json.dumps(dict(fp), sort_keys=True).encode()).hexdigest()[:10]


@dataclass
class LatencyTable:
    """Block costs for one space / resolution / device fingerprint, plus an optional fitted model."""

    space: str
    resolution: int
    fingerprint: dict[str, Any]
    entries: dict[str, dict[str, Any]]
    reference: dict[str, Any] = field(default_factory=dict)
    num_classes: int = 1000
    meta: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] | None = None

    # ---------------------------------------------------------------- lookups
    def cost(self, sig: BlockSig | str) -> float:
        """Cost of one block in reference-ratio units; a missing block says how to add it."""
        key = str(sig)
        try:
            return float(self.entries[key]["ratio_to_ref"])
        except KeyError:
            raise LatencyTableError(
                f"the latency table ({self.space}, {self.resolution}px) has no entry for block '{key}'",
                hint=f"re-profile the space that contains it: `autovit latency profile --space SPACE "
                     f"--resolution {self.resolution} --out TABLE.json`, or time it on the device and add a row "
                     f"with this signature to the CSV for `autovit latency import`") from None

    def __contains__(self, sig: BlockSig | str) -> bool:
        return str(sig) in self.entries

    def missing(self, sigs: Iterable[BlockSig]) -> list[str]:
        return [str(s) for s in sigs if str(s) not in self.entries]

    def kind_counts(self, measured_only: bool = False) -> dict[str, int]:
        """Entries per block kind; with `measured_only`, without the imputed ones."""
        counts: dict[str, int] = {}
        for key, entry in self.entries.items():
            if not (measured_only and entry.get("source") == "imputed"):
                kind = key.split(":", 1)[0]
                counts[kind] = counts.get(kind, 0) + 1
        return counts

    @property
    def layout(self) -> Layout:
        """The space layout the blocks were enumerated with (default layout when not recorded)."""
        lay = self.meta.get("layout")
        return parse_layout(lay) if lay else Layout()

    @property
    def reference_ms(self) -> float:
        return float(self.reference.get("median_ms", 1.0))

    # ---------------------------------------------------------------- compatibility
    def check_compatible(self, space: str | None = None, resolution: int | None = None,
                         fingerprint: Mapping[str, Any] | None = None, force: bool = False) -> list[str]:
        """Raises (or, with `force`, warns) when the table was built for another space, resolution
        or device; returns the list of problems found."""
        problems = []
        if space is not None and space != self.space:
            problems.append(f"it was built for the space '{self.space}', not '{space}'")
        if resolution is not None and int(resolution) != int(self.resolution):
            problems.append(f"it was built at {self.resolution}px, not {resolution}px")
        if fingerprint is not None:
            diff = fingerprint_mismatch(self.fingerprint, dict(fingerprint))
            if diff:
                problems.append("it was measured on another device/runtime (" + "; ".join(diff) + ")")
        if problems and not force:
            raise LatencyTableError("refusing the latency table: " + "; ".join(problems),
                                    hint="profile a table for this space/resolution/device with `autovit latency "
                                         "profile`, or pass --force-table to use it anyway (predictions will be off)")
        for p in problems:
            warnings.warn(f"using a mismatched latency table: {p}", stacklevel=2)
        return problems

    # ---------------------------------------------------------------- I/O
    def to_dict(self) -> dict[str, Any]:
        d = {
            "format": FORMAT, "version": VERSION, "space": self.space, "resolution": self.resolution,
            "num_classes": self.num_classes, "units": "ratio_to_reference", "fingerprint": self.fingerprint,
            "fingerprint_id": fingerprint_id(self.fingerprint), "reference": self.reference, "meta": self.meta,
            "entries": {k: self.entries[k] for k in sorted(self.entries)},
        }
        if self.model is not None:
            d["model"] = self.model
        return d

    def save(self, path: str | Path) -> Path:
        return save_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, d: Any, source: str = "<dict>") -> "LatencyTable":
        if not isinstance(d, Mapping) or d.get("format") != FORMAT:
            raise LatencyTableError(f"{source} is not an autovit latency table",
                                    hint="build one with `autovit latency profile` or `autovit latency import`")
        try:
            version = int(d.get("version", 0))
        except (TypeError, ValueError):
            raise LatencyTableError(f"{source} has an unreadable table version {d.get('version')!r}",
                                    hint="rebuild it with `autovit latency profile`") from None
        if version > VERSION:
            raise LatencyTableError(f"{source} has table version {version}, newer than this autovit "
                                    f"understands ({VERSION})", hint="upgrade autovit")
        if version < VERSION:
            raise LatencyTableError(f"{source} has table version {version}, built for an older block "
                                    f"definition (MBConv at expansion 1 had no expand conv)",
                                    hint="rebuild it with `autovit latency profile`")
        try:
            entries = {str(BlockSig.parse(k)): dict(v) for k, v in d["entries"].items()}
            for k, v in entries.items():
                why = _bad_number(v["ratio_to_ref"], MAX_RATIO)
                if why is None and "median_ms" in v and not math.isfinite(float(v["median_ms"])):
                    why = f"median_ms {float(v['median_ms'])} is not finite"
                if why:
                    raise LatencyTableError(f"{source}: the cost of block '{k}' is unusable ({why})",
                                            hint="block costs must be finite and >= 0; rebuild the table with "
                                                 "`autovit latency profile` or `autovit latency import`")
            ref_ms = d.get("reference", {}).get("median_ms", 1.0)
            why = _bad_number(ref_ms, float("inf")) or ("0 is not > 0" if float(ref_ms) == 0 else None)
            if why:
                raise LatencyTableError(f"{source}: the reference time is unusable ({why})",
                                        hint="rebuild the table with `autovit latency profile`")
            coef = (d.get("model") or {}).get("coef") or {}
            for term, value in coef.items():
                x = float(value)
                if not math.isfinite(x) or abs(x) > 1e6:
                    raise LatencyTableError(f"{source}: the fitted coefficient '{term}' is unusable ({x})",
                                            hint="refit the table with `autovit latency profile`")
            return cls(space=str(d["space"]), resolution=int(d["resolution"]), fingerprint=dict(d["fingerprint"]),
                       entries=entries, reference=dict(d.get("reference", {})),
                       num_classes=int(d.get("num_classes", 1000)), meta=dict(d.get("meta", {})),
                       model=d.get("model"))
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise LatencyTableError(f"{source} is a malformed latency table ({type(err).__name__}: {err})",
                                    hint="rebuild it with `autovit latency profile`") from None

    @classmethod
    def load(cls, path: str | Path) -> "LatencyTable":
        path = Path(path)
        if not path.is_file():
            raise LatencyTableError(f"latency table not found: {path}",
                                    hint="build one with `autovit latency profile --space xxs --out luts/NAME.json`"
                                         " or use a committed table under luts/")
        try:
            data = json.loads(path.read_text())
        except UnicodeDecodeError:
            raise LatencyTableError(f"{path} is not a latency table (a binary file, not JSON text)",
                                    hint="pass the .json written by `autovit latency profile` or `latency import`"
                                    ) from None
        except json.JSONDecodeError as err:
            raise LatencyTableError(f"{path} is not valid JSON ({err.msg} at line {err.lineno})",
                                    hint="pass the .json written by `autovit latency profile` or `latency import`"
                                    ) from None
        return cls.from_dict(data, str(path))


def synthetic_table(space: Any, seed: int = 0, resolution: int | None = None, num_classes: int = 1000,
                    fingerprint: Mapping[str, Any] | None = None) -> LatencyTable:
    """A complete table of `space` with made-up, reproducible costs (tests, examples, dry runs)."""
    import numpy as np

    from autovit.latency.blocks import space_blocks

    rng = np.random.default_rng(seed)
    res = resolution or space.resolution[0]
    fp = dict(fingerprint or {"cpu": "synthetic", "cores": 1, "backend": "ort", "runtime": "synthetic",
                              "threads": 1, "graph_optimization": "all", "resolution": res})
    entries = {}
    for sig in space_blocks(space, res, num_classes):
        ratio = float(rng.uniform(0.001, 0.05))
        entries[str(sig)] = {"median_ms": ratio * 10.0, "iqr_ms": 0.0, "count": 1, "ratio_to_ref": ratio,
                             "copies": sig.copies, "fingerprint": fingerprint_id(fp)}
    return LatencyTable(space=space.name, resolution=res, fingerprint=fp, entries=entries,
                        reference={"median_ms": 10.0}, num_classes=num_classes,
                        meta={"layout": space.layout.to_dict(), "method": "synthetic"})
