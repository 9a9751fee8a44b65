"""One header for every JSON document (documents.py): written atomically, read back, the first
layout's `schema`/`schema_version` still read, and the shipped models still load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bigbigan.documents import (
    document,
    read_document,
    read_sidecar,
    sidecar_path,
    write_document,
)
from bigbigan.errors import BigBiGANError

MODELS = Path(__file__).parents[1] / "models"


def test_header_comes_first_and_round_trips(tmp_path):
    path = write_document(tmp_path / "a.json", "bigbigan-test", {"x": 1}, version=3)
    text = path.read_text()
    assert text.startswith('{\n  "format": "bigbigan-test",\n  "version": 3,\n  "x": 1')
    assert read_document(path, "bigbigan-test", (3,)) == {
        "format": "bigbigan-test",
        "version": 3,
        "x": 1,
    }
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temp file left behind


def test_header_is_not_overridden_by_the_body():
    with pytest.raises(ValueError, match="header keys"):
        document("bigbigan-test", {"version": 2})
    with pytest.raises(ValueError, match="header keys"):
        document("bigbigan-test", {"schema": "x"})
    with pytest.raises(ValueError, match="must start with"):
        document("other-test", {})


def test_old_header_still_reads(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"schema": "bigbigan-compare", "schema_version": 1, "a": 2}))
    doc = read_document(path, "bigbigan-compare", (1,))
    assert doc == {"format": "bigbigan-compare", "version": 1, "a": 2}


@pytest.mark.parametrize(
    "text, kind, versions, message",
    [
        ("{not json", None, None, "not valid JSON"),
        ("[1]", None, None, "expected a JSON object, found list"),
        ('{"format": "bigbigan-a", "version": 1}', "bigbigan-b", None, "expected format"),
        ('{"format": "bigbigan-a", "version": 2}', "bigbigan-a", (1,), "version 2"),
        ('{"format": "bigbigan-a"}', "bigbigan-a", (1,), "version None"),
    ],
)
def test_bad_documents_are_one_line(tmp_path, text, kind, versions, message):
    path = tmp_path / "d.json"
    path.write_text(text)
    with pytest.raises(BigBiGANError, match=message) as e:
        read_document(path, kind, versions)
    assert str(e.value).startswith(f"{path}: ") and "\n" not in str(e.value)
    with pytest.raises(BigBiGANError, match="cannot read"):
        read_document(tmp_path / "missing.json")


def test_one_sidecar_name_and_reader(tmp_path):
    assert sidecar_path(tmp_path / "x.bin") == tmp_path / "x.bin.json"
    assert sidecar_path("G.onnx") == Path("G.onnx.json")
    assert read_sidecar(tmp_path / "G.onnx") is None
    with pytest.raises(BigBiGANError, match="no sidecar G.onnx.json; export it"):
        read_sidecar(tmp_path / "G.onnx", missing="export it")
    (tmp_path / "x.bin.json").write_text('{"dtype": "float32", "shape": [2]}')  # by hand
    assert read_sidecar(tmp_path / "x.bin") == {"dtype": "float32", "shape": [2]}


def test_shipped_models_still_load():
    """The first shipped checkpoint and the classifier's JSON, written before documents.py, read
    as they are (their digests are not rewritten)."""
    from bigbigan.quality import classifier
    from bigbigan.training import checkpoint

    ckpt = checkpoint.read(MODELS / "bigbigan_fashion_mnist_first")
    assert ckpt.model.num_classes == 10 and ckpt.step == 7183
    doc = read_document(MODELS / "classifier_fashion_mnist" / "classifier.json")
    assert doc["format"] == classifier.FORMAT and doc["version"] == classifier.VERSION
    model, _ = classifier.load(MODELS / "classifier_fashion_mnist")
    assert model is not None


def test_written_checkpoint_keeps_the_header_first(tmp_path, tiny_checkpoint):
    """A checkpoint written now has the header first, as the first shipped (version 1) one."""
    shipped = json.loads((MODELS / "bigbigan_fashion_mnist_first" / "checkpoint.json").read_text())
    written = json.loads((Path(tiny_checkpoint) / "checkpoint.json").read_text())
    assert list(written)[:2] == list(shipped)[:2] == ["format", "version"]
