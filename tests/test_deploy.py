"""A trained model leaves the lab: ``reffakd export``, ``predict`` and ``bench``.

The exported ONNX file and ``torch.export`` program must compute what the PyTorch model computes on
real Fashion-MNIST test images given as uint8 pixels (normalisation inside); ``predict`` must read image
files as the training data was read; bad inputs give one line each and leave nothing half-written.
"""

from __future__ import annotations

import csv
import gzip
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from conftest import FASHION_MNIST_CLASSES
from reffakd.cli import main
from reffakd.data.dataset import resize_uint8
from reffakd.data.fashion_mnist import read_idx
from reffakd.deploy import load_network, preprocessing
from reffakd.errors import ReffAKDError
from reffakd.models import create_model, save_checkpoint

MEAN, STD = [0.286], [0.353]  # Fashion-MNIST's training statistics, as the loader computes them (rounded)


@pytest.fixture(scope="module")
def test_images(real_fmnist: Path, tmp_path_factory: pytest.TempPathFactory) -> torch.Tensor:
    """The first 64 real Fashion-MNIST test images, 28x28 uint8 as the IDX file holds them."""
    raw = tmp_path_factory.mktemp("idx") / "t10k-images-idx3-ubyte"
    raw.write_bytes(gzip.decompress((real_fmnist / "t10k-images-idx3-ubyte.gz").read_bytes()))
    return read_idx(raw, 3)[:64].unsqueeze(1)


def checkpoint(folder: Path, name: str, seed: int = 0) -> tuple[Path, torch.nn.Module]:
    """A model with non-trivial batch-norm statistics, saved as `reffakd train` saves one."""
    torch.manual_seed(seed)
    model = create_model(name, num_classes=10, in_channels=1, image_size=(32, 32))
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, 1, 32, 32) * 1.5 + 0.3)
    meta = {"model": name, "num_classes": 10, "in_channels": 1, "image_size": [32, 32], "dataset": "fashion-mnist",
            "class_names": list(FASHION_MNIST_CLASSES), "mean": MEAN, "std": STD}  # fmt: skip
    path = save_checkpoint(folder / f"{name}.safetensors", model, meta)
    return path, model.eval()


def reference(model: torch.nn.Module, pixels: torch.Tensor) -> np.ndarray:
    """What evaluation computes: pixels / 255, normalised, through the model."""
    with torch.no_grad():
        return model((pixels.float() / 255.0 - MEAN[0]) / STD[0]).numpy()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path, torch.nn.Module]]:
    """LeNet-5 and a CIFAR ResNet, each as a checkpoint and exported by the CLI: name -> (checkpoint, folder, model)."""
    folder = tmp_path_factory.mktemp("exported")
    found = {}
    for name in ("lenet5", "resnet8"):
        path, model = checkpoint(folder, name)
        out = folder / f"{name}-export"
        assert main(["export", "--checkpoint", str(path), "--out", str(out)]) == 0
        found[name] = (path, out, model)
    return found


@pytest.mark.real_data
def test_onnx_and_torch_export_equal_pytorch_on_real_uint8_images(
    test_images: torch.Tensor, exported: dict[str, tuple[Path, Path, torch.nn.Module]]
) -> None:
    import onnxruntime as ort

    pixels = test_images  # raw 28x28, as the IDX file holds them: the loader's 28 -> 32 is inside the graph
    for name, (_, out, model) in exported.items():
        assert sorted(p.name for p in out.iterdir()) == ["model.json", "model.onnx", "model.pt2"]
        info = json.loads((out / "model.json").read_text())
        assert info["class_names"] == list(FASHION_MNIST_CLASSES) and info["model"] == name
        assert info["input"]["dtype"] == "uint8" and info["normalization"] == {
            "baked_in": True,
            "mean": MEAN,
            "std": STD,
        }
        assert info["input"]["shape"] == ["batch", 1, 28, 28] and info["network_input"]["resized_inside"]
        expected = reference(model, resize_uint8(pixels, (32, 32)))
        session = ort.InferenceSession(str(out / "model.onnx"))
        program = torch.export.load(str(out / "model.pt2")).module()
        for batch in (pixels[:1], pixels):  # the batch size is dynamic
            got = session.run(None, {"pixels": batch.numpy()})[0]
            assert np.abs(got - expected[: len(batch)]).max() < 1e-4
            with torch.no_grad():
                assert np.abs(program(batch).numpy() - expected[: len(batch)]).max() < 1e-4


def test_float_input_and_probabilities_output(tmp_path: Path) -> None:
    """The other input and output choices, on the module that is exported (the export path is the same)."""
    path, model = checkpoint(tmp_path, "lenet5", seed=1)
    module = load_network(path).deployable(input_kind="float", output="probabilities")
    u8 = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)  # raw images; the graph resizes as the loader
    x = u8.float() / 255.0
    want = torch.softmax(torch.from_numpy(reference(model, resize_uint8(u8, (32, 32)))), dim=1)
    with torch.no_grad():
        got = module(x)
    assert (got - want).abs().max() < 1e-5 and torch.allclose(got.sum(dim=1), torch.ones(5))
    info = preprocessing(load_network(path).meta, "float", "probabilities")
    assert info["input"]["dtype"] == "float32" and info["input"]["range"] == [0.0, 1.0]
    assert info["output"]["softmax_applied"] and "no antialiasing" in info["input"]["resize"]
    assert info["input"]["shape"] == ["batch", 1, 28, 28]
    assert "inside the graph, 28x28 -> 32x32" in info["input"]["resize"]


@pytest.mark.parametrize("case", ["no sidecar", "not safetensors", "missing"])
def test_a_checkpoint_that_is_not_reffakds_is_one_line(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "weights.safetensors"
    if case == "no sidecar":  # safetensors from elsewhere: no reffakd metadata beside it
        save_file({"w": torch.zeros(3)}, str(bad))
    elif case == "not safetensors":
        bad.write_bytes(b"PK\x03\x04 a pickle in a zip, never unpickled")
    out = tmp_path / "out"
    for argv in (["export", "--checkpoint", str(bad), "--out", str(out)], ["predict", "--checkpoint", str(bad), "x"]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("reffakd: error:") and str(bad) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == (["weights.safetensors"] if case != "missing" else [])


def test_export_without_the_extra_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    path, _ = checkpoint(tmp_path, "lenet5")
    assert main(["export", "--checkpoint", str(path), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err == "reffakd: error: reffakd export needs the package onnxscript: pip install 'reffakd[export]'\n"
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


@pytest.mark.real_data
def test_predict_reads_files_as_at_training_and_reports_a_corrupt_one(
    test_images: torch.Tensor,
    exported: dict[str, tuple[Path, Path, torch.nn.Module]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, onnx_folder, model = exported["lenet5"]
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    for i in range(3):  # 28x28 grayscale PNGs, as the test set holds them
        Image.fromarray(test_images[i, 0].numpy()).save(folder / f"t{i}.png")
    Image.fromarray(test_images[3, 0].numpy()).convert("RGB").resize((60, 45)).save(folder / "sub" / "big.jpg")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)  # a corrupt image
    (folder / "notes.txt").write_text("not an image: skipped")
    table = tmp_path / "pred.csv"

    assert main(["predict", "--checkpoint", str(path), str(folder), "--top-k", "3", "--csv", str(table)]) == 1
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "broken.png" in captured.err  # one line for the corrupt file
    lines = [line for line in captured.out.splitlines() if ".png:" in line or ".jpg:" in line]
    assert len(lines) == 4 and "RGB -> grayscale, resized 45x60 -> 28x28" in captured.out
    rows = {Path(r["file"]).name: r for r in csv.DictReader(table.open())}
    assert set(rows) == {"t0.png", "t1.png", "t2.png", "big.jpg", "broken.png"} and rows["broken.png"]["error"]
    # The PNGs' probabilities are the model's on the loader's own resized test tensor.
    want = torch.softmax(torch.from_numpy(reference(model, resize_uint8(test_images[:3], (32, 32)))), dim=1)
    for i in range(3):
        row = rows[f"t{i}.png"]
        top = int(want[i].argmax())
        assert row["class_1"] == FASHION_MNIST_CLASSES[top]
        assert float(row["probability_1"]) == pytest.approx(float(want[i, top]), abs=1e-5)
    # A CSV is never replaced: the second call is refused before anything runs.
    assert main(["predict", "--checkpoint", str(path), str(folder), "--csv", str(table)]) == 1
    assert "already exists" in capsys.readouterr().err

    # The exported ONNX model gives the same top classes and probabilities.
    table2 = tmp_path / "onnx.csv"
    assert main(["predict", "--checkpoint", str(onnx_folder / "model.onnx"), str(folder), "--csv", str(table2)]) == 1
    rows2 = {Path(r["file"]).name: r for r in csv.DictReader(table2.open())}
    for name in ("t0.png", "t1.png", "t2.png", "big.jpg"):
        assert rows2[name]["class_1"] == rows[name]["class_1"]
        assert float(rows2[name]["probability_1"]) == pytest.approx(float(rows[name]["probability_1"]), abs=1e-5)


def test_bench_reports_the_static_and_measured_cost(
    exported: dict[str, tuple[Path, Path, torch.nn.Module]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from reffakd.deploy import measure_subject, subjects

    path, folder, _ = exported["lenet5"]
    report = tmp_path / "bench.json"
    argv = ["bench", "--checkpoint", str(path), "--model", "resnet8", "--latency-runs", "3", "--throughput-runs", "1",
            "--batch-size", "8", "--threads", "1", "--no-onnx", "--json", str(report)]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| lenet5 (" in out and "| resnet8 (architecture) |" in out and "| pytorch |" in out
    lenet, resnet = json.loads(report.read_text())["models"]
    assert lenet["parameters"] == 61_750 and lenet["forward_flops_per_image"] == 2 * 416_520  # docs/MODELS.md
    assert resnet["parameters"] == 77_754 and resnet["forward_flops_per_image"] == 2 * 12_206_720
    assert lenet["file_bytes"] == path.stat().st_size and resnet["file_bytes"] > 4 * 77_754
    assert main(argv) == 1  # the JSON is never replaced
    assert capsys.readouterr().err.count("\n") == 1
    # onnxruntime, timed on the exported file (the command exports it in memory the same way)
    (subject,) = subjects([str(path)], [], None, None)
    onnx_model = (folder / "model.onnx").read_bytes()
    record = measure_subject(subject, torch.device("cpu"), latency_runs=3, throughput_runs=1, batch_size=8,
                             onnx_model=onnx_model)  # fmt: skip
    assert record["onnx_bytes"] == len(onnx_model)
    for runtime in ("pytorch", "onnxruntime"):
        t = record["runtimes"][runtime]
        assert 0 < t["latency_ms_median"] <= t["latency_ms_p95"] and t["throughput_images_per_s"] > 0


def test_the_autoencoder_exports_its_encoder(tmp_path: Path) -> None:
    from reffakd.errors import ReffAKDError
    from reffakd.models import ConvAutoencoder

    torch.manual_seed(0)
    ae = ConvAutoencoder(1, (32, 32)).eval()
    meta = {"model": "autoencoder", "num_classes": 10, "in_channels": 1, "image_size": [32, 32],
            "class_names": list(FASHION_MNIST_CLASSES), "mean": [0.0], "std": [1.0], "pixel_range": [0, 1]}  # fmt: skip
    network = load_network(save_checkpoint(tmp_path / "autoencoder.safetensors", ae, meta))
    x = torch.randint(0, 256, (3, 1, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.allclose(network.deployable()(x), ae.encode(x.float() / 255.0), atol=1e-6)
    with pytest.raises(ReffAKDError, match="its output is the embedding"):
        network.deployable(output="probabilities")
    assert preprocessing(meta, "uint8", "logits", encoder=True)["output"]["kind"] == "embedding"


def _header_dtype_edited(path: Path) -> None:
    """The first F32 tensor's dtype in the safetensors header changed to I32 (same size: the file still parses)."""
    raw = bytearray(path.read_bytes())
    n = int.from_bytes(raw[:8], "little")
    header = raw[8 : 8 + n].decode().replace('"F32"', '"I32"', 1)
    raw[8 : 8 + n] = header.encode()
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    "edit,says",
    [
        ({"std": [0.0]}, "std [0.0]: each must be a finite number in [1e-06, 1]"),
        ({"std": [float("nan")]}, "std [nan]"),
        ({"std": [1e-45]}, "std [1e-45]"),
        ({"std": [True]}, "std [True]"),
        ({"mean": [-1e300]}, "mean [-1e+300]: each must be a finite number in [0, 1]"),
        ("nested", "nested too deeply"),
        ("dtype", "as torch.int32, but the model holds torch.float32: the file was edited"),
        ("nan weights", "non-finite values (NaN or infinite) in"),
    ],
    ids=["std 0", "std NaN", "std 1e-45", "std bool", "mean huge", "nested JSON", "header dtype", "NaN weights"],
)
def test_hand_edited_checkpoints_are_one_line_never_nan_probabilities(
    edit: Any, says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each gave NaN "probabilities" with exit 0 (or a RecursionError traceback): what is read is bounded."""
    path, model = checkpoint(tmp_path, "lenet5")
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    if isinstance(edit, dict):
        meta_path.write_text(json.dumps({**meta, **edit}))
    elif edit == "nested":
        meta_path.write_text(json.dumps({**meta, "data": "@"}).replace('"@"', "[" * 100_000 + "]" * 100_000))
    elif edit == "dtype":
        _header_dtype_edited(path)
    else:
        state = {k: v.clone() for k, v in model.state_dict().items()}
        next(iter(state.values())).view(-1)[0] = float("nan")
        save_file(state, str(path))
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(image)
    assert main(["predict", "--checkpoint", str(path), str(image)]) == 1
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and says in captured.err, captured.err
    assert "nan" not in captured.out.lower()


def test_onnx_metadata_contradicting_its_graph_and_non_probabilities_are_one_line(
    exported: dict[str, tuple[Path, Path, torch.nn.Module]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """softmax_applied true beside a graph that outputs logits printed the logits, negative ones included."""
    from reffakd.deploy import DeployedModel
    from reffakd.deploy.predict import check_probabilities

    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(image)
    for value in (True, "yes"):
        folder = tmp_path / f"export-{value}"
        shutil.copytree(exported["lenet5"][1], folder)
        info = json.loads((folder / "model.json").read_text())
        info["output"]["softmax_applied"] = value
        (folder / "model.json").write_text(json.dumps(info))
        assert main(["predict", "--checkpoint", str(folder / "model.onnx"), str(image)]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"softmax_applied {value!r}" in err
        assert ("(graph: 'logits')" if value is True else "softmax_applied true or false") in err
    model = DeployedModel()
    model.source = "model m"
    for rows in ([[0.5, float("nan")]], [[1.5, -0.5]], [[0.2, 0.2]]):
        with pytest.raises(ReffAKDError, match="model m gave outputs that are not probabilities"):
            check_probabilities(model, np.array(rows), "a.png")


def test_onnx_predict_and_bench_write_nothing_outside_out_and_the_cache(
    exported: dict[str, tuple[Path, Path, torch.nn.Module]], tmp_path: Path
) -> None:
    """onnxruntime's telemetry wrote a device id and a database under $HOME/.cache/Microsoft when it was imported."""
    import os
    import subprocess
    import sys

    path, folder, _ = exported["lenet5"]
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "x.png")
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("ORT_DISABLE_TELEMETRY", "XDG_CACHE_HOME")}
    env.update(HOME=str(home), REFFAKD_CACHE=str(tmp_path / "cache"))
    for argv in (
        ["predict", "--checkpoint", str(folder / "model.onnx"), str(tmp_path / "x.png")],
        ["bench", "--checkpoint", str(path), "--latency-runs", "2", "--throughput-runs", "1", "--batch-size", "2"],
    ):
        run = subprocess.run([sys.executable, "-m", "reffakd", *argv], env=env, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        assert [p for p in home.rglob("*")] == [], argv[0]


def test_absurd_top_k_and_bench_shape_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--top-k 10^30 with --csv filled the CSV header until the memory ran out; --shape 1,100000,100000 was a
    traceback from the allocator."""
    path, _ = checkpoint(tmp_path, "lenet5")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    argv = ["predict", "--checkpoint", str(path), str(tmp_path / "bad.png"), "--top-k", str(10**30)]
    assert main([*argv, "--csv", str(tmp_path / "p.csv")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--top-k {10**30} is out of range: it must be between 1 and 100,000" in err
    for shape in ("1,100000,100000", "100000,32,32"):
        assert main(["bench", "--model", "lenet5", "--shape", shape, "--num-classes", "10", "--no-onnx"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"shape {shape}" in err and "H, W from 1 to 1024" in err
    assert main(["bench", "--model", "lenet5", "--shape", "1,32,32", "--num-classes", str(10**9), "--no-onnx"]) == 1
    assert "1 to 100,000 classes" in capsys.readouterr().err


def test_predict_on_a_folder_says_what_it_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A symbolic link to a folder, a broken link and a folder that cannot be listed were skipped without a word."""
    import os

    path, _ = checkpoint(tmp_path, "lenet5")
    images = tmp_path / "images"
    for sub in ("real", "locked"):
        (images / sub).mkdir(parents=True)
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(images / "real" / "a.png")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(images / "locked" / "b.png")
    (images / "linked").symlink_to(images / "real", target_is_directory=True)
    (images / "gone.png").symlink_to(tmp_path / "nowhere.png")
    real_scandir = os.scandir

    def scandir(p: Any = ".") -> Any:  # the tests run as root, whom chmod does not stop
        if Path(p) == images / "locked":
            raise PermissionError(13, "Permission denied", str(p))
        return real_scandir(p)

    monkeypatch.setattr(os, "scandir", scandir)
    assert main(["predict", "--checkpoint", str(path), str(images), "--csv", str(tmp_path / "p.csv")]) == 1
    captured = capsys.readouterr()
    errors = captured.err.strip().splitlines()
    assert len(errors) == 3 and all(e.startswith("reffakd: error: ") for e in errors), errors
    assert any(
        f"folder {images / 'linked'} was skipped: a symbolic link to a folder, not followed" in e for e in errors
    )
    assert any(f"folder {images / 'locked'} was skipped: cannot be listed" in e for e in errors)
    assert any(f"{images / 'gone.png'}: a broken symbolic link" in e for e in errors)
    assert "a.png:" in captured.out
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    assert len(rows) == 4 and sum(bool(r["error"]) for r in rows) == 3


def test_help_texts_say_what_the_commands_take(capsys: pytest.CaptureFixture[str]) -> None:
    """`export` takes no --config, so its help never sends a user to one; --labels-per-class says where the
    unlabelled images go."""
    from reffakd.cli import main

    with pytest.raises(SystemExit):
        main(["export", "--help"])
    text = capsys.readouterr().out
    assert "--config" not in text and "--out OUT" in text
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "no student sees them" in " ".join(capsys.readouterr().out.split())


# --------------------------------------------------------------------------- issues 26 and 27: one loader, raw input


def _raw_test_images(fake_fmnist: Path, n: int = 40) -> torch.Tensor:
    """The fake dataset's first test images, 28x28 uint8 as its IDX file holds them."""
    return torch.from_numpy(
        np.frombuffer(gzip.decompress((fake_fmnist / "t10k-images-idx3-ubyte.gz").read_bytes())[16:], np.uint8)
        .reshape(-1, 1, 28, 28)[:n]
        .copy()
    )


def test_every_command_takes_a_checkpoint_an_onnx_and_a_pt2_alike(
    exported: dict[str, tuple[Path, Path, torch.nn.Module]],
    fake_fmnist: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """evaluate and bench refused model.onnx ("header too large") and predict did not read model.pt2: one loader now
    reads all three, and they score alike (top-1 identical, logits within 1e-4)."""
    from reffakd.deploy import open_model

    path, folder, model = exported["lenet5"]
    files = {"checkpoint": path, "onnx": folder / "model.onnx", "pt2": folder / "model.pt2"}
    raw = _raw_test_images(fake_fmnist)
    want = reference(model, resize_uint8(raw, (32, 32)))  # what training's loader and evaluation compute
    for kind, file in files.items():
        loaded = open_model(file, torch.device("cpu"))
        assert loaded.kind == kind and loaded.size == (28, 28) and loaded.class_names == list(FASHION_MNIST_CLASSES)
        got = loaded.scores(raw).numpy()
        assert np.abs(got - want).max() < 1e-4 and (got.argmax(1) == want.argmax(1)).all()
    data = ["--data-dir", str(fake_fmnist), "--no-download", "--device", "cpu"]
    results = {}
    for kind, file in files.items():
        assert main(["evaluate", "--checkpoint", str(file), *data]) == 0
        results[kind] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert results["checkpoint"]["images"] == 100 and results["checkpoint"]["model_file"] == "checkpoint"
    for kind in ("onnx", "pt2"):
        assert results[kind]["top1"] == results["checkpoint"]["top1"]
        assert results[kind]["top5"] == results["checkpoint"]["top5"]
        assert results[kind]["loss"] == pytest.approx(results["checkpoint"]["loss"], abs=1e-4)
    images = tmp_path / "images"
    images.mkdir()
    for i in range(4):
        Image.fromarray(raw[i, 0].numpy()).save(images / f"t{i}.png")
    rows = {}
    for kind, file in files.items():
        table = tmp_path / f"{kind}.csv"
        assert main(["predict", "--checkpoint", str(file), str(images), "--csv", str(table), "--device", "cpu"]) == 0
        rows[kind] = list(csv.DictReader(table.open()))
    for kind in ("onnx", "pt2"):
        for a, b in zip(rows[kind], rows["checkpoint"]):
            assert a["class_1"] == b["class_1"] and a["preprocessing"] == "as is"
            assert float(a["probability_1"]) == pytest.approx(float(b["probability_1"]), abs=1e-5)
    argv = ["bench", "--latency-runs", "2", "--throughput-runs", "1", "--batch-size", "4", "--threads", "1"]
    assert main([*argv, "--checkpoint", str(files["onnx"]), "--checkpoint", str(files["pt2"])]) == 0
    out = capsys.readouterr().out
    assert "| onnxruntime |" in out and "| pytorch (torch.export) |" in out and out.count("| 1x28x28 uint8 |") == 2
    other = tmp_path / "model.bin"
    other.write_bytes(b"\0" * 16)
    for command in (["evaluate", *data], ["predict", str(images)], argv):
        assert main([*command, "--checkpoint", str(other)]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "model.bin is not one reffakd reads" in err and "model.pt2" in err


def test_a_client_with_onnxruntime_and_numpy_feeds_raw_images(
    exported: dict[str, tuple[Path, Path, torch.nn.Module]], fake_fmnist: Path
) -> None:
    """The graph takes the dataset's own 28x28 uint8 images and resizes inside as the loader did (bilinear, no
    antialiasing, rounded to uint8): the client gets the checkpoint's predictions exactly (it got 32x32 before)."""
    import onnxruntime

    path, folder, model = exported["lenet5"]
    info = json.loads((folder / "model.json").read_text())
    assert info["input"]["shape"] == ["batch", 1, 28, 28] and info["input"]["dtype"] == "uint8"
    assert info["input"]["range"] == [0, 255]
    raw = _raw_test_images(fake_fmnist).numpy()  # numpy only from here: what a client holds
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"))
    got = session.run(None, {info["input"]["name"]: raw})[0]
    want = reference(model, resize_uint8(torch.from_numpy(raw), (32, 32)))
    assert (got.argmax(1) == want.argmax(1)).all() and np.abs(got - want).max() < 1e-4
    # the resize inside is the loader's, pixel for pixel (weights k/16: exact sums, then the same rounding)
    module = load_network(path).deployable()
    inside = torch.clamp(torch.round(module.rows @ (torch.from_numpy(raw).float() @ module.cols)), 0, 255)
    assert torch.equal(inside.to(torch.uint8), resize_uint8(torch.from_numpy(raw), (32, 32)))


def test_evaluate_scores_a_labelled_folder(
    exported: dict[str, tuple[Path, Path, torch.nn.Module]],
    fake_fmnist: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Class sub-folders named as the classes ('T-shirt/top' -> 'T-shirt_top'), or mapped by a JSON file; a folder
    without a class and a class without a folder are named in one line."""
    from reffakd.deploy.score import folder_name

    assert folder_name("T-shirt/top") == "T-shirt_top" and folder_name('a:b*c?"<>|\\') == "a_b_c______"
    assert folder_name("..") == "__" and folder_name("Bag") == "Bag"
    path, onnx_folder, model = exported["lenet5"]
    raw = _raw_test_images(fake_fmnist, 20)
    root = tmp_path / "labelled"
    labels = []
    for i in range(20):
        label = i % 10
        sub = root / folder_name(FASHION_MNIST_CLASSES[label])
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(raw[i, 0].numpy()).save(sub / f"{i}.png")
        labels.append(label)
    logits = torch.from_numpy(reference(model, resize_uint8(raw, (32, 32))))
    top1 = 100.0 * float((logits.argmax(1) == torch.tensor(labels)).float().mean())
    for file in (path, onnx_folder / "model.pt2"):
        assert main(["evaluate", "--checkpoint", str(file), "--folder", str(root), "--device", "cpu"]) == 0
        result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert result["images"] == 20 and result["top1"] == pytest.approx(top1)
    # the same images under other names, with a class map
    mapped = tmp_path / "mapped"
    shutil.copytree(root, mapped)
    names = {}
    for i, cls in enumerate(FASHION_MNIST_CLASSES):
        (mapped / folder_name(cls)).rename(mapped / f"c{i}")
        names[f"c{i}"] = cls
    (tmp_path / "map.json").write_text(json.dumps(names))
    argv = ["evaluate", "--checkpoint", str(path), "--folder", str(mapped), "--device", "cpu"]
    assert main([*argv, "--class-map", str(tmp_path / "map.json")]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["top1"] == pytest.approx(top1)
    # mismatches, both ways, in one line
    (root / "Socks").mkdir()
    shutil.rmtree(root / "Bag")
    assert main(["evaluate", "--checkpoint", str(path), "--folder", str(root), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sub-folders with no class: ['Socks']" in err
    assert "classes with no sub-folder: ['Bag']" in err
    # an image outside the class sub-folders has no label: named, not silently left out
    Image.fromarray(raw[0, 0].numpy()).save(mapped / "loose.png")
    assert main([*argv, "--class-map", str(tmp_path / "map.json")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "1 image file(s) outside any class sub-folder (['loose.png'])" in err


@pytest.mark.parametrize(
    "edit",
    ["classes", "channels", "size", "dtype", "value type", "another export", "output"],
)
def test_a_model_json_that_does_not_match_its_graph_is_one_line(
    edit: str,
    exported: dict[str, tuple[Path, Path, torch.nn.Module]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """model.json was trusted: another class count, channels, size or dtype gave wrong predictions or a runtime
    traceback; now it is checked against the graph's own signature and the file's SHA-256."""
    folder = tmp_path / "export"
    shutil.copytree(exported["lenet5"][1], folder)
    info = json.loads((folder / "model.json").read_text())
    if edit == "classes":
        info["class_names"] = info["class_names"][:9]
    elif edit == "channels":
        info["input"]["channels"] = 3
    elif edit == "size":
        info["input"]["height"] = info["input"]["width"] = 32
    elif edit == "dtype":
        info["input"]["dtype"] = "float32"
    elif edit == "value type":
        info["input"]["height"] = "28"
    elif edit == "another export":  # the same signature: only the recorded hashes tell them apart
        other = json.loads((exported["resnet8"][1] / "model.json").read_text())
        info["files"] = other["files"]
    elif edit == "output":
        info["output"]["name"] = info["output"]["kind"] = "probabilities"
        info["output"]["softmax_applied"] = True
    (folder / "model.json").write_text(json.dumps(info))
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(image)
    for model in ("model.onnx", "model.pt2"):
        assert main(["predict", "--checkpoint", str(folder / model), str(image)]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("reffakd: error: export metadata") and "model.json" in err


def test_export_never_removes_or_reuses_another_commands_partial_folder(
    exported: dict[str, tuple[Path, Path, torch.nn.Module]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An interrupted `train` in OUT.partial (with its resume checkpoint) was deleted by `export --out OUT`."""
    from reffakd.rundir import MARKER

    path = exported["lenet5"][0]
    for kind in ("train", "export"):
        out = tmp_path / f"out-{kind}"
        staged = tmp_path / f"out-{kind}.partial"
        staged.mkdir()
        (staged / MARKER).write_text(json.dumps({"made_by": "reffakd", "pid": 1, "kind": kind}))
        (staged / "resume.safetensors").write_bytes(b"a resume checkpoint")
        assert main(["export", "--checkpoint", str(path), "--out", str(out)]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"unfinished `reffakd {kind}`" in err and "never removed or reused" in err
        assert (staged / "resume.safetensors").read_bytes() == b"a resume checkpoint" and not out.exists()


def test_a_full_disk_during_export_leaves_nothing_half_written(
    exported: dict[str, tuple[Path, Path, torch.nn.Module]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import errno

    def full(program: Any, file: str, *args: Any, **kwargs: Any) -> None:
        Path(file).write_bytes(b"PK\x03\x04 half a program")  # a truncated model.pt2
        raise OSError(errno.ENOSPC, "No space left on device", file)

    monkeypatch.setattr(torch.export, "save", full)
    out = tmp_path / "out"
    assert main(["export", "--checkpoint", str(exported["lenet5"][0]), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and "free some space" in err
    assert sorted(tmp_path.iterdir()) == []  # no OUT, no OUT.partial, no truncated model.pt2


@pytest.mark.parametrize("command", ["predict", "bench"])
def test_a_file_created_between_the_check_and_the_write_is_never_replaced(
    command: str,
    exported: dict[str, tuple[Path, Path, torch.nn.Module]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The check passed, another process then created the file, and the final rename replaced it."""
    import reffakd.deploy.commands as commands

    target = tmp_path / "result.out"
    check = commands.new_file

    def then_created(path: str | None, what: str) -> None:
        check(path, what)
        target.write_text("another process's file")

    monkeypatch.setattr(commands, "new_file", then_created)
    path = exported["lenet5"][0]
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(image)
    argv = {
        "predict": ["predict", "--checkpoint", str(path), str(image), "--csv", str(target)],
        "bench": ["bench", "--checkpoint", str(path), "--latency-runs", "1", "--throughput-runs", "1",
                  "--batch-size", "2", "--no-onnx", "--json", str(target)],
    }[command]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists" in err
    assert target.read_text() == "another process's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.out", "x.png"]  # no temporary file left


def test_bench_rows_say_the_input_and_the_median_and_spread(
    exported: dict[str, tuple[Path, Path, torch.nn.Module]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from reffakd.deploy import bench, bench_table, measure_subject, subjects

    (subject,) = subjects([str(exported["lenet5"][0])], [], None, None)
    ticks = iter(float(t) for t in range(10_000))
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(ticks))  # 1 s per call: a known spread
    calls = []
    real = bench._times
    monkeypatch.setattr(bench, "_times", lambda fn, runs, warmup, sync: calls.append(warmup) or real(fn, runs, warmup,
                        sync))  # fmt: skip
    record = measure_subject(subject, torch.device("cpu"), latency_runs=4, throughput_runs=2, batch_size=2,
                             onnx=False)  # fmt: skip
    assert calls == [10, 2] and record["input"] == {"shape": [1, 1, 28, 28], "batch_shape": [2, 1, 28, 28],
                                                    "dtype": "uint8"}  # fmt: skip
    t = record["runtimes"]["pytorch"]
    assert t["latency_ms_median"] == 1000 and t["latency_ms_p25"] == t["latency_ms_p75"] == 1000
    head, rule, row = bench_table([record], 2).splitlines()
    cells = [c.strip() for c in head.strip("|").split("|")]
    assert cells[:2] == ["model", "input"] and "latency IQR (ms)" in cells and "throughput IQR (images/s)" in cells
    values = [c.strip() for c in row.strip("|").split("|")]
    assert len(values) == len(cells) and values[1] == "1x28x28 uint8"
    assert values[cells.index("latency IQR (ms)")] == "1000.000-1000.000"


class _Touch:
    """A pickle that would create a file if it were ever unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (Path.touch, (str(self.marker),))


def test_a_model_pt2_that_could_unpickle_more_than_tensors_is_refused_before_loading(
    exported: dict[str, tuple[Path, Path, torch.nn.Module]], tmp_path: Path
) -> None:
    """torch.export.load unpickles weights marked use_pickle, custom and opaque objects, and example inputs that fail a
    tensor-only load (retrying them with weights_only=False): such an archive is refused before it is loaded."""
    import pickle
    import zipfile

    from reffakd.deploy.model import check_program_archive

    source = exported["lenet5"][1] / "model.pt2"
    check_program_archive(source)  # what `reffakd export` writes passes
    marker = tmp_path / "ran"

    def variant(
        name: str, change: Callable[[str, bytes], bytes | None], extra: tuple[str, bytes] | None = None
    ) -> Path:
        out = tmp_path / f"{name}.pt2"
        with zipfile.ZipFile(source) as src, zipfile.ZipFile(out, "w") as dst:
            for entry in src.namelist():
                data = change(entry, src.read(entry))
                if data is not None:
                    dst.writestr(entry, data)
            if extra is not None:
                root = src.namelist()[0].split("/")[0]
                dst.writestr(f"{root}/{extra[0]}", extra[1])
        return out

    hostile = pickle.dumps(_Touch(marker))

    def pickled_weight(entry: str, data: bytes) -> bytes:
        if entry.endswith("model_weights_config.json"):
            config = json.loads(data)
            next(iter(config["config"].values()))["use_pickle"] = True
            return json.dumps(config).encode()
        return data

    cases = {
        "opaque": variant("opaque", lambda e, d: d, ("data/constants/opaque_obj_0", hostile)),
        "legacy": variant("legacy", lambda e, d: d, ("data/weights/model.pt", hostile)),
        "use_pickle": variant("use_pickle", pickled_weight),
        "inputs": variant("inputs", lambda e, d: hostile if "sample_inputs" in e else d),
    }
    for case, path in cases.items():
        with pytest.raises(ReffAKDError, match=r"reffakd reads only a model.pt2 of tensors and JSON") as err:
            check_program_archive(path)
        assert "\n" not in str(err.value), case
    (tmp_path / "notzip.pt2").write_bytes(b"not a zip")
    with pytest.raises(ReffAKDError, match="unreadable or unsafe"):
        check_program_archive(tmp_path / "notzip.pt2")
    assert not marker.exists()
