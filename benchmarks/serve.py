"""HTTP serving throughput and latency: embed pose / embed text / search at 1, 8, 32 concurrent clients,
with and without dynamic batching. The server is the real `signclip serve` in a subprocess on 127.0.0.1
(tiny model, index of lexicon poses + texts); clients are threads with keep-alive httpx connections.
Each cell runs for --seconds; prints a markdown table (requests/s, p50/p99 ms, failed requests).

    python benchmarks/serve.py --seconds 6 --long 30
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def setup(root: Path, n_poses: int) -> tuple[Path, Path, list[str]]:
    """A servable tiny model (lexicon languages and pose statistics), an index, and query poses."""
    from signclip.data.manifests import load_lexicon
    from signclip.models.signclip import load
    from signclip.serve.index import SearchIndex

    from serve_utils import untrained_model_dir

    lexicon = load_lexicon()
    model_dir = Path(untrained_model_dir(root / "model", lexicon))
    model = load(model_dir)
    rows = lexicon.sample(n_poses, random_state=0).reset_index(drop=True)
    index = SearchIndex(model.cfg.embed_dim)
    index.add("pose", model.encode_pose(rows["path"].tolist()), rows[["path", "text", "signed_language"]])
    prompts = model.prompts(rows["text"].tolist(), rows["spoken_language"].tolist(), rows["signed_language"].tolist())
    index.add("text", model.encode_text(prompts), rows[["text"]].assign(prompt=prompts))
    index.save(root / "index")
    return model_dir, root / "index", rows["path"].tolist()


def start_server(model_dir: Path, index_dir: Path, port: int, batching: bool) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "signclip.cli", "serve", str(model_dir), "--index", str(index_dir),
           "--port", str(port), "--batching" if batching else "--no-batching"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
        if proc.poll() is not None:
            raise RuntimeError(proc.stderr.read())
    raise RuntimeError("server did not start")


def model_ceiling(model_dir: Path, paths: list[str], seconds: float = 3.0) -> tuple[float, float]:
    """Poses/s of the model alone (no HTTP), one pose per call vs 32 per call, on the same poses: the
    most that dynamic batching can gain for pose embedding on this machine."""
    from signclip.models.signclip import load

    model = load(model_dir)
    arrays = [model.preprocess_pose(p) for p in paths]
    rates = []
    for batch in (1, 32):
        model.encode_arrays(arrays[:batch], batch)  # warm-up
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            chunk = [arrays[(n + j) % len(arrays)] for j in range(batch)]
            model.encode_arrays(chunk, batch)
            n += batch
        rates.append(n / (time.perf_counter() - start))
    return rates[0], rates[1]


JSON = {"content-type": "application/json"}


def load_test(url: str, payloads: list[tuple[str, bytes]], clients: int, seconds: float) -> dict:
    """``clients`` threads send requests back to back for ``seconds`` (bodies serialised beforehand, so the
    client threads, which share the CPU with the server, spend as little as possible per request)."""
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def worker(offset: int) -> None:
        i = offset
        with httpx.Client(base_url=url, timeout=60) as c:
            while time.perf_counter() < stop:
                path, body = payloads[i % len(payloads)]
                i += clients
                t = time.perf_counter()
                try:
                    ok = c.post(path, content=body, headers=JSON).status_code == 200
                except httpx.HTTPError:
                    ok = False
                dt = time.perf_counter() - t
                with lock:
                    if ok:
                        latencies.append(dt)
                    else:
                        failures[0] += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    lat = np.array(latencies) * 1000
    return {"rps": len(lat) / wall, "p50": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
            "p99": float(np.percentile(lat, 99)) if len(lat) else float("nan"), "ok": len(lat),
            "failed": failures[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=6.0, help="duration of each cell")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--long", type=float, default=30.0, help="final 32-client pose run with batching (0: skip)")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--workloads", nargs="+", default=["embed pose", "embed text", "search (text)"])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, index_dir, paths = setup(Path(tmp), 120)
        poses = [base64.b64encode(open(p, "rb").read()).decode() for p in paths[:60]]
        words = ["A", "B", "C", "house", "hello", "thank you", "sign language", "water", "name", "school"]
        workloads = {
            "embed pose": [("/api/embed/pose", {"pose": [p]}) for p in poses],
            "embed text": [("/api/embed/text", {"text": [w]}) for w in words],
            "search (text)": [("/api/search", {"text": w, "k": 10}) for w in words],
        }
        workloads = {k: [(path, json.dumps(body).encode()) for path, body in v]
                     for k, v in workloads.items() if k in args.workloads}
        print(f"{os.cpu_count()} CPUs, {args.seconds:g} s per cell; one pose / text per request")
        one, batched = model_ceiling(model_dir, paths[:60])
        print(f"model alone (no HTTP): {one:.0f} poses/s one per call, {batched:.0f} poses/s 32 per call "
              f"({batched / one:.2f}x: the ceiling for pose batching)\n")
        print("| batching | workload | clients | req/s | p50 ms | p99 ms | ok | failed |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        results = {}
        for batching in (False, True):
            proc = start_server(model_dir, index_dir, args.port, batching)
            try:
                url = f"http://127.0.0.1:{args.port}"
                for name, payloads in workloads.items():
                    load_test(url, payloads, 2, 1.0)  # warm-up
                    for clients in args.clients:
                        r = load_test(url, payloads, clients, args.seconds)
                        results[(batching, name, clients)] = r
                        print(f"| {'on' if batching else 'off (batch 1)'} | {name} | {clients} | {r['rps']:.1f} | "
                              f"{r['p50']:.1f} | {r['p99']:.1f} | {r['ok']} | {r['failed']} |", flush=True)
                if batching and args.long:
                    r = load_test(url, workloads["embed pose"], 32, args.long)
                    print(f"| on | embed pose, {args.long:g} s | 32 | {r['rps']:.1f} | {r['p50']:.1f} | "
                          f"{r['p99']:.1f} | {r['ok']} | {r['failed']} |", flush=True)
                    info = httpx.get(url + "/api/info").json()["batches"]
                    print(f"\nmean pose batch size with batching: {info['pose'][1] / max(1, info['pose'][0]):.1f}")
            finally:
                proc.terminate()
                proc.wait(timeout=30)
        for name in workloads:
            top = max(args.clients)
            on, off = results[(True, name, top)]["rps"], results[(False, name, top)]["rps"]
            print(f"{name}: batching speed-up at {top} clients = {on / off:.2f}x")


if __name__ == "__main__":
    main()
