"""Distributed training: 2 gloo processes give the single-process loss and gradients of the
same global batch; `torchrun -m signclip.cli train` checkpoints and resumes; `embed` over shards under
torchrun merges the ranks' parts in input order."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from signclip.batching import pad_poses
from signclip.config import TrainConfig
from signclip.data.arrays import load_arrays
from signclip.training.batches import epoch_batches, rank_batches

pytestmark = pytest.mark.slow  # spawns gloo processes and torchrun

# fp32 on CPU; only the order of floating-point sums differs between 1 and 2 processes
LOSS_RTOL = 1e-5
GRAD_RTOL, GRAD_ATOL = 1e-4, 1e-6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _batch(data: dict, idx: list[int], model):
    x, mask = pad_poses([data["arrays"][i] for i in idx])
    return x, mask, model.tokenize([data["prompts"][i] for i in idx]), torch.tensor([data["ids"][i] for i in idx])


def _rank_step(rank: int, world: int, port: int, model_dir: str, data_path: str, out_path: str) -> None:
    """One process of the 2-process run: its half of the global batch, DDP + gather_with_grad."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from signclip.models.signclip import SignCLIP
    from signclip.training.distributed import cleanup, gather_with_grad, init_distributed
    from signclip.training.loop import wrap_ddp
    from signclip.training.objectives import Objective

    env = init_distributed("cpu")
    model = SignCLIP.load(model_dir)  # eval mode: no dropout, so both runs compute the same function
    data = torch.load(data_path, weights_only=False)
    idx = rank_batches([list(range(len(data["arrays"])))], env.rank, env.world_size)[0]
    objective = wrap_ddp(Objective(model, TrainConfig(), gather_with_grad), env.device)
    loss, _ = objective(*_batch(data, idx, model))
    loss.backward()
    if env.is_main:
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        torch.save({"loss": loss.item(), "grads": grads}, out_path)
    cleanup()


@pytest.fixture(scope="module")
def global_batch(lexicon, tiny_model, tmp_path_factory):
    """A saved tiny model (training statistics set) and a global batch of 12 lexicon poses."""
    from signclip.data.arrays import table_prompts

    tmp = tmp_path_factory.mktemp("dist")
    rows = lexicon.sample(12, random_state=3).reset_index(drop=True)
    arrays, kept, _ = load_arrays(rows, tiny_model.cfg.pose, progress=False)
    tiny_model.fit_preprocessing(arrays, lexicon["spoken_language"], lexicon["signed_language"])
    prompts = table_prompts(tiny_model, kept)
    index = {p: i for i, p in enumerate(sorted(set(prompts)))}
    data = {"arrays": arrays, "prompts": prompts, "ids": [index[p] for p in prompts]}
    torch.save(data, tmp / "data.pt")
    tiny_model.save(tmp / "model")
    return tmp, data


def test_two_gloo_processes_match_single_process(global_batch):
    from signclip.models.signclip import SignCLIP
    from signclip.training.objectives import Objective

    tmp, data = global_batch
    mp.spawn(_rank_step, args=(2, _free_port(), str(tmp / "model"), str(tmp / "data.pt"), str(tmp / "ddp.pt")),
             nprocs=2, join=True)
    ddp = torch.load(tmp / "ddp.pt", weights_only=False)

    model = SignCLIP.load(tmp / "model")
    loss, _ = Objective(model, TrainConfig())(*_batch(data, list(range(len(data["arrays"]))), model))
    loss.backward()
    single = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    assert ddp["loss"] == pytest.approx(loss.item(), rel=LOSS_RTOL)
    assert set(single) <= set(ddp["grads"])  # DDP gives parameters the loss does not use zeros, not None
    assert any(g.abs().max() > 0 for n, g in single.items() if n.startswith("pose."))
    for name, g in ddp["grads"].items():
        torch.testing.assert_close(g, single.get(name, torch.zeros_like(g)), rtol=GRAD_RTOL, atol=GRAD_ATOL,
                                   msg=name)


def test_rank_batches_split_global_batches():
    batches = epoch_batches(23, 4 * 2, seed=0, epoch=1)  # global batch 8 = 4 per rank x 2 ranks
    parts = [rank_batches(batches, r, 2) for r in range(2)]
    assert len(parts[0]) == len(parts[1]) == 3
    for p0, p1, g in zip(parts[0], parts[1], batches):
        assert len(p0) == len(p1) and not set(p0) & set(p1) and set(p0 + p1) <= set(g)
    assert [len(p) for p in parts[0]] == [4, 4, 3]  # the last global batch of 7 is trimmed to 6
    assert rank_batches(batches, 0, 1) == batches


def _torchrun(*args: str, cwd) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "signclip.cli", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def test_torchrun_cli_train_checkpoints_and_resumes(lexicon, tmp_path):
    from signclip.config import get_model_config

    columns = ["path", "text", "spoken_language", "signed_language"]
    lexicon.sample(40, random_state=5)[columns].to_csv(tmp_path / "manifest.csv", index=False)
    (tmp_path / "model.json").write_text(json.dumps(get_model_config("tiny", pose_layers=1).to_dict()))
    common = ["train", "manifest.csv", "-o", "run", "--model", "model.json", "--batch-size", "8", "--device", "cpu"]
    _torchrun(*common, "--epochs", "1", cwd=tmp_path)
    run = tmp_path / "run"
    # 28 training poses, global batch 16: batches of 16 and 12 -> 2 steps per epoch, one checkpoint
    state = torch.load(run / "checkpoints" / "last" / "trainer_state.pt", weights_only=False)
    assert state["step"] == 2 and state["world_size"] == 2
    assert [json.loads(r)["step"] for r in (run / "log.jsonl").read_text().splitlines()] == [1, 2]
    _torchrun(*common, "--epochs", "2", cwd=tmp_path)  # resumes at step 2
    rows = [json.loads(r) for r in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and rows[2]["epoch"] == 1
    assert torch.load(run / "checkpoints" / "last" / "trainer_state.pt", weights_only=False)["step"] == 4
    assert (run / "best" / "model.safetensors").exists()


def test_torchrun_embed_shards_merges_in_input_order(lexicon, global_batch, tmp_path):
    import pandas as pd

    from signclip.data.shards import ShardSplit, pack_shards
    from signclip.models.signclip import load

    model_dir = global_batch[0] / "model"
    model = load(model_dir)
    pack_shards(lexicon.sample(20, random_state=2), tmp_path / "shards", model, rows_per_group=3, progress=False)
    _torchrun("embed", str(model_dir), "shards", "-o", "emb.parquet", "--precision", "fp32", cwd=tmp_path)
    df = pd.read_parquet(tmp_path / "emb.parquet")
    assert df["index"].tolist() == list(range(20)) and not (tmp_path / "emb.parquet.parts").exists()
    arrays = [a for _, a, _ in ShardSplit(tmp_path / "shards", None).rows()]
    np.testing.assert_allclose(np.stack(df["embedding"]), model.encode_pose(arrays), atol=1e-5)


def test_torchrun_cli_finetune_checkpoints_and_resumes(lexicon, tmp_path):
    """`signclip finetune` under torchrun: a task model trained data-parallel, checkpointed and resumed."""
    from signclip.config import get_model_config
    from signclip.data.compose import compose_dataset, spelled_words

    clips = lexicon[lexicon["signed_language"] == "ase"]
    compose_dataset(clips, spelled_words(clips, 20, max_letters=4, seed=2), tmp_path / "words", progress=False)
    (tmp_path / "model.json").write_text(json.dumps(get_model_config("tiny", pose_layers=1).to_dict()))
    common = ["finetune", "cslr", "words", "-o", "run", "--model", "model.json", "--batch-size", "4", "--device", "cpu"]
    _torchrun(*common, "--steps", "2", cwd=tmp_path)
    run = tmp_path / "run"
    state = torch.load(run / "checkpoints" / "last" / "trainer_state.pt", weights_only=True)
    assert state["step"] == 2 and state["world_size"] == 2
    _torchrun(*common, "--steps", "4", cwd=tmp_path)
    assert [json.loads(r)["step"] for r in (run / "log.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    assert (run / "best" / "task.json").exists()
