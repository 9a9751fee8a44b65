"""What passes in `bigbigan compare` and `bigbigan layerwise`: `--atol`/`--rtol` globally or
per name, and the statistic the absolute difference is reduced with before the check
(`bigbigan.compare.statistics.check_tolerance` does the arithmetic)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from bigbigan.compare.statistics import STATISTICS
from bigbigan.errors import BigBiGANError


@dataclass(frozen=True)
class Tolerances:
    """What passes: `atol`/`rtol` for every output, overridden per name (an output, a file's
    label or stem, or a layer), and the statistic the absolute difference is reduced with
    (see `bigbigan.compare.statistics.check_tolerance`)."""

    atol: float = 0.0
    rtol: float = 0.0
    statistic: str = "elementwise"
    quantile: float = 0.99
    atol_by_name: dict[str, float] = field(default_factory=dict)
    rtol_by_name: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.statistic not in STATISTICS:
            raise BigBiGANError(
                f"--statistic {self.statistic}: expected one of {', '.join(STATISTICS)}"
            )
        if not 0.0 <= self.quantile <= 1.0:
            raise BigBiGANError(f"--quantile {self.quantile}: expected a number in [0, 1]")

    def lookup(self, *names: str) -> tuple[float, float]:
        """(atol, rtol) for something known by `names`; the first name with an override wins."""
        atol = next((self.atol_by_name[n] for n in names if n in self.atol_by_name), self.atol)
        rtol = next((self.rtol_by_name[n] for n in names if n in self.rtol_by_name), self.rtol)
        return atol, rtol

    def check_names(self, known: set[str]) -> None:
        """Every per-name override must name something being compared (a typo is an error)."""
        for flag, table in (("--atol", self.atol_by_name), ("--rtol", self.rtol_by_name)):
            for name in table:
                if name not in known:
                    shown = ", ".join(sorted(known)[:12]) + (", ..." if len(known) > 12 else "")
                    raise BigBiGANError(
                        f"{flag} {name}:{table[name]:g}: nothing compared is named {name!r} "
                        f"(names: {shown})"
                    )


def _parse_tolerance(flag: str, specs: Sequence[str]) -> tuple[float | None, dict[str, float]]:
    """`["1e-5", "images:1e-4,z:1e-3"]` -> (1e-5, {"images": 1e-4, "z": 1e-3})."""
    value: float | None = None
    by_name: dict[str, float] = {}
    for spec in specs:
        for entry in str(spec).split(","):
            entry = entry.strip()
            name, sep, number = entry.rpartition(":")
            try:
                tol = float(number)
            except ValueError:
                tol = math.nan
            if not entry or (sep and not name) or not (tol >= 0 and math.isfinite(tol)):
                raise BigBiGANError(
                    f"{flag} {entry or spec}: expected a non-negative number or NAME:NUMBER "
                    f"(e.g. {flag} 1e-5 or {flag} images:1e-4)"
                )
            if sep:
                if name in by_name:
                    raise BigBiGANError(f"{flag}: {name} is given twice")
                by_name[name] = tol
            else:
                if value is not None:
                    raise BigBiGANError(f"{flag}: a global tolerance is given twice")
                value = tol
    return value, by_name


def parse_tolerances(
    atol: Sequence[str] = (),
    rtol: Sequence[str] = (),
    *,
    statistic: str = "elementwise",
    quantile: float = 0.99,
    default_atol: float = 0.0,
    default_rtol: float = 0.0,
) -> Tolerances:
    """`--atol`/`--rtol` values (each `NUMBER` or `NAME:NUMBER`, repeatable or comma-separated)."""
    global_atol, atol_by_name = _parse_tolerance("--atol", atol)
    global_rtol, rtol_by_name = _parse_tolerance("--rtol", rtol)
    return Tolerances(
        atol=default_atol if global_atol is None else global_atol,
        rtol=default_rtol if global_rtol is None else global_rtol,
        statistic=statistic,
        quantile=quantile,
        atol_by_name=atol_by_name,
        rtol_by_name=rtol_by_name,
    )


def failure_line(t: Tolerances, needed: float, atol: float, rtol: float) -> str:
    """Why a pair failed `t` at (`atol`, `rtol`), `needed` being the smallest passing atol."""
    what = {"elementwise": "elementwise |diff| - rtol*|ref|", "quantile": f"q{t.quantile:g}"}
    stat = what.get(t.statistic, f"{t.statistic} |diff|")
    if math.isnan(needed):
        return f"{stat}: NaN in the difference (no tolerance passes)"
    return f"{stat} {needed:.4g} > atol {atol:g}" + (
        f" (rtol {rtol:g})" if t.statistic == "elementwise" else ""
    )
