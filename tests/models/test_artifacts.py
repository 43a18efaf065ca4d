from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from models.artifacts import ActiveModels, ArtifactError, ModelStore, load_artifact
from models.autoencoder import resolve_device
from models.base import RULES_ONLY
from models.training import TrainingConfig, train
from operators import metrics
from operators.features import FEATURE_NAMES

SMALL = TrainingConfig(epochs=3, n_estimators=20, device="cpu")


@pytest.fixture(scope="module")
def store(tmp_path_factory, training_events) -> tuple[ModelStore, str]:
    root = tmp_path_factory.mktemp("models")
    result = train(training_events[:4000], root, SMALL, activate=True)
    return ModelStore(root), result.version


def copy_version(store: ModelStore, version: str, tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / version
    shutil.copytree(store.root / version, target)
    return target


def test_artifact_round_trips_with_metadata(store, training_matrix):
    s, version = store
    assert s.versions() == [version] and s.active() == version
    models = load_artifact(s.root / version, device="cpu")
    assert models.version == version and models.columns == FEATURE_NAMES
    assert set(models.scorers) == {"isolation_forest", "autoencoder"}
    scores = models.score(training_matrix[:100])
    assert all(v.shape == (100,) for v in scores.values())
    meta = json.loads((s.root / version / "metadata.json").read_text())
    assert meta["features"] == list(FEATURE_NAMES)
    assert meta["training"]["events"] == 4000 and meta["training"]["users"] > 0
    assert set(meta["files"]) == {
        "autoencoder.pt",
        "autoencoder.json",
        "isolation_forest.npz",
        "isolation_forest.json",
    }


def test_version_is_a_content_hash(tmp_path, training_events):
    a = train(training_events[:2000], tmp_path / "a", SMALL).version
    b = train(training_events[:2000], tmp_path / "b", SMALL).version
    c = train(training_events[:2500], tmp_path / "c", SMALL).version
    assert a == b != c


@pytest.mark.parametrize("victim", ["isolation_forest.npz", "autoencoder.pt", "autoencoder.json"])
def test_tampered_file_is_refused(store, tmp_path, victim):
    s, version = store
    path = copy_version(s, version, tmp_path)
    data = bytearray((path / victim).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (path / victim).write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=f"checksum mismatch for {victim}"):
        load_artifact(path, device="cpu")


def test_missing_or_corrupt_metadata_is_refused(store, tmp_path):
    s, version = store
    path = copy_version(s, version, tmp_path)
    (path / "metadata.json").write_text("{not json")
    with pytest.raises(ArtifactError, match=r"metadata\.json: unreadable"):
        load_artifact(path)
    with pytest.raises(ArtifactError, match=r"no metadata\.json"):
        load_artifact(tmp_path / "nowhere")


def test_artifact_with_unknown_features_is_refused(store, tmp_path):
    s, version = store
    path = copy_version(s, version, tmp_path)
    meta = json.loads((path / "metadata.json").read_text())
    meta["features"][0] = "shoe_size"
    (path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="feature 'shoe_size' is not known"):
        load_artifact(path)


def test_pickled_code_in_weights_is_not_executed(store, tmp_path):
    s, version = store
    path = copy_version(s, version, tmp_path)

    class Evil:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    torch.save({"x": Evil()}, path / "autoencoder.pt")
    meta = json.loads((path / "metadata.json").read_text())
    import hashlib

    meta["files"]["autoencoder.pt"] = hashlib.sha256((path / "autoencoder.pt").read_bytes()).hexdigest()
    (path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="cannot load autoencoder"):
        load_artifact(path, device="cpu")
    assert not (tmp_path / "pwned").exists()


def test_hot_swap_switches_whole_model_sets_on_the_refresh(tmp_path, training_events):
    root = tmp_path / "m"
    v1 = train(training_events[:2000], root, SMALL, activate=True).version
    now = {"t": 0.0}
    active = ActiveModels(root, "cpu", refresh_s=5.0, clock=lambda: now["t"])
    assert active().version == v1
    v2 = train(training_events[:2500], root, SMALL).version
    ModelStore(root).activate(v2)
    now["t"] = 4.0
    assert active().version == v1  # not re-read before refresh_s
    now["t"] = 5.0
    assert active().version == v2
    assert metrics.MODEL_INFO.labels(v2)._value.get() == 1
    assert metrics.MODEL_INFO.labels(v1)._value.get() == 0


def test_broken_new_version_keeps_the_current_models(tmp_path, training_events):
    root = tmp_path / "m"
    v1 = train(training_events[:2000], root, SMALL, activate=True).version
    now = {"t": 0.0}
    active = ActiveModels(root, "cpu", refresh_s=1.0, clock=lambda: now["t"])
    assert active().version == v1
    (root / "active").write_text("doesnotexist\n")
    failures = metrics.MODEL_LOAD_FAILURES._value.get()
    now["t"] = 2.0
    assert active().version == v1
    assert metrics.MODEL_LOAD_FAILURES._value.get() == failures + 1


def test_no_active_version_means_rules_only(tmp_path):
    assert ActiveModels(tmp_path, "cpu")() is RULES_ONLY
    with pytest.raises(ArtifactError):
        ModelStore(tmp_path).activate("nope")


def test_device_selection():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device must be auto, cpu or cuda"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_scores_match_cpu_scores(store, training_matrix):
    s, version = store
    cpu = load_artifact(s.root / version, device="cpu").scorers["autoencoder"]
    gpu = load_artifact(s.root / version, device="cuda").scorers["autoencoder"]
    assert str(gpu.describe()["device"]).startswith("cuda")
    np.testing.assert_allclose(gpu.score_batch(training_matrix), cpu.score_batch(training_matrix), atol=0.2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_cuda_scorer_scores_batches_under_gpu_min_rows_on_the_cpu(store, training_matrix):
    s, version = store
    rows = len(training_matrix)
    gpu = load_artifact(s.root / version, device="cuda", gpu_min_rows=rows).scorers["autoencoder"]
    on_gpu = gpu.score_batch(training_matrix)
    assert gpu._cpu_net is None
    on_cpu = gpu.score_batch(training_matrix[: rows - 1])
    assert gpu._cpu_net is not None and next(gpu._cpu_net.parameters()).device.type == "cpu"
    assert next(gpu.net.parameters()).device.type == "cuda"
    np.testing.assert_allclose(on_cpu, on_gpu[: rows - 1], atol=0.2)


def test_active_models_load_the_autoencoder_with_gpu_min_rows(store, training_matrix):
    s, version = store
    ae = ActiveModels(s.root, "cpu", gpu_min_rows=10**6)().scorers["autoencoder"]
    assert ae.gpu_min_rows == 10**6
    cpu = load_artifact(s.root / version, device="cpu").scorers["autoencoder"]
    np.testing.assert_array_equal(ae.score_batch(training_matrix), cpu.score_batch(training_matrix))
    assert ae._cpu_net is None, "a scorer on the CPU needs no copy of its network"


def test_prune_keeps_the_newest_versions_and_never_the_active_or_challenger(store, tmp_path):
    s, version = store
    root = tmp_path / "models"
    root.mkdir()
    for i in range(6):
        copy = root / f"v{i}"
        shutil.copytree(s.root / version, copy)
        os.utime(copy / "metadata.json", (1_000 + i, 1_000 + i))
    (root / "active").write_text("v0\n")
    (root / "challenger").write_text("v1\n")
    removed = ModelStore(root).prune(keep=2)
    assert sorted(removed) == ["v2", "v3"]
    assert ModelStore(root).versions() == ["v0", "v1", "v4", "v5"]
