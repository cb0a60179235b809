"""The interpreter loader and TFLiteModel: runtime order, bad files, float and quantized models."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

from edge import litert, paths
from edge.errors import MasknetError, ModelError
from edge.litert import TFLiteModel, load_runtime
from edge.paths import DETECTOR_MODEL, models_dir

BLAZEFACE = models_dir() / DETECTOR_MODEL
needs_blazeface = pytest.mark.skipif(not BLAZEFACE.is_file(), reason=f"{BLAZEFACE} absent: run ./install.sh")


# -- runtime selection ----------------------------------------------------------------------


def _fake_runtime(monkeypatch: pytest.MonkeyPatch, package: str, version: str) -> type:
    class Interpreter:
        pass

    top = types.ModuleType(package)
    top.__version__ = version
    sub = types.ModuleType(f"{package}.interpreter")
    sub.Interpreter = Interpreter
    monkeypatch.setitem(sys.modules, package, top)
    monkeypatch.setitem(sys.modules, f"{package}.interpreter", sub)
    return Interpreter


def _block(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    # a None entry in sys.modules makes `import` raise ImportError, as if not installed
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def test_ai_edge_litert_comes_first(monkeypatch):
    interpreter = _fake_runtime(monkeypatch, "ai_edge_litert", "9.9")
    _fake_runtime(monkeypatch, "tflite_runtime", "2.14")
    rt = load_runtime()
    assert (rt.name, rt.version, rt.interpreter_class) == ("ai_edge_litert", "9.9", interpreter)


def test_tflite_runtime_when_litert_is_missing(monkeypatch):
    _block(monkeypatch, "ai_edge_litert", "ai_edge_litert.interpreter")
    interpreter = _fake_runtime(monkeypatch, "tflite_runtime", "2.14.0")
    rt = load_runtime()
    assert (rt.name, rt.version, rt.interpreter_class) == ("tflite_runtime", "2.14.0", interpreter)


def test_tensorflow_only_as_a_last_resort(monkeypatch):
    _block(monkeypatch, "ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime", "tflite_runtime.interpreter")
    tf = types.ModuleType("tensorflow")
    tf.__version__ = "2.21.0"
    lite = types.ModuleType("tensorflow.lite")
    lite.Interpreter = type("Interpreter", (), {})
    monkeypatch.setitem(sys.modules, "tensorflow", tf)
    monkeypatch.setitem(sys.modules, "tensorflow.lite", lite)
    rt = load_runtime()
    assert (rt.name, rt.version, rt.interpreter_class) == ("tensorflow.lite", "2.21.0", lite.Interpreter)


def test_no_runtime_is_a_clear_error(monkeypatch):
    _block(
        monkeypatch,
        "ai_edge_litert", "ai_edge_litert.interpreter",
        "tflite_runtime", "tflite_runtime.interpreter",
        "tensorflow", "tensorflow.lite",
    )
    with pytest.raises(MasknetError, match="no TFLite runtime") as info:
        load_runtime()
    assert "ai_edge_litert, tflite_runtime, tensorflow.lite" in str(info.value)
    assert "install" in str(info.value)


def test_installed_runtime_is_litert():
    rt = load_runtime()
    assert rt.name == "ai_edge_litert"
    assert rt.version[0].isdigit()


def test_edge_never_imports_tensorflow():
    import subprocess

    # every module of the door runtime, commands included
    code = (
        "import importlib, pkgutil, sys, edge\n"
        "for m in pkgutil.walk_packages(edge.__path__, 'edge.'): importlib.import_module(m.name)\n"
        "edge.litert.load_runtime()\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# -- bad model files ------------------------------------------------------------------------


def _refused(path: Path) -> ModelError:
    with pytest.raises(ModelError) as info:
        TFLiteModel(path)
    err = info.value
    assert str(path) in str(err)
    assert "install.sh" in str(err)
    assert "\n" not in str(err)
    # nothing chained: the CLI prints one line, and a debugger shows no "during handling" noise
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)
    return err


def test_missing_file(tmp_path):
    assert "not found" in str(_refused(tmp_path / "absent.tflite"))


def test_empty_and_garbage_files(tmp_path):
    empty = tmp_path / "empty.tflite"
    empty.write_bytes(b"")
    assert "not a valid TFLite model" in str(_refused(empty))
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"<html>404 Not Found</html>\n" * 40)
    assert "not a valid TFLite model" in str(_refused(garbage))


@needs_blazeface
def test_truncated_file(tmp_path):
    truncated = tmp_path / DETECTOR_MODEL
    truncated.write_bytes(BLAZEFACE.read_bytes()[:120_000])
    assert "not a valid TFLite model" in str(_refused(truncated))


# -- a real float model ---------------------------------------------------------------------


@needs_blazeface
def test_float_model_runs_and_names_its_outputs():
    model = TFLiteModel(BLAZEFACE, num_threads=1)
    assert model.input_shape == (1, 128, 128, 3)
    assert model.input_dtype == np.float32
    assert model.input_quant == (0.0, 0)
    assert set(model.output_names) == {"regressors", "classificators"}
    x = np.zeros((128, 128, 3), np.float32)  # the batch axis is added
    outputs = model.run(x)
    assert [o.dtype for o in outputs] == [np.float32, np.float32]
    named = dict(zip(model.output_names, model.run(x[None]), strict=True))
    assert named["regressors"].shape == (1, 896, 16)
    assert named["classificators"].shape == (1, 896, 1)
    # the interpreter is reused: a second call with other data gives other results
    again = model(np.ones((1, 128, 128, 3), np.float32))
    assert not np.array_equal(again[0], outputs[0]) or not np.array_equal(again[1], outputs[1])
    with pytest.raises(ValueError, match="shape"):
        model.run(np.zeros((1, 64, 64, 3), np.float32))


# -- quantized models built here ------------------------------------------------------------

W = np.array([[2.0, -1.0, 0.5], [0.0, 3.0, 1.0], [1.0, 1.0, -2.0], [-0.5, 0.0, 4.0]], np.float32)
B = np.array([1.0, -2.0, 0.25], np.float32)


def _reference(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x @ W + B, x.sum(axis=-1, keepdims=True) * 10.0


def _build_quantized(path: Path, io_type: str, lo: float, hi: float) -> Path:
    """Full-integer model with two outputs of very different ranges: y = xW + b and s = 10 * sum(x)."""
    tf = pytest.importorskip("tensorflow")

    class Affine(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32, name="x")])
        def __call__(self, x):
            return {"y": tf.matmul(x, W) + B, "s": tf.reduce_sum(x, axis=1, keepdims=True) * 10.0}

    module = Affine()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.__call__.get_concrete_function()], module)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    converter.representative_dataset = lambda: (
        [rng.uniform(lo, hi, (1, 4)).astype(np.float32)] for _ in range(100)
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = getattr(tf, io_type)
    converter.inference_output_type = getattr(tf, io_type)
    path.write_bytes(converter.convert())
    return path


@pytest.fixture(scope="module")
def quantized(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("quantized")
    return {
        "int8": _build_quantized(root / "int8.tflite", "int8", -1.0, 1.0),
        "uint8": _build_quantized(root / "uint8.tflite", "uint8", 0.0, 255.0),
    }


def _by_width(model: TFLiteModel, outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    # the converter names outputs PartitionedCall:N in no promised order; tell them apart by shape
    y = next(o for o in outputs if o.shape[-1] == 3)
    s = next(o for o in outputs if o.shape[-1] == 1)
    return y, s


@pytest.mark.convert
def test_int8_model_quantizes_float_input_and_dequantizes_each_output(quantized):
    model = TFLiteModel(quantized["int8"])
    assert model.input_dtype == np.int8
    scale, zero_point = model.input_quant
    assert 0 < scale < 0.02
    out_scales = {d["quantization"][0] for d in model.output_details}
    assert len(out_scales) == 2 and scale not in out_scales  # each tensor has its own parameters
    x = np.array([[0.5, -0.25, 0.75, -1.0]], np.float32)
    y, s = _by_width(model, model.run(x))
    assert y.dtype == np.float32 and s.dtype == np.float32
    ref_y, ref_s = _reference(x)
    np.testing.assert_allclose(y, ref_y, atol=0.15)
    np.testing.assert_allclose(s, ref_s, atol=0.4)


@pytest.mark.convert
def test_int8_input_saturates_instead_of_wrapping(quantized):
    model = TFLiteModel(quantized["int8"])
    scale, zero_point = model.input_quant
    top = (127 - zero_point) * scale  # the largest representable input
    y, _ = _by_width(model, model.run(np.array([[5.0, 0.0, 0.0, 0.0]], np.float32)))
    np.testing.assert_allclose(y, _reference(np.array([[top, 0, 0, 0]], np.float32))[0], atol=0.15)


@pytest.mark.convert
def test_uint8_images_pass_straight_into_a_uint8_input(quantized):
    model = TFLiteModel(quantized["uint8"])
    assert model.input_dtype == np.uint8
    scale, zero_point = model.input_quant
    pixels = np.array([[10, 100, 200, 250]], np.uint8)
    raw = model.run(pixels)
    # the same values given as floats are quantized back to exactly these bytes
    as_float = model.run((pixels.astype(np.float32) - zero_point) * scale)
    for a, b in zip(raw, as_float, strict=True):
        np.testing.assert_array_equal(a, b)
    y, s = _by_width(model, raw)
    ref_y, ref_s = _reference((pixels.astype(np.float32) - zero_point) * scale)
    out_scale = {o.shape[-1]: d["quantization"][0] for o, d in zip(raw, model.output_details, strict=True)}
    np.testing.assert_allclose(y, ref_y, atol=2 * out_scale[3])
    np.testing.assert_allclose(s, ref_s, atol=2 * out_scale[1])
    # fetch reads the same outputs back (float32, or raw in the tensor's own dtype)
    np.testing.assert_array_equal(model.fetch(0), raw[0])


def test_quantize_rounds_and_clips():
    q = litert._quantize(np.array([-1.0, 0.0, 0.049, 0.051, 1.0, 100.0]), 0.1, -3, np.dtype(np.int8))
    assert q.dtype == np.int8
    np.testing.assert_array_equal(q, [-13, -3, -3, -2, 7, 127])


# -- where the models live ------------------------------------------------------------------


def test_models_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MASKNET_MODELS", str(tmp_path))
    assert paths.models_dir() == tmp_path
    monkeypatch.delenv("MASKNET_MODELS")
    assert paths.models_dir() == paths.repo_root() / "models"
    assert (paths.repo_root() / "edge" / "paths.py").is_file()


def test_third_party_hashes_match_the_installed_models():
    hashes = paths.third_party_hashes()
    assert set(hashes) >= {paths.DETECTOR_MODEL, paths.LANDMARK_MODEL}
    for name, digest in hashes.items():
        model = paths.models_dir() / name
        if model.is_file():
            assert paths.sha256_file(model) == digest, f"{model} differs from THIRD_PARTY.sha256"


def test_checksum_list_parsing(tmp_path):
    digest = "ab" * 32
    listing = tmp_path / "sums"
    listing.write_text(f"# comment\n\n{digest.upper()}  model a.tflite\n{digest} *b.tflite\n")
    assert paths.third_party_hashes(listing) == {"model a.tflite": digest, "b.tflite": digest}
    listing.write_text(f"{digest}  a.tflite\nnot-a-hash b.tflite\n")
    with pytest.raises(ModelError, match=r"sums:2"):
        paths.third_party_hashes(listing)
    with pytest.raises(ModelError, match="install.sh"):
        paths.third_party_hashes(tmp_path / "absent")


def test_sha256_file(tmp_path):
    f = tmp_path / "abc"
    f.write_bytes(b"abc")
    assert paths.sha256_file(f) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
