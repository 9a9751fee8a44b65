"""The pipeline's report: one JSON document (`report.json`, written atomically under the
documents header) and its markdown (`report.md`), for a checkpoint's chain (every stage against
PyTorch eager) and for a model the user brings (every stage against their reference files)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bigbigan.documents import document
from bigbigan.fsutil import write_text
from bigbigan.pipeline.stages import GRID_FILE, Stage

REPORT_FORMAT = "bigbigan-pipeline"


def write_report(out: Path, report: dict[str, Any], markdown: str) -> None:
    """`report.json` (the document as built) and `report.md`, each atomically."""
    write_text(out / "report.json", json.dumps(report, indent=2) + "\n")
    write_text(out / "report.md", markdown)


def _timing(stage: Stage) -> dict[str, float]:
    return {
        "images_per_s": round(stage.result.images_per_s, 2),
        "mean_ms": round(stage.result.mean_ms_without_first, 3),
        "load_s": round(stage.result.load_seconds, 3),
    }


def _where(stage: Stage) -> dict[str, str]:
    return {
        "name": stage.name,
        "model": str(stage.model),
        "output": str(stage.result.outputs[0]),
    }


def build_report(
    stages: Sequence[Stage], pairs: Sequence[Any], notes: dict[str, str], **settings: Any
) -> dict[str, Any]:
    """A checkpoint's chain: each stage's difference from PyTorch eager (the first) and timing."""
    diffs = {p.name: p.stats for p in pairs}
    rows = []
    for stage in stages:
        stats = diffs.get(stage.name, {"mean_abs_diff": 0.0, "max_abs_diff": 0.0})
        rows.append(
            {
                **_where(stage),
                "mean_abs_diff": stats["mean_abs_diff"],
                "max_abs_diff": stats["max_abs_diff"],
                **_timing(stage),
            }
        )
    body = {"settings": settings, "stages": rows, "notes": notes, "grid": GRID_FILE}
    return document(REPORT_FORMAT, body)


def build_model_report(
    stages: Sequence[Stage],
    by_reference: dict[str, Sequence[Any]],
    references: dict[str, str],
    notes: dict[str, str],
    assumed: list[str],
    settings: dict[str, Any],
) -> dict[str, Any]:
    """A brought model's chain: each stage against every reference file (`vs_<name>`)."""
    rows = []
    for stage in stages:
        row: dict[str, Any] = _where(stage)
        for ref, pairs in by_reference.items():
            pair = next(p for p in pairs if p.name == stage.name)
            row[f"vs_{ref}"] = {k: pair.stats[k] for k in ("mean_abs_diff", "max_abs_diff")}
            row[f"vs_{ref}"]["passed"] = pair.passed
        rows.append(row | _timing(stage))
    body = {
        "settings": settings,
        "references": references,
        "assumed": assumed,
        "stages": rows,
        "notes": notes,
        "grid": GRID_FILE,
    }
    return document(REPORT_FORMAT, body)


def failed_stages(report: dict[str, Any]) -> list[str]:
    """The stages of a brought model's report that failed against any reference."""
    return sorted(
        {
            row["name"]
            for row in report["stages"]
            for k, v in row.items()
            if k.startswith("vs_") and v["passed"] is False
        }
    )


def _notes_and_grid(report: dict[str, Any], what: str) -> list[str]:
    lines = []
    for target, note in report["notes"].items():
        lines += ["", f"**{target}**: `{note}`"]
    return [*lines, "", f"![first 8 images of every {what}]({report['grid']})", ""]


def format_markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    lines = [
        "# bigbigan pipeline report",
        "",
        f"Batch {s['batch']}, {s['loop']} timed loops (first excluded from the mean), "
        f"device {s['device']}. Differences are against the PyTorch eager reference "
        "on the same input files.",
        "",
        "| stage | model | mean abs diff | max abs diff | images/s | ms / batch | load s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in report["stages"]:
        lines.append(
            f"| {r['name']} | `{Path(r['model']).name}` | {r['mean_abs_diff']:.3g} | "
            f"{r['max_abs_diff']:.3g} | {r['images_per_s']:.1f} | {r['mean_ms']:.2f} | "
            f"{r['load_s']:.2f} |"
        )
    return "\n".join(lines + _notes_and_grid(report, "stage"))


def format_model_markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    refs = list(report["references"])
    lines = [
        "# bigbigan pipeline report",
        "",
        f"Model `{s['model']}`, inputs `{s['inputs']}`, batch {s['batch']}, {s['loop']} timed "
        f"loops (first excluded from the mean), device {s['device']}. Differences are mean / max "
        "abs against the user's reference files: "
        + ", ".join(f"{n} = `{p}`" for n, p in report["references"].items())
        + ".",
        "",
        "| stage | model | "
        + " | ".join(f"vs {r} (mean / max)" for r in refs)
        + " | images/s | ms / batch |",
        "|---|---|" + "---:|" * (len(refs) + 2),
    ]
    for r in report["stages"]:
        diffs = " | ".join(
            f"{r['vs_' + ref]['mean_abs_diff']:.3g} / {r['vs_' + ref]['max_abs_diff']:.3g}"
            for ref in refs
        )
        lines.append(
            f"| {r['name']} | `{Path(r['model']).name}` | {diffs} | {r['images_per_s']:.1f} | "
            f"{r['mean_ms']:.2f} |"
        )
    lines += ["", *(f"assumed: {a}" for a in report["assumed"])]
    return "\n".join(lines + _notes_and_grid(report, "file"))
