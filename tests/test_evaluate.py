"""`evaluate` end to end on a tiny digits BigBiGAN and a tiny digits classifier."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bigbigan.cli.main import main
from bigbigan.config import TrainConfig
from bigbigan.errors import BigBiGANError
from bigbigan.quality import evaluate as evaluate_module
from bigbigan.quality.classifier import ClassifierConfig, train_classifier
from bigbigan.quality.evaluate import default_classifier_path, evaluate
from bigbigan.quality.report import format_report
from bigbigan.training.loop import model_config_for, train

SMALL = {"n": 30, "seed": 3, "batch_size": 16, "probe_train": 200}


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory):
    """The pixel-probe cache in a temporary directory, never the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BIGBIGAN_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(dataset="digits", batch_size=16, steps=2)
    return train(cfg, model_config_for("digits", ch=8), out, progress=False)


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("classifier")
    config = ClassifierConfig(width=8, feature_dim=16)
    train_classifier(
        "digits", None, out, epochs=1, batch_size=32, seed=0, progress=False, config=config
    )
    return out


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("evaluation")


@pytest.fixture(scope="module")
def result(run_dir: Path, classifier_dir: Path, out_dir: Path) -> dict:
    return evaluate(run_dir, classifier_path=classifier_dir, out_dir=out_dir, **SMALL)


def test_sections_keys_and_ranges(result: dict) -> None:
    gen, enc = result["generation"], result["encoder"]
    assert result["dataset"] == "digits" and result["conditional"] is True
    assert result["step"] == 2 and result["seed"] == 3
    for value in (gen["label_accuracy"], gen["real_label_accuracy"]):
        assert 0.0 <= value <= 1.0
    assert gen["fid"] >= 0 and gen["fid_floor"] >= 0
    assert gen["fid"] > gen["fid_floor"]  # 2 training steps are far from the data
    assert gen["n"] == 30 and gen["fid_floor_n"] == 30 and gen["fid_reference_n"] == 359
    for key in ("probe_accuracy", "pixel_probe_accuracy", "reconstruction_label_accuracy"):
        assert 0.0 <= enc[key] <= 1.0
    assert enc["pixel_probe_accuracy"] > 0.5  # digits are nearly linearly separable
    probes = enc["probes"]
    assert list(probes) == ["pixels", "z", "trunk", "trunk_bn_crelu"]
    assert [p["dim"] for p in probes.values()] == [32 * 32, 100, 16, 32]  # ch=8: 4w = 16
    for probe in probes.values():
        keys = {"logistic", "knn1", "knn5", "l2", "holdout_accuracy", "converged", "refined"}
        assert keys <= probe.keys()
        assert all(0.0 <= probe[k] <= 1.0 for k in ("logistic", "knn1", "knn5"))
    assert probes["pixels"]["knn1"] > 0.5
    assert enc["probe_accuracy"] == probes["z"]["logistic"]
    assert enc["probe_protocol"]["version"] == 2 and enc["probe_protocol"]["l2_grid"]
    assert enc["z_rms"] > 0 and enc["prior_rms"] == pytest.approx(0.8796, abs=1e-4)
    assert enc["best_feature_probe"] in ("z", "trunk", "trunk_bn_crelu")
    assert result["missing"] is None and result["seconds"] > 0
    assert 0.0 < enc["reconstruction_mae"] < 1.0
    assert enc["probe_train"] == 200 and enc["probe_test"] == 359
    assert enc["reconstruction_n"] == 30
    assert result["classifier"]["test_accuracy"] == gen["real_label_accuracy"]


def test_label_accuracy_class_by_class(result: dict) -> None:
    """The confusion matrix holds every generated image once, each class equally often, and its
    diagonal gives both the per-class and the overall label accuracy."""
    gen = result["generation"]
    confusion = np.array(gen["confusion"])
    assert confusion.shape == (10, 10) and confusion.sum() == gen["n"]
    assert confusion.sum(axis=1).tolist() == [3] * 10  # n = 30 over 10 digits
    assert gen["label_accuracy_by_class"] == pytest.approx(list(confusion.diagonal() / 3))
    assert np.trace(confusion) / gen["n"] == pytest.approx(gen["label_accuracy"])
    real = gen["real_label_accuracy_by_class"]
    assert len(real) == 10 and all(0.0 <= a <= 1.0 for a in real)
    assert min(real) <= gen["real_label_accuracy"] <= max(real)


def test_unconditional_model_has_no_classes_to_read(
    tiny_unconditional_checkpoint: Path, classifier_dir: Path
) -> None:
    result = evaluate(tiny_unconditional_checkpoint, classifier_path=classifier_dir, **SMALL)
    gen = result["generation"]
    assert gen["label_accuracy"] is None
    assert "confusion" not in gen and "label_accuracy_by_class" not in gen
    assert "most often read as" not in format_report(result)


def test_truncation_moves_generation_only(
    run_dir: Path, classifier_dir: Path, result: dict
) -> None:
    """A lower bound on G's noise gives other images (so other generation figures), is recorded
    and said in the report; the encoder's figures do not use G's noise and stay as they were."""
    assert result["generation"]["truncation"] == 2.0
    assert "noise |z|" not in format_report(result)
    low = evaluate(run_dir, classifier_path=classifier_dir, truncation=0.5, **SMALL)
    assert low["generation"]["truncation"] == 0.5
    assert low["generation"]["fid"] != result["generation"]["fid"]
    assert low["encoder"]["probes"] == result["encoder"]["probes"]
    assert "noise |z| <= 0.5 (training's 2)" in format_report(low).splitlines()[0]


@pytest.mark.parametrize("value", ["0", "2.5", "nan"])
def test_truncation_out_of_range_is_one_line(
    run_dir: Path, classifier_dir: Path, value: str, capsys: pytest.CaptureFixture
) -> None:
    argv = ["evaluate", "--checkpoint", str(run_dir), "--classifier", str(classifier_dir)]
    assert main([*argv, "--truncation", value]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert f"--truncation {float(value):g}: expected 0.1 to 2" in err


def test_files_written(result: dict, out_dir: Path) -> None:
    assert set(result["files"]) == {"evaluation", "reconstructions", "samples"}
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(result["files"].values())
    saved = json.loads((out_dir / evaluate_module.EVALUATION_FILE).read_text())
    assert saved == json.loads(json.dumps(result))
    from PIL import Image

    with Image.open(out_dir / evaluate_module.RECONSTRUCTIONS_FILE) as grid:
        assert grid.height == 2 * (32 + 4) * 2  # two rows of 32-pixel images, padded, x2


def test_deterministic(
    result: dict, run_dir: Path, classifier_dir: Path, out_dir: Path, tmp_path: Path
) -> None:
    again = evaluate(run_dir, classifier_path=classifier_dir, out_dir=tmp_path, **SMALL)
    assert result["encoder"]["pixel_probes_cached"] is False  # the first evaluation fitted them
    assert again["encoder"]["pixel_probes_cached"] is True  # the same pixels: reused

    def timeless(r: dict) -> dict:
        return {**r, "seconds": 0, "encoder": {**r["encoder"], "pixel_probes_cached": None}}

    assert timeless(again) == timeless(result)
    fresh = evaluate(run_dir, classifier_path=classifier_dir, cache_dir=None, **SMALL)
    assert fresh["encoder"]["probes"] == result["encoder"]["probes"]  # the cache changes nothing
    for name in (evaluate_module.RECONSTRUCTIONS_FILE, evaluate_module.SAMPLES_FILE):
        assert (tmp_path / name).read_bytes() == (out_dir / name).read_bytes()


def test_other_seed_changes_the_noise(run_dir: Path, classifier_dir: Path, result: dict) -> None:
    other = evaluate(run_dir, classifier_path=classifier_dir, **{**SMALL, "seed": 4})
    assert "files" not in other
    assert other["generation"]["fid"] != result["generation"]["fid"]
    # the real-data references do not depend on the seed
    assert other["classifier"] == result["classifier"]


def test_format_report(result: dict) -> None:
    text = format_report(result)
    assert "classifier-feature FID" in text and "BN+CReLU(trunk)" in text
    assert f"{result['generation']['fid']:.3f}" in text
    assert f"{result['encoder']['pixel_probe_accuracy']:.4f}" in text
    assert f"{result['encoder']['probes']['trunk']['knn5']:.4f}" in text
    assert f"{result['encoder']['z_rms']:.4f}" in text and "0.8796" in text  # E's z vs the noise
    gen = result["generation"]
    for digit in range(10):  # digits' class names are the digits
        row = next(line for line in text.splitlines() if line.split()[:1] == [str(digit)])
        assert f"{gen['label_accuracy_by_class'][digit]:.4f}" in row
        assert f"{gen['real_label_accuracy_by_class'][digit]:.4f}" in row
        if gen["label_accuracy_by_class"][digit] < 1.0:
            assert "most often read as" in row


def test_without_the_dataset_only_generation_is_measured_and_the_fix_is_named(
    run_dir: Path, classifier_dir: Path, tmp_path: Path
) -> None:
    """A Fashion-MNIST checkpoint on a machine without Debian's dataset: label accuracy only,
    against the classifier's recorded test accuracy, and the result says what to install."""
    import shutil

    run, clf = tmp_path / "run", tmp_path / "classifier"
    shutil.copytree(run_dir, run)
    shutil.copytree(classifier_dir, clf)
    doc = json.loads((run / "checkpoint.json").read_text())
    doc["train"] |= {"dataset": "fashion_mnist", "data_dir": str(tmp_path / "absent")}
    (run / "checkpoint.json").write_text(json.dumps(doc))
    doc = json.loads((clf / "classifier.json").read_text())
    (clf / "classifier.json").write_text(json.dumps({**doc, "dataset": "fashion_mnist"}))
    result = evaluate(run, classifier_path=clf, out_dir=tmp_path / "out", **SMALL)
    assert "apt-get install dataset-fashion-mnist" in result["missing"]
    assert result["encoder"] is None and "fid" not in result["generation"]
    assert 0.0 <= result["generation"]["label_accuracy"] <= 1.0
    assert result["generation"]["real_label_accuracy"] == doc["test_accuracy"]
    assert set(result["files"]) == {"evaluation", "samples"}
    assert "apt-get install dataset-fashion-mnist" in format_report(result)


def test_errors(run_dir: Path, classifier_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(BigBiGANError, match="--n 1"):
        evaluate(run_dir, classifier_path=classifier_dir, n=1)
    with pytest.raises(BigBiGANError, match="no classifier.json"):
        evaluate(run_dir, classifier_path=tmp_path)
    with pytest.raises(BigBiGANError, match=r"checkpoint=.*no checkpoint.json"):
        evaluate(tmp_path, classifier_path=classifier_dir)


def test_default_classifier_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(evaluate_module, "MODELS_DIR", tmp_path)
    with pytest.raises(BigBiGANError, match="pass --classifier"):
        default_classifier_path("digits")
    (tmp_path / "classifier_digits").mkdir()
    (tmp_path / "classifier_digits" / "classifier.json").write_text("{}")
    assert default_classifier_path("digits") == tmp_path / "classifier_digits"


def test_classifier_for_another_dataset_is_refused(
    run_dir: Path, classifier_dir: Path, tmp_path: Path
) -> None:
    doc = json.loads((classifier_dir / "classifier.json").read_text())
    doc["dataset"] = "mnist"
    other = tmp_path / "classifier"
    other.mkdir()
    (other / "classifier.json").write_text(json.dumps(doc))
    (other / "classifier.safetensors").write_bytes(
        (classifier_dir / "classifier.safetensors").read_bytes()
    )
    with pytest.raises(BigBiGANError, match="trained on mnist, the checkpoint on digits"):
        evaluate(run_dir, classifier_path=other, **SMALL)


def test_cli_names_the_checkpoint_flag(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The library names the parameter; the CLI edge names the flag that set it."""
    assert main(["evaluate", "--checkpoint", str(tmp_path), "--classifier", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert f"--checkpoint {tmp_path}: no checkpoint.json found" in err


def test_ema_copies_are_evaluated_unless_live_weights(classifier_dir: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(dataset="digits", batch_size=16, steps=2)
    model_cfg = model_config_for("digits", ch=8, ema=True, stochastic_encoder=True)
    run = train(cfg, model_cfg, tmp_path / "run", progress=False)
    small = {**SMALL, "n": 20, "probe_train": 100}
    ema = evaluate(run, classifier_path=classifier_dir, **small)
    live = evaluate(run, classifier_path=classifier_dir, live_weights=True, **small)
    assert ema["ema"] is True and live["ema"] is False
    assert ema["generation"]["fid"] != live["generation"]["fid"]
    assert "EMA weights" in format_report(ema) and "EMA weights" not in format_report(live)
