"""`signclip export onnx`: torch-free inference (signclip.export.runtime) matches the torch model."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from signclip.cli import app
from signclip.models.signclip import load

from isolation import blocked_python
from serve_utils import untrained_model_dir

TEXTS = ["A", "house", "a longer sentence with several words", "B"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, lexicon):
    model_dir = untrained_model_dir(tmp_path_factory.mktemp("onnx_model"), lexicon)
    out = tmp_path_factory.mktemp("onnx")
    r = CliRunner().invoke(app, ["export", "onnx", model_dir, str(out), "--int8"])
    assert r.exit_code == 0, r.output
    return model_dir, out


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def test_files(exported):
    _, out = exported
    for name in ("pose_encoder.onnx", "text_encoder.onnx", "pose_encoder.int8.onnx", "text_encoder.int8.onnx",
                 "tokenizer/tokenizer.json", "signclip_onnx.json", "pose_statistics.npz"):
        assert (out / name).is_file(), name
    spec = json.loads((out / "signclip_onnx.json").read_text())
    assert spec["int8"] and spec["model"]["pose"]["layout"] == "reduce_holistic" and spec["model"]["signed_languages"]
    stats = np.load(out / "pose_statistics.npz")
    assert stats["std"].min() > 0


# The runtime's whole dependency list is onnxruntime, numpy, pose-format and tokenizers: these cannot be imported.
BLOCKED = ("torch", "transformers", "safetensors", "sklearn", "scipy", "pandas", "matplotlib", "faiss", "typer")


def test_torch_free_subprocess_matches_torch(exported, lexicon_paths, tmp_path):
    """Run the runtime in a fresh interpreter where importing torch (and the other heavy dependencies of the
    package) fails: it gives the torch embeddings."""
    model_dir, out = exported
    paths = lexicon_paths[::3][:12]  # different sign languages and lengths
    code = f"""
import sys, json, numpy as np
from signclip.export.runtime import OnnxSignCLIP
m = OnnxSignCLIP({str(out)!r})
q = OnnxSignCLIP({str(out)!r}, int8=True)
paths = {paths!r}
np.save({str(tmp_path / "pose.npy")!r}, m.encode_pose(paths, batch_size=5))
np.save({str(tmp_path / "pose8.npy")!r}, q.encode_pose(paths, batch_size=5))
np.save({str(tmp_path / "text.npy")!r}, m.encode_text({TEXTS!r}, "en", "ase"))
np.save({str(tmp_path / "text8.npy")!r}, q.encode_text({TEXTS!r}, "en", "ase"))
np.save({str(tmp_path / "free.npy")!r}, m.encode_text({TEXTS!r}))
np.save({str(tmp_path / "one.npy")!r}, m.encode_pose(open(paths[0], "rb").read()))
assert "torch" not in sys.modules, [k for k in sys.modules if k.startswith("torch")][:5]
print("ok")
"""
    r = blocked_python(BLOCKED, code)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]
    model = load(model_dir)
    pose = model.encode_pose(paths)
    text = model.encode_text(TEXTS, "en", "ase")
    assert cosines(np.load(tmp_path / "pose.npy"), pose).min() >= 0.999
    assert cosines(np.load(tmp_path / "one.npy"), pose[0]) >= 0.999
    assert cosines(np.load(tmp_path / "text.npy"), text).min() >= 0.999
    assert cosines(np.load(tmp_path / "free.npy"), model.encode_text(TEXTS)).min() >= 0.999
    assert cosines(np.load(tmp_path / "pose8.npy"), np.load(tmp_path / "pose.npy")).min() >= 0.99
    assert cosines(np.load(tmp_path / "text8.npy"), np.load(tmp_path / "text.npy")).min() >= 0.98


def test_runtime_errors(exported, lexicon_paths):
    from signclip.errors import SignCLIPInputError as InputError
    from signclip.export.runtime import OnnxSignCLIP

    m = OnnxSignCLIP(exported[1])
    with pytest.raises(InputError, match="bad.pose: not a readable"):
        m.preprocess_pose(b"garbage" * 10, "bad.pose")
    with pytest.raises(InputError, match="signed_language: unknown language code"):
        m.encode_text(["A"], "en", "xx-nope")
    with pytest.raises(InputError, match="empty text"):
        m.encode_text([" "])
    with pytest.raises(FileNotFoundError):
        OnnxSignCLIP(exported[1] / "nope")


def test_partwise_pose_encoder_exports(tmp_path, lexicon_paths):
    """The part-wise tower (two streams) exports too and matches torch."""
    import signclip
    from signclip.export.onnx import export_onnx
    from signclip.export.runtime import OnnxSignCLIP

    model = signclip.create_model("tiny-partwise", pose_layers=1).eval()
    export_onnx(model, tmp_path)
    paths = lexicon_paths[::8]
    assert cosines(OnnxSignCLIP(tmp_path).encode_pose(paths), model.encode_pose(paths)).min() >= 0.999


def test_int8_partwise_batches_of_mixed_lengths(tmp_path, lexicon, lexicon_paths):
    """int8 stays close to fp32 when short poses are padded in a batch with long ones: padded frames are
    missing (NaN), so they standardise to 0 instead of outliers that would set the int8 activation scale."""
    import signclip
    from signclip.batching import pad_poses
    from signclip.export.onnx import export_onnx
    from signclip.export.runtime import OnnxSignCLIP

    model = signclip.create_model("tiny-partwise", pose_layers=1).eval()
    model.fit_preprocessing([model.preprocess_pose(p) for p in lexicon_paths[::4]])
    export_onnx(model, tmp_path, int8=True)
    arrays = [model.preprocess_pose(p) for p in lexicon_paths]
    arrays[0] = arrays[0][:5]  # a very short pose among ~25-frame ones
    x, mask = pad_poses(arrays)
    assert (model.pose.standardize(x)[~mask] == 0).all()  # padded frames carry no large values
    fp32 = OnnxSignCLIP(tmp_path).encode_arrays(arrays, batch_size=16)
    int8 = OnnxSignCLIP(tmp_path, int8=True).encode_arrays(arrays, batch_size=16)
    assert cosines(fp32, model.encode_arrays(arrays, 16)).min() >= 0.999
    assert cosines(int8, fp32).min() >= 0.99


def test_frame_patches_export(tmp_path, lexicon_paths):
    """A tower with frame patches (tiny-long) exports with dynamic lengths: poses of lengths that are and are
    not multiples of the patch, a long one among short ones in one batch, match torch."""
    import signclip
    from signclip.export.onnx import export_onnx
    from signclip.export.runtime import OnnxSignCLIP

    model = signclip.create_model("tiny-long", pose_layers=1).eval()
    model.fit_preprocessing([model.preprocess_pose(p) for p in lexicon_paths[::4]])
    export_onnx(model, tmp_path)
    arrays = [model.preprocess_pose(p) for p in lexicon_paths[::6]]
    arrays += [arrays[0][:1], arrays[1][:6], np.concatenate(arrays * 40)[:1001]]
    onnx = OnnxSignCLIP(tmp_path)
    assert cosines(onnx.encode_arrays(arrays, batch_size=len(arrays)), model.encode_arrays(arrays)).min() >= 0.999


def test_runtime_has_the_user_api_of_the_torch_model(exported, lexicon_paths, tmp_path):
    """OnnxSignCLIP repeated SignCLIP's prompts, preprocessing and single-input handling, and lacked normalize,
    progress and skipping unusable poses: both are one torch-free PoseTextEncoder now."""
    import shutil

    from signclip.export.runtime import OnnxSignCLIP
    from signclip.models.encoder import PoseTextEncoder

    model_dir, out = exported
    model, m = load(model_dir), OnnxSignCLIP(out)
    assert isinstance(model, PoseTextEncoder) and isinstance(m, PoseTextEncoder)
    paths = lexicon_paths[:3]
    raw = {"pose": (m.encode_pose(paths, normalize=False, progress=False), model.encode_pose(paths, normalize=False)),
           "text": (m.encode_text(TEXTS, "en", "ase", normalize=False),
                    model.encode_text(TEXTS, "en", "ase", normalize=False))}
    for ours, theirs in raw.values():
        assert cosines(ours, theirs).min() >= 0.999
        np.testing.assert_allclose(np.linalg.norm(ours, axis=1), np.linalg.norm(theirs, axis=1), rtol=1e-3)
        assert np.linalg.norm(ours, axis=1).std() > 1e-3  # raw vectors, not unit ones
    (tmp_path / "bad.pose").write_bytes(b"not a pose")
    usable = m.encode_usable_poses([paths[0], str(tmp_path / "bad.pose"), paths[1]])
    assert usable.kept == [0, 2] and "bad.pose" in usable.skipped[1]
    np.testing.assert_allclose(usable.embeddings, m.encode_pose([paths[0], paths[1]]), atol=1e-6)
    assert m.encode_pose(paths[0]).shape == (m.embed_dim,) and m.encode_text("A").shape == (m.embed_dim,)
    old = shutil.copytree(out, tmp_path / "old")  # an export of format 1 normalised inside its graphs
    spec = json.loads((old / "signclip_onnx.json").read_text())
    (old / "signclip_onnx.json").write_text(json.dumps({**spec, "format": "signclip-onnx/1", "normalized": True}))
    with pytest.raises(ValueError, match="normalised embeddings only"):
        OnnxSignCLIP(old).encode_text("A", normalize=False)


def test_calibrated_int8_quantises_the_feed_forward_outputs_it_can(tmp_path, lexicon):
    """With calibration poses, a BERT pose tower's feed-forward output layers are smoothed (the same product in
    fp32) and quantised where the calibration poses keep the cosine; without, they stay fp32."""
    import onnx
    import torch

    import signclip
    from signclip.export.calibrate import (
        batches,
        calibrated_int8,
        embed,
        is_feed_forward_output,
        record,
        session,
        smooth,
    )
    from signclip.export.onnx import export_onnx
    from signclip.export.runtime import OnnxSignCLIP

    torch.manual_seed(0)
    model = signclip.create_model("reference", embed_dim=384, pose_width=384, pose_layers=2, text_model="default",
                                  text_max_tokens=16).eval()
    paths = lexicon.sample(40, random_state=0)["path"].tolist()
    arrays = [model.preprocess_pose(p) for p in paths]
    export_onnx(model, tmp_path / "plain", int8=True)
    export_onnx(model, tmp_path / "calibrated", int8=True, calibration=arrays[:24])

    def fp32_matmuls(path):
        return [n.name for n in onnx.load(str(path)).graph.node if n.op_type == "MatMul" and "Quant" not in n.name]

    plain = fp32_matmuls(tmp_path / "plain" / "pose_encoder.int8.onnx")
    calibrated = fp32_matmuls(tmp_path / "calibrated" / "pose_encoder.int8.onnx")
    assert sum(map(is_feed_forward_output, plain)) == 2 and not any(map(is_feed_forward_output, calibrated))

    held_out = arrays[24:]
    fp32 = OnnxSignCLIP(tmp_path / "calibrated").encode_arrays(held_out)
    assert cosines(OnnxSignCLIP(tmp_path / "calibrated", int8=True).encode_arrays(held_out), fp32).min() >= 0.99

    source = tmp_path / "plain" / "pose_encoder.onnx"
    graph, feeds = onnx.load(str(source)), batches(held_out)
    names = [n.input[0] for n in graph.graph.node if n.op_type == "MatMul" and is_feed_forward_output(n.name)]
    channels, _ = record(graph, names, feeds)
    before = embed(session(graph), feeds)
    smooth(graph, channels)
    assert cosines(embed(session(graph), feeds), before).min() >= 0.99999  # smoothing alone changes nothing
    kept = calibrated_int8(source, tmp_path / "strict.onnx", arrays[:24], [], floor=1.01)  # unreachable
    assert len(kept) == 2  # every feed-forward output back in fp32
