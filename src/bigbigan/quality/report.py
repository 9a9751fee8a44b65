"""`bigbigan evaluate`'s table for a person: each model number beside the reference it should
approach (the JSON result of `quality.evaluate.evaluate` is the record; this only formats it)."""

from __future__ import annotations

from typing import Any

from bigbigan.classes import class_names
from bigbigan.quality.probes import PROBE_FEATURES
from bigbigan.training.sampling import TRUNCATION

Row = tuple[str, str, str, str, str]  # section, metric, model, reference, note


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_report(result: dict[str, Any]) -> str:
    """The human-readable table: each model number beside the reference it should approach."""
    gen, enc, clf = result["generation"], result["encoder"], result["classifier"]
    kind = "conditional" if result["conditional"] else "unconditional"
    rows = _generation_rows(gen, result["conditional"], result["dataset"])
    if enc is not None:
        rows += _encoder_rows(enc)
    header = ("", "metric", "model", "reference", "")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]

    def line(r: tuple[str, ...]) -> str:
        cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1])]
        cells += [r[2].rjust(widths[2]), r[3].rjust(widths[3]), r[4]]
        return "  ".join(cells).rstrip()

    lines = [
        f"{result['checkpoint']} (step {result['step']}): {result['dataset']}, {kind}"
        f"{', EMA weights' if result['ema'] else ''}, n={gen['n']}, seed {result['seed']}"
        + _truncation_note(gen),
        f"classifier {clf['path']} (test accuracy {_fmt(clf['test_accuracy'])}, "
        f"{clf['feature_dim']}-d features)",
        "",
        line(header),
        *[line(r) for r in rows],
    ]
    if enc is not None:
        lines += [
            "",
            f"probes: fitted on {enc['probe_train']} training images (L2 chosen on a held-out "
            f"sixth), scored on {enc['probe_test']} test images; reference: raw pixels",
        ]
    if result["missing"]:
        lines += ["", result["missing"]]
    if "files" in result:
        lines += ["", "wrote " + ", ".join(result["files"].values())]
    lines.append(f"took {result['seconds']:.0f} s")
    return "\n".join(lines)


def _truncation_note(gen: dict[str, Any]) -> str:
    """Said only when G's noise was bounded otherwise than in training: every generation figure
    depends on it."""
    truncation = gen.get("truncation", TRUNCATION)
    return (
        ""
        if truncation == TRUNCATION
        else f", noise |z| <= {truncation:g} (training's {TRUNCATION:g})"
    )


def _generation_rows(gen: dict[str, Any], conditional: bool, dataset: str) -> list[Row]:
    """Label accuracy of generated images (overall, then class by class), and the FID beside its
    floor when it was measured."""
    rows: list[Row] = [
        (
            "generation",
            "label accuracy of G(z, y)",
            _fmt(gen["label_accuracy"]),
            _fmt(gen["real_label_accuracy"]),
            "classifier on real test images"
            + ("" if conditional else " (unconditional: no labels)"),
        ),
        *_class_rows(gen, dataset),
    ]
    if "fid" in gen:
        rows.append(
            (
                "",
                "classifier-feature FID",
                _fmt(gen["fid"], 3),
                _fmt(gen["fid_floor"], 3),
                f"floor: {gen['fid_floor_n']} real train vs {gen['fid_reference_n']} real test",
            )
        )
    return rows


def _class_rows(gen: dict[str, Any], dataset: str) -> list[Row]:
    """One row a class: G's label accuracy on it beside the classifier's on real images of it,
    and the class G's images of it are most often read as instead."""
    by_class = gen.get("label_accuracy_by_class")
    if by_class is None:  # unconditional
        return []
    names = class_names(dataset, len(by_class))
    real = gen.get("real_label_accuracy_by_class") or [None] * len(by_class)
    rows: list[Row] = []
    for k, (name, counts) in enumerate(zip(names, gen["confusion"], strict=True)):
        wrong = [(c, j) for j, c in enumerate(counts) if j != k and c > 0]
        note = ""
        if wrong:
            count, j = max(wrong)
            note = f"most often read as {names[j]} ({count} of {sum(counts)})"
        rows.append(("", f"  {name}", _fmt(by_class[k]), _fmt(real[k]), note))
    return rows


def _encoder_rows(enc: dict[str, Any]) -> list[Row]:
    """Each feature's probes beside the raw pixels', then the reconstructions."""
    pixels = enc["probes"]["pixels"]

    def triple(p: dict[str, Any]) -> str:
        return f"{p['logistic']:.4f} / {p['knn1']:.4f} / {p['knn5']:.4f}"

    rows: list[Row] = []
    for i, (name, label) in enumerate(PROBE_FEATURES.items()):
        probe = enc["probes"][name]
        rows.append(
            (
                "encoder" if i == 0 else "",
                f"{label} ({probe['dim']}-d): logistic / 1-NN / 5-NN",
                triple(probe),
                "" if name == "pixels" else triple(pixels),
                f"L2 {probe['l2']:g}" + ("" if probe["converged"] else ", NOT converged"),
            )
        )
    return rows + [
        (
            "",
            "RMS of E's z on real test images",
            _fmt(enc["z_rms"]),
            _fmt(enc["prior_rms"]),
            "G's noise (G cannot invert a z far from it)",
        ),
        (
            "",
            "reconstruction MAE |x - G(E(x))|",
            _fmt(enc["reconstruction_mae"]),
            "",
            f"{enc['reconstruction_n']} real test images, pixels in [0, 1]",
        ),
        (
            "",
            "label accuracy of G(E(x), y)",
            _fmt(enc["reconstruction_label_accuracy"]),
            _fmt(enc["real_label_accuracy"]),
            "classifier on real test images",
        ),
    ]
