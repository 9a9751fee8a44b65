"""The evaluation classifier: shapes, training on digits, save/load and its failure modes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bigbigan.cli.main import main
from bigbigan.errors import BigBiGANError
from bigbigan.fsutil import sha256_file
from bigbigan.quality import classifier
from bigbigan.quality.classifier import Classifier, ClassifierConfig, train_classifier

TINY = ClassifierConfig(width=8, feature_dim=16)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> classifier.ClassifierReport:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("classifier")
    return train_classifier(
        "digits", None, out, epochs=1, batch_size=32, seed=0, progress=False, config=TINY
    )


def test_shapes_one_and_three_channels() -> None:
    for channels in (1, 3):
        model = Classifier(ClassifierConfig(channels=channels)).eval()
        x = torch.rand(4, channels, 32, 32)
        assert model(x).shape == (4, 10)
        assert model.features(x).shape == (4, 128)
        assert (model.features(x) >= 0).all()  # after the ReLU


def test_training_on_digits_learns(trained: classifier.ClassifierReport) -> None:
    assert trained.dataset == "digits" and trained.epochs == 1
    assert len(trained.history) == 1
    assert trained.test_accuracy > 0.3  # chance is 0.1
    files = {p.name for p in trained.path.iterdir()}
    assert {classifier.CONFIG_FILE, classifier.WEIGHTS_FILE} <= files


def test_save_load_round_trip(trained: classifier.ClassifierReport, tmp_path: Path) -> None:
    model, info = classifier.load(trained.path)
    assert info.dataset == "digits" and info.config == TINY
    assert info.test_accuracy == trained.test_accuracy
    x = torch.rand(5, 1, 32, 32)
    classifier.save(tmp_path, model, dataset="digits")
    again, _ = classifier.load(tmp_path / classifier.CONFIG_FILE)  # the JSON path works too
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)
        torch.testing.assert_close(again.features(x), model.features(x), rtol=0, atol=0)


def test_truncated_weights_are_an_error(tmp_path: Path) -> None:
    classifier.save(tmp_path, Classifier(TINY), dataset="digits")
    weights = tmp_path / classifier.WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(BigBiGANError, match="truncated or replaced"):
        classifier.load(tmp_path)


def test_unreadable_weights_are_an_error(tmp_path: Path) -> None:
    classifier.save(tmp_path, Classifier(TINY), dataset="digits")
    weights = tmp_path / classifier.WEIGHTS_FILE
    weights.write_bytes(b"not safetensors")
    doc = json.loads((tmp_path / classifier.CONFIG_FILE).read_text())
    doc["files"][classifier.WEIGHTS_FILE] = sha256_file(weights)  # digest matches
    (tmp_path / classifier.CONFIG_FILE).write_text(json.dumps(doc))
    with pytest.raises(BigBiGANError, match="not a readable safetensors file"):
        classifier.load(tmp_path)


def test_config_mismatch_is_an_error(tmp_path: Path) -> None:
    classifier.save(tmp_path, Classifier(TINY), dataset="digits")
    doc = json.loads((tmp_path / classifier.CONFIG_FILE).read_text())
    doc["config"]["width"] = 16
    (tmp_path / classifier.CONFIG_FILE).write_text(json.dumps(doc))
    with pytest.raises(BigBiGANError, match="has shape .* expects"):
        classifier.load(tmp_path)


def test_bad_json_and_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(BigBiGANError, match="no classifier.json found"):
        classifier.load(tmp_path)
    (tmp_path / classifier.CONFIG_FILE).write_text("{not json")
    with pytest.raises(BigBiGANError, match="not valid JSON"):
        classifier.load(tmp_path)
    (tmp_path / classifier.CONFIG_FILE).write_text(json.dumps({"format": "other"}))
    with pytest.raises(BigBiGANError, match="expected format 'bigbigan-classifier'"):
        classifier.load(tmp_path)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(BigBiGANError, match="--epochs 0"):
        train_classifier("digits", None, tmp_path, epochs=0, batch_size=8, seed=0, progress=False)
    with pytest.raises(BigBiGANError, match="--dataset"):
        train_classifier("nope", None, tmp_path, epochs=1, batch_size=8, seed=0, progress=False)


def test_cli_reports_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    argv = ["train-classifier", "--dataset", "nope", "--out", str(tmp_path / "c"), "--epochs", "1"]
    assert main(argv) == 1
    assert "error: --dataset 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
