"""signclip.cpu: the OpenMP wait policy set before torch loads, the thread count chosen from the affinity and the
other processes' load, ``--threads`` overriding it, and bf16 inference within the cosine promised."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import signclip
from signclip.cpu import (
    POLICY,
    adapt_threads,
    fair_threads,
    resolve_precision,
    usable_cores,
    use_threads,
    wait_policy_for,
)

SRC = str(Path(__file__).resolve().parents[1] / "src")


def python(code: str, **env: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter with this checkout's signclip (and ``env``)."""
    environ = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    environ.update(PYTHONPATH=SRC, **env)
    return subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, check=True)


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    POLICY.clear()
    torch.set_num_threads(threads)


def test_wait_policy_is_passive_only_beside_a_busy_neighbour():
    assert wait_policy_for(1.0) == "PASSIVE"
    assert wait_policy_for(0.5) == "PASSIVE"
    assert wait_policy_for(0.1) is None  # idle: OpenMP's own short spin, faster alone
    assert wait_policy_for(None) is None  # load unknown


def test_a_command_beside_a_busy_process_waits_passively_before_torch_loads_openmp():
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        out = python("import sys; from typer.testing import CliRunner; from signclip.cli import app\n"
                     "assert CliRunner().invoke(app, ['train', '--help']).exit_code == 0\n"
                     "assert 'torch' not in sys.modules; import torch; torch.ones(4).sum()",
                     OMP_DISPLAY_ENV="TRUE")  # GNU OpenMP prints the settings it started with
        kept = python("from typer.testing import CliRunner; from signclip.cli import app; import os\n"
                      "CliRunner().invoke(app, ['train', '--help']); print(os.environ['OMP_WAIT_POLICY'])",
                      OMP_WAIT_POLICY="ACTIVE")
    finally:
        busy.kill()
    assert kept.stdout.strip() == "ACTIVE"  # a user's setting is kept
    if "OPENMP DISPLAY ENVIRONMENT" not in out.stderr:
        pytest.skip("this torch's OpenMP does not display its environment")
    assert "OMP_WAIT_POLICY = 'PASSIVE'" in out.stderr


def test_fair_threads_leaves_the_busy_cores_to_others():
    assert fair_threads(2, 0.0) == 2
    assert fair_threads(2, 0.3) == 2
    assert fair_threads(2, 1.0) == 1  # one busy neighbour on 2 cores: 1 thread
    assert fair_threads(2, 3.0) == 1  # never fewer than 1
    assert fair_threads(8, 3.2) == 5
    assert fair_threads(4, None) == 4  # load unknown: every usable core


def test_thread_count_follows_the_affinity():
    out = python("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
                 "from signclip.cpu import use_threads, usable_cores; import torch\n"
                 "p = use_threads(None); print(usable_cores(), p.threads, torch.get_num_threads())")
    assert out.stdout.split() == ["1", "1", "1"]
    assert usable_cores() <= len(os.sched_getaffinity(0))


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
def test_busy_neighbours_on_every_core_leave_one_thread():
    cpus = sorted(os.sched_getaffinity(0))[:2]
    loops = [subprocess.Popen([sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{c}}})\nwhile True: pass"])
             for c in cpus]
    try:
        out = python(f"import os; os.sched_setaffinity(0, {set(cpus)})\nfrom signclip.cpu import use_threads\n"
                     "p = use_threads(None); print(p.threads, p.others)")
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()
    threads, others = out.stdout.split()
    assert threads == "1" and float(others) >= 1.0


def test_threads_option_overrides_and_reaches_new_threads(restore_threads):
    policy = use_threads(1)
    assert (policy.threads, torch.get_num_threads()) == (1, 1)
    assert "--threads" in policy.describe()
    seen = []
    worker = threading.Thread(target=lambda: seen.append((adapt_threads(), torch.get_num_threads())))
    worker.start()
    worker.join()
    assert seen == [(1, 1)]
    with pytest.raises(ValueError):
        use_threads(0)


def test_resolve_precision():
    from signclip.cpu import cpu_has_bf16

    assert resolve_precision("auto", "cpu") == ("bf16" if cpu_has_bf16() else "fp32")
    assert resolve_precision("auto", "cuda") == "fp32"  # GPUs keep their path
    assert resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16")


def cos_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def test_bf16_inference_within_the_promised_cosine(tiny_model, lexicon_paths, tmp_path):
    saved = tiny_model.save(tmp_path / "tiny")
    fp32, bf16 = signclip.load(saved), signclip.load(saved)
    assert bf16.set_precision("bf16") == "bf16" and bf16.precision == "bf16"
    assert bf16.pose.frame_mlp[0].weight.dtype == torch.bfloat16
    assert bf16.pose.feature_mean.dtype == torch.float32  # statistics, norms and biases stay fp32
    prompts = [f"<en> <ase> {t}" for t in "ABCDEFGH"]
    for a, b in ((fp32.encode_pose(lexicon_paths), bf16.encode_pose(lexicon_paths)),
                 (fp32.encode_text(prompts), bf16.encode_text(prompts))):
        assert b.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1, atol=1e-5)  # normalised in fp32
        assert cos_rows(a, b).min() >= 0.999
    alone = np.stack([bf16.encode_pose(p) for p in lexicon_paths[:4]])
    assert cos_rows(alone, bf16.encode_pose(lexicon_paths[:4])).min() >= 0.999  # padding-correct in bf16 too
    bf16.save(tmp_path / "m")  # saved in fp32
    assert signclip.load(tmp_path / "m").pose.frame_mlp[0].weight.dtype == torch.float32
    assert bf16.set_precision("fp32") == "fp32" and bf16.pose.frame_mlp[0].weight.dtype == torch.float32


@pytest.fixture(scope="module")
def cpu_manifest(small_manifest):
    """The 24-pose manifest and a 1-layer tiny model config beside it."""
    import json

    (small_manifest / "model.json").write_text(json.dumps({"name": "tiny-test", "pose_layers": 1,
                                                          "freeze_text": True}))
    return small_manifest


@pytest.mark.slow  # trains
@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_train_precision_and_threads_are_chosen_and_printed(cpu_manifest, tmp_path, precision, restore_threads):
    import pandas as pd
    from typer.testing import CliRunner

    from signclip.cli import app

    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", str(cpu_manifest / "manifest.csv"), "-o", str(run), "--model",
                                      str(cpu_manifest / "model.json"), "--steps", "2", "--batch-size", "8",
                                      "--threads", "1", "--precision", precision])
    assert result.exit_code == 0, result.output
    assert "CPU: 1 torch thread(s) (--threads)" in result.output
    assert f"precision {precision}" in result.output
    log = pd.read_csv(run / "log.csv")
    assert len(log) == 2 and np.isfinite(log["loss"]).all() and (log["threads"] == 1).all()
    assert signclip.load(run / "best").pose.frame_mlp[0].weight.dtype == torch.float32  # bf16 only inside autocast


def test_a_bad_precision_is_one_readable_line(cpu_manifest, tmp_path):
    from typer.testing import CliRunner

    from signclip.cli import app

    result = CliRunner().invoke(app, ["train", str(cpu_manifest / "manifest.csv"), "-o", str(tmp_path / "run"),
                                      "--precision", "fp16"])
    assert result.exit_code == 2 and "precision: expected one of auto, fp32, bf16; got 'fp16'" in result.output


def test_embed_prints_its_threads_and_precision(tiny_model, lexicon_paths, tmp_path, restore_threads):
    from typer.testing import CliRunner

    from signclip.cli import app

    saved = tiny_model.save(tmp_path / "tiny")
    out = tmp_path / "emb.npy"
    result = CliRunner().invoke(app, ["embed", str(saved), *lexicon_paths[:3], "-o", str(out), "--precision", "auto",
                                      "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert f"CPU: 1 torch thread(s) (--threads); precision {resolve_precision('auto')}" in result.output
    direct = signclip.load(saved).encode_pose(lexicon_paths[:3])
    assert cos_rows(np.load(out), direct).min() >= 0.999


def test_the_server_embeds_at_auto_precision_within_the_promised_cosine(lexicon_paths, lexicon, tmp_path):
    import httpx

    from serve_utils import live_server, untrained_model_dir

    model_dir = untrained_model_dir(tmp_path / "model", lexicon)
    fp32 = signclip.load(model_dir).encode_pose(lexicon_paths[:8])
    with live_server(model_dir, lexicon_paths[:8], lexicon) as (url, model, _):  # default settings: auto
        assert model.precision == resolve_precision("auto")
        files = [("file", (f"p{i}.pose", open(p, "rb").read())) for i, p in enumerate(lexicon_paths[:8])]
        r = httpx.post(f"{url}/api/embed/pose", files=files, timeout=60)
    assert r.status_code == 200, r.text
    assert cos_rows(np.array(r.json()["embedding"]), fp32).min() >= 0.999
