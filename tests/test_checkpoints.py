"""Run folders survive crashes: checkpoints written aside and swapped in, a damaged one falls back to the
previous, nothing is unpickled, a second trainer is refused, a SIGKILL never costs more than one save."""
from __future__ import annotations

import fractions
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

import signclip
from signclip.config import TrainConfig
from signclip.data.splits import split_dataset
from signclip.errors import DamagedFileError, RunLockedError
from signclip.training import prepare_splits, train
from signclip.training.checkpoints import load_checkpoint, load_trainer_state


@pytest.fixture(scope="module")
def splits(lexicon, tiny_model):
    df = split_dataset(lexicon.sample(22, random_state=1).reset_index(drop=True), 6 / 22, 0.0, seed=0)
    return prepare_splits(df, tiny_model, TrainConfig(), progress=False)


def small_model():
    torch.manual_seed(0)
    return signclip.create_model(signclip.get_model_config("tiny", pose_layers=1, freeze_text=True))


CFG = TrainConfig(epochs=2, batch_size=8, warmup_steps=1, save_every=1, eval_every=2)  # 4 steps, saved each


def run(splits, out, **kwargs):
    fresh = {k: type(v)(v.df, v.arrays) for k, v in splits.items()}
    return train(small_model(), fresh, CFG, out, progress=False, **kwargs)


class Payload:
    """Unpickling this would create a file: the proof that a pickle was executed."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("payload", [Payload, fractions.Fraction])
def test_a_refused_trainer_state_does_not_advise_the_unsafe_load(tmp_path, payload):
    """torch's message says to reload with weights_only=False, which would run the pickled code: the message
    names what was refused and nothing else."""
    marker = tmp_path / "pwned"
    torch.save({"step": payload(marker) if payload is Payload else payload(1, 3)}, tmp_path / "trainer_state.pt")
    with pytest.raises(DamagedFileError) as e:
        load_trainer_state(tmp_path / "trainer_state.pt", torch.device("cpu"))
    message = str(e.value)
    assert message.startswith(f"{tmp_path / 'trainer_state.pt'}: refused: it pickles "), message
    assert ("io.open" if payload is Payload else "fractions.Fraction") in message
    assert "weights_only" not in message and "trust" not in message and "\n" not in message
    assert not marker.exists()


@pytest.mark.slow  # trains
def test_damaged_checkpoints_fall_back_or_fail_in_one_line(splits, tmp_path):
    out = tmp_path / "run"
    run(splits, out)
    last, previous = out / "checkpoints" / "last", out / "checkpoints" / "previous"
    assert json.loads((last / "config.json").read_text()) and (previous / "trainer_state.pt").exists()
    weights = last / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated
    with pytest.warns(UserWarning, match="resuming from .*previous at step 3"):
        summary = run(splits, out, resume=True)
    assert summary["steps"] == 4
    assert pd.read_csv(out / "log.csv")["step"].tolist() == [1, 2, 3, 4]  # nothing lost, nothing twice

    marker = tmp_path / "pwned"
    for folder in (last, previous):
        torch.save({"step": Payload(marker)}, folder / "trainer_state.pt")
    with pytest.raises(DamagedFileError, match="no usable checkpoint") as e:
        run(splits, out, resume=True)
    assert not marker.exists()  # refused, never executed
    assert "\n" not in str(e.value) and "trainer_state.pt" in str(e.value)


@pytest.mark.slow  # trains
def test_a_missing_last_checkpoint_resumes_from_the_previous_one(splits, tmp_path):
    """A crash between the two renames of the checkpoint swap leaves `previous` and no `last`."""
    out = tmp_path / "run"
    run(splits, out)
    import shutil

    shutil.rmtree(out / "checkpoints" / "last")
    with pytest.warns(UserWarning, match="previous"):
        assert run(splits, out, resume=True)["steps"] == 4


@pytest.mark.slow  # trains
def test_a_log_without_checkpoint_is_kept(splits, tmp_path):
    out = tmp_path / "run"
    run(splits, out)
    import shutil

    shutil.rmtree(out / "checkpoints")
    with pytest.warns(UserWarning, match="no checkpoint to resume from"):
        run(splits, out, resume=True)
    assert len((out / "log.jsonl.old").read_text().splitlines()) == 4


@pytest.mark.slow  # trains
def test_a_second_trainer_on_the_same_folder_is_refused(splits, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", f"""
import time
from filelock import FileLock
with FileLock({str(out / 'train.lock')!r}):
    print("held", flush=True)
    time.sleep(60)
"""], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match="another training run"):
            run(splits, out)
    finally:
        holder.kill()
        holder.wait()
    assert run(splits, out)["steps"] == 4  # free again


@pytest.mark.slow  # trains
def test_sigkill_during_training_costs_at_most_one_save(lexicon, tmp_path):
    """`signclip train` killed with SIGKILL at staggered moments, then resumed each time: it always
    continues from a checkpoint (never from step 0), and the finished log has every step once."""
    lexicon.sample(30, random_state=4).to_csv(tmp_path / "m.csv", index=False)
    (tmp_path / "cfg.json").write_text(json.dumps({"epochs": 8, "batch_size": 8, "save_every": 1,
                                                   "warmup_steps": 1, "val_fraction": 0.2, "test_fraction": 0}))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "signclip.cli", "train", str(tmp_path / "m.csv"), "-o", str(out), "-m",
           "tiny", "--config", str(tmp_path / "cfg.json")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    resumed_from = 0
    for delay in (0.0, 0.3, 0.7):
        trainer = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 240
        while time.time() < deadline and trainer.poll() is None:
            log = out / "log.jsonl"
            # a row is logged before its step is saved: row n + 2 means step n + 1 is saved since the resume
            if log.exists() and len(log.read_text().splitlines()) >= resumed_from + 2:
                time.sleep(delay)  # then kill somewhere in the next step or its save
                break
            time.sleep(0.02)
        trainer.send_signal(signal.SIGKILL)
        trainer.wait()
        model, state = load_checkpoint(out / "checkpoints" / "last", torch.device("cpu"))
        assert state["step"] > resumed_from  # progress was kept, never back to step 0
        resumed_from = state["step"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    log = pd.read_csv(out / "log.csv")
    assert log["step"].tolist() == list(range(1, len(log) + 1)) and len(log) > resumed_from
