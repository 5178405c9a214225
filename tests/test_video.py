"""Video input: real video -> MediaPipe Holistic poses, `signclip pose`, on-the-fly embedding.

Tests that run MediaPipe are skipped with a reason when the ``signclip[video]`` extra is not installed.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from signclip.errors import PoseInputError
from signclip.pose.io import read_pose
from signclip.pose.video import INSTALL_COMMAND, VideoExtraMissingError, is_video_bytes, video_to_pose

pytestmark = pytest.mark.slow  # MediaPipe on a real video

VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "video" / "test_video.mp4"
SKIP_REASON = f"needs the video extra (mediapipe): {INSTALL_COMMAND}"


@pytest.fixture(scope="module")
def holistic():
    """Skip unless mediapipe and the real test video are available."""
    pytest.importorskip("mediapipe", reason=SKIP_REASON)
    if not VIDEO.is_file():
        pytest.skip(f"test video not found at {VIDEO}")
    return VIDEO


@pytest.fixture(scope="module")
def video_pose(holistic):
    return video_to_pose(holistic)


@pytest.fixture(scope="module")
def short_clip(holistic, tmp_path_factory):
    """The first 12 frames of the real video (for the slower tests)."""
    return _short_clip(tmp_path_factory.mktemp("clip") / "short.mp4")


def _frame_count(path: Path) -> tuple[int, float]:
    import av

    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        return sum(1 for _ in c.decode(video=0)), float(stream.average_rate)


def _header(pose) -> tuple:
    """Everything a .pose header stores, comparable with ==."""
    h = pose.header
    components = [(c.name, list(c.points), list(map(tuple, c.limbs)), list(map(tuple, c.colors)), c.format)
                  for c in h.components]
    return round(float(h.version), 6), vars(h.dimensions), h.is_bbox, components


def _write_clip(path: Path, frames: list[np.ndarray], rate=25) -> Path:
    """Encode RGB frames (H, W, 3) uint8 as an MPEG-4 video."""
    import av

    with av.open(str(path), "w") as c:
        stream = c.add_stream("mpeg4", rate=rate)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                c.mux(packet)
        for packet in stream.encode():
            c.mux(packet)
    return path


def _black_clip(path: Path, frames: int = 8, size: int = 64) -> Path:
    return _write_clip(path, [np.zeros((size, size, 3), np.uint8)] * frames)


def _short_clip(path: Path, frames: int = 12) -> Path:
    """The first frames of the real test video, re-encoded at its frame rate (fast conversions)."""
    import av

    with av.open(str(VIDEO)) as c:
        rate = c.streams.video[0].average_rate
        images = [f.to_ndarray(format="rgb24") for _, f in zip(range(frames), c.decode(video=0))]
    return _write_clip(path, images, rate)


def test_video_detection_without_the_extra(lexicon_paths):
    data = VIDEO.read_bytes()[:64] if VIDEO.is_file() else b"\x00\x00\x00\x20ftypisom" + bytes(50)
    assert is_video_bytes(data)
    assert is_video_bytes(b"\x1a\x45\xdf\xa3" + bytes(40))  # Matroska / WebM
    assert is_video_bytes(b"not really", name="upload.webm")
    assert not is_video_bytes(Path(lexicon_paths[0]).read_bytes())
    assert not is_video_bytes(Path(lexicon_paths[0]).read_bytes(), name="x.pose")


def test_missing_extra_names_the_pip_command(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # as if mediapipe were not installed
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00\x00\x00\x20ftypisom" + bytes(100))
    with pytest.raises(VideoExtraMissingError, match=r'pip install "signclip\[video\]"') as e:
        read_pose(clip)
    assert isinstance(e.value, PoseInputError) and isinstance(e.value, ImportError)


def test_conversion_keeps_frames_and_fps(holistic, video_pose):
    frames, fps = _frame_count(holistic)
    assert video_pose.body.data.shape[:2] == (frames, 1)
    assert video_pose.body.fps == pytest.approx(fps, rel=1e-6)
    assert video_pose.header.total_points() == 576
    assert [c.name for c in video_pose.header.components] == [
        "POSE_LANDMARKS", "FACE_LANDMARKS", "LEFT_HAND_LANDMARKS", "RIGHT_HAND_LANDMARKS", "POSE_WORLD_LANDMARKS"]
    assert (np.asarray(video_pose.body.confidence)[:, 0, :33] > 0).mean() > 0.9  # the signer is seen


def test_same_header_as_pose_format_video_to_pose(short_clip, tmp_path):
    from pose_format.bin.pose_estimation import pose_video

    reference = tmp_path / "reference.pose"
    pose_video(str(short_clip), str(reference), "mediapipe", {"model_complexity": 1}, progress=False)
    ref = read_pose(reference)
    ours = read_pose(short_clip)  # the read_pose hook, by extension
    assert _header(ours) == _header(ref)
    assert ours.body.data.shape == ref.body.data.shape
    # same keypoints up to MediaPipe's run-to-run tracking noise (pose-format reuses Holistic instances)
    diff = np.abs(np.ma.getdata(ours.body.data) - np.ma.getdata(ref.body.data))
    assert diff.mean() < 0.5 and np.median(diff) < 1e-3
    assert ours.body.fps == pytest.approx(ref.body.fps, rel=1e-6)


def test_video_and_lexicon_pose_reach_the_same_layout(video_pose, lexicon_paths):
    from signclip.config import PoseConfig
    from signclip.pose.layout import get_layout
    from signclip.pose.preprocess import pose_to_array

    lexicon_pose = read_pose(lexicon_paths[0])
    assert lexicon_pose.header.total_points() == 586 and video_pose.header.total_points() == 576
    for layout_name in ("reduce_holistic", "contour_holistic"):
        layout = get_layout(layout_name)
        for pose in (video_pose, lexicon_pose):
            names = {(c.name, p) for c in pose.header.components for p in c.points}
            assert set(layout.points) <= names  # every point of the layout is found by name in both headers
        cfg = PoseConfig(layout=layout_name)
        a, b = pose_to_array(video_pose, cfg), pose_to_array(lexicon_pose, cfg)
        assert a.shape[1:] == b.shape[1:] == (len(layout), cfg.dims)
        face = [i for i, (c, _) in enumerate(layout.points) if c == "FACE_LANDMARKS"]
        assert np.isfinite(a[:, face]).all(-1).mean() > 0.9  # the 468-point face fills the contour


def test_corrupt_video_is_a_clear_error(holistic, tmp_path):
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(holistic.read_bytes()[:3000])
    for source, name in ((truncated, None), (np.random.default_rng(0).bytes(5000), "upload.mov")):
        with pytest.raises(PoseInputError, match="cannot decode the video|no decodable frames") as e:
            read_pose(source, name)
        assert str(e.value).startswith(name or str(truncated))


def test_video_without_a_person_is_a_clear_error(holistic, tmp_path):
    clip = _black_clip(tmp_path / "black.mp4")
    with pytest.raises(PoseInputError, match=r"black.mp4: no person detected in any of the 8 frames"):
        video_to_pose(clip)


def test_pose_cli_converts_a_folder_and_resumes(short_clip, tmp_path):
    from typer.testing import CliRunner

    from signclip.cli import app

    videos = tmp_path / "videos"
    (videos / "sub").mkdir(parents=True)
    shutil.copy(short_clip, videos / "a.mp4")
    shutil.copy(videos / "a.mp4", videos / "sub" / "b.MP4")
    shutil.copy(videos / "a.mp4", videos / "a.mov")  # same output a.pose as a.mp4: reported, not converted
    _black_clip(videos / "black.avi")
    (videos / "notes.txt").write_text("not a video")
    out = tmp_path / "poses"
    runner = CliRunner()
    result = runner.invoke(app, ["pose", str(videos), "-o", str(out), "--workers", "2"])
    assert result.exit_code == 1, result.output  # failures are reported, the others converted
    assert "converted 2, skipped 0 (already converted), failed 2" in result.output
    assert "black.avi: no person detected" in result.output and "a.mp4: same output" in result.output
    frames, _ = _frame_count(videos / "a.mp4")
    assert frames == 12
    for rel in ("a.pose", "sub/b.pose"):
        assert read_pose(out / rel).body.data.shape[0] == frames
    assert not (out / "black.pose").exists() and not list(out.rglob("*.tmp"))

    (videos / "black.avi").unlink()
    (videos / "a.mov").unlink()
    result = runner.invoke(app, ["pose", str(videos), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "converted 0, skipped 2 (already converted), failed 0" in result.output


def test_video_embedding_equals_its_pose_embedding(holistic, video_pose, tiny_model, tmp_path):
    from typer.testing import CliRunner

    from signclip.cli import app
    from signclip.pose.video import write_pose

    pose_file = tmp_path / "test_video.pose"
    write_pose(video_pose, pose_file)
    # video bytes as the HTTP service passes them (detected by magic bytes), the .pose file, the video path
    emb = tiny_model.encode_pose([str(pose_file), holistic.read_bytes()])
    assert float(emb[1] @ emb[0]) >= 0.999  # cosine of normalised embeddings

    model_dir = tiny_model.save(tmp_path / "model")
    result = CliRunner().invoke(app, ["embed", str(model_dir), str(holistic), "-o", str(tmp_path / "e.npy")])
    assert result.exit_code == 0, result.output
    assert float(np.load(tmp_path / "e.npy")[0] @ emb[0]) >= 0.999


def test_long_videos_are_refused_before_decoding(holistic, tmp_path):
    """A 30-second blank video once cost the server 9 s of CPU before its 422: over the limit, it is refused
    from its header (and, for a header without a duration, once decoding passes the limit)."""
    import time

    from signclip.errors import PoseInputError

    long = _black_clip(tmp_path / "long.mp4", frames=750)  # 30 s at 25 fps
    start = time.process_time()
    with pytest.raises(PoseInputError, match="lasts 30.0 s; at most 20 s"):
        video_to_pose(long.read_bytes(), "long.mp4", max_seconds=20)
    assert time.process_time() - start < 2
    with pytest.raises(PoseInputError, match="lasts"):
        video_to_pose(holistic, max_seconds=1)  # the real video: 58 frames, 1.9 s


def test_the_server_refuses_long_video_uploads(holistic, tiny_model, tmp_path):
    import httpx

    from signclip.serve import ServerThread, ServeSettings, create_app

    app = create_app(tiny_model, None, ServeSettings(max_video_seconds=1.0))
    with ServerThread(app) as url:
        r = httpx.post(url + "/api/embed/pose", files={"file": ("clip.mp4", holistic.read_bytes())}, timeout=60)
        assert r.status_code == 422 and "at most 1 s" in r.json()["detail"]
        assert httpx.get(url + "/api/health").status_code == 200
