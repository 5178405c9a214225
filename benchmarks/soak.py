"""Soak test: many clients send a mix of good and hostile requests to a real `signclip serve` on 127.0.0.1.

    python benchmarks/soak.py --clients 32 --seconds 60

Starts `signclip serve` (a fresh tiny model fitted on lexicon poses, an index of lexicon poses and
prompts) in a subprocess, then runs ``--clients`` concurrent clients for ``--seconds``. Each request is
drawn from CASES: embedding and search requests that must succeed, and the bad inputs the service must
refuse with a 4xx (corrupt pose, frame rate 0.001, lone surrogate, keypoints of 1e20, oversize upload,
wrong content type, bad JSON, unknown language, k = 0, a trickled body, a connection that never sends its
headers). Prints a table per case (requests, unexpected statuses, p50 / p99 latency) and the server's
peak RSS (VmHWM) and RSS at the end. Target: 0 unexpected statuses, 0 5xx, RSS bounded.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import httpx
import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def prepare(folder: Path, n_index: int = 200) -> tuple[Path, Path, list[str]]:
    """A fresh tiny model fitted on lexicon poses, and an index of lexicon poses and their prompts."""
    import signclip
    from signclip.data.manifests import load_lexicon
    from signclip.serve.index import SearchIndex

    lexicon = load_lexicon().sample(n_index, random_state=0).reset_index(drop=True)
    model = signclip.create_model("tiny").eval()
    arrays = [model.preprocess_pose(p) for p in lexicon["path"][:60]]
    model.fit_preprocessing(arrays, lexicon["spoken_language"], lexicon["signed_language"])
    model.save(folder / "model")
    index = SearchIndex.for_model(model, model_path=str(folder / "model"))
    index.add("pose", model.encode_pose(lexicon["path"].tolist()), lexicon[["path", "text", "signed_language"]])
    prompts = model.prompts(lexicon["text"].tolist(), lexicon["spoken_language"].tolist(),
                            lexicon["signed_language"].tolist())
    index.add("text", model.encode_text(prompts), lexicon[["text", "signed_language"]].assign(prompt=prompts))
    index.save(folder / "index")
    return folder / "model", folder / "index", lexicon["path"].tolist()


def hostile_payloads(path: str) -> dict[str, bytes | list]:
    """Bodies built from a real pose: low frame rate, corrupt bytes, keypoints of 1e20."""
    from pose_format import Pose
    from pose_format.numpy import NumPyPoseBody

    from signclip.config import PoseConfig
    from signclip.pose.io import read_pose
    from signclip.pose.preprocess import preprocess

    pose = read_pose(path)
    buf = io.BytesIO()
    Pose(pose.header, NumPyPoseBody(0.001, pose.body.data, pose.body.confidence)).write(buf)
    far = np.nan_to_num(preprocess(path, PoseConfig()))
    far[0, -1] = 1e20
    data = open(path, "rb").read()
    return {"slow_fps": buf.getvalue(), "corrupt": data[:200] + bytes(range(256)) * 4, "far": far.tolist(),
            "good": data}


def cases(paths: list[str], payloads: dict, limit: int) -> dict[str, tuple[dict, set[int]]]:
    """name -> (httpx request arguments, the statuses that are correct)."""
    pose = payloads["good"]
    return {
        "embed text": (dict(method="POST", url="/api/embed/text", json={"text": ["A", "house"], "spoken_language": "en",
                                                                        "signed_language": "ase"}), {200}),
        "embed pose": (dict(method="POST", url="/api/embed/pose", files={"file": ("a.pose", pose)}), {200}),
        "search text": (dict(method="POST", url="/api/search", json={"text": "B", "k": 5}), {200}),
        "search pose": (dict(method="POST", url="/api/search",
                             json={"pose": base64.b64encode(pose).decode(), "k": 5}), {200}),
        "corrupt pose": (dict(method="POST", url="/api/embed/pose", files={"file": ("c.pose", payloads["corrupt"])}),
                         {422}),
        "fps 0.001": (dict(method="POST", url="/api/embed/pose", files={"file": ("s.pose", payloads["slow_fps"])}),
                      {422}),
        "lone surrogate": (dict(method="POST", url="/api/embed/text", content=json.dumps({"text": ["\ud800"]}),
                                headers={"content-type": "application/json"}), {422}),
        "keypoints 1e20": (dict(method="POST", url="/api/embed/pose", json={"keypoints": payloads["far"]}), {422}),
        "oversize": (dict(method="POST", url="/api/embed/pose", content=b"\0" * (limit + 1),
                          headers={"content-type": "application/octet-stream"}), {413}),
        "wrong content type": (dict(method="POST", url="/api/embed/text", content=b"hi",
                                    headers={"content-type": "text/plain"}), {415}),
        "bad json": (dict(method="POST", url="/api/embed/text", content=b"{nope",
                          headers={"content-type": "application/json"}), {400}),
        "unknown language": (dict(method="POST", url="/api/embed/text",
                                  json={"text": ["A"], "signed_language": "xx"}), {422}),
        "k = 0": (dict(method="POST", url="/api/search", json={"text": "A", "k": 0}), {422}),
    }


async def raw_case(port: int, kind: str) -> int:
    """A trickled body (expects 408) or a connection that never finishes its headers (expects a close)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if kind == "trickled body":
            writer.write(b"POST /api/embed/text HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n{\"te")
            line = await asyncio.wait_for(reader.readline(), 30)
            return int(line.split()[1]) if line else 0
        writer.write(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")
        data = await asyncio.wait_for(reader.read(100), 30)
        return 499 if data == b"" else 200  # 499: closed by the server, as it should be
    finally:
        writer.close()


async def client(base: str, port: int, table: dict, until: float, seed: int, results: dict) -> None:
    rng = random.Random(seed)
    names = list(table) + ["trickled body", "silent connection"]
    weights = [4 if table[n][1] == {200} else 1 for n in table] + [0.2, 0.2]
    async with httpx.AsyncClient(base_url=base, timeout=60) as c:
        while time.time() < until:
            name = rng.choices(names, weights)[0]
            start = time.perf_counter()
            try:
                if name in ("trickled body", "silent connection"):
                    status, ok = await raw_case(port, name), {408} if name == "trickled body" else {499}
                else:
                    args, ok = table[name]
                    status = (await c.request(**args)).status_code
            except (httpx.HTTPError, OSError, asyncio.TimeoutError) as e:
                status, ok = -1, set()
                results["exceptions"].append(f"{name}: {type(e).__name__}: {e}")
            results[name].append((status, time.perf_counter() - start, status in ok))


def rss(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of a process in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    model, index, paths = prepare(tmp)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    limit_mb = 8
    server = subprocess.Popen([sys.executable, "-m", "signclip.cli", "serve", str(model), "--index", str(index),
                               "--port", str(port), "--max-upload-mb", str(limit_mb), "--read-timeout", "3",
                               "--header-timeout", "3", "--threads", "1"],
                              stdout=subprocess.DEVNULL, stderr=open(tmp / "server.log", "w"))
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(base + "/api/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        start_rss = rss(server.pid)[0]
        table = cases(paths, hostile_payloads(paths[0]), limit_mb * 1024 * 1024)
        results: dict = defaultdict(list)
        until = time.time() + args.seconds

        async def run_all():
            await asyncio.gather(*(client(base, port, table, until, i, results) for i in range(args.clients)))

        samples = []
        stop = False

        def sample():
            while not stop:
                samples.append(rss(server.pid)[0])
                time.sleep(1)

        import threading
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        asyncio.run(run_all())
        stop = True
        end_rss, peak = rss(server.pid)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    print(f"{args.clients} clients x {args.seconds:.0f} s against `signclip serve` (tiny, index of {len(paths)} "
          f"poses + prompts, 1 torch thread); load average {os.getloadavg()[0]:.1f}\n")
    print("| case | requests | unexpected | 5xx | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|---:|")
    total = unexpected = fivexx = 0
    for name, rows in sorted(results.items()):
        if name == "exceptions":
            continue
        lat = np.array([r[1] for r in rows]) * 1000
        bad = sum(not r[2] for r in rows)
        five = sum(r[0] >= 500 for r in rows)
        total, unexpected, fivexx = total + len(rows), unexpected + bad, fivexx + five
        p50, p99 = np.percentile(lat, [50, 99])
        print(f"| {name} | {len(rows)} | {bad} | {five} | {p50:.0f} | {p99:.0f} |")
    print(f"| **all** | {total} | {unexpected} | {fivexx} | | |")
    print(f"\nserver RSS: {start_rss:.0f} MiB after start, peak {peak:.0f} MiB, {end_rss:.0f} MiB at the end "
          f"(sampled max {max(samples):.0f} MiB); client exceptions: {len(results['exceptions'])}")
    for line in results["exceptions"][:5]:
        print("  ", line)


if __name__ == "__main__":
    main()
