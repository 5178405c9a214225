"""Soak test: many clients send a mix of good and hostile requests to a real `signclip serve` on 127.0.0.1.

    python benchmarks/soak.py --clients 32 --seconds 60

Starts `signclip serve` (a fresh tiny model fitted on lexicon poses, an index of lexicon poses and
prompts, an API key) in a subprocess, then runs ``--clients`` concurrent clients for ``--seconds``. Each
request is drawn from CASES: embedding and search requests that must succeed (also a pose scaled by 1e20
and a 6,000-frame pose), and the bad inputs the service must refuse with a 4xx (corrupt pose, frame rate
0.001, lone surrogate, keypoints of 1e20, oversize upload, wrong content type, bad JSON, JSON nested 100,000
deep, unknown language, k = 0, no API key, a trickled body, a connection that never sends its headers, and
bodies trickled to routes that answer without reading them: 405, 404, and the 401 of a missing key, each
closed by the server after its answer). Prints a table per case (requests, unexpected statuses, p50 / p99
latency) and the server's peak RSS (VmHWM) and RSS at the end. Target: 0 unexpected statuses, 0 5xx, RSS
bounded. The temporary folder (model, index) is deleted at the end.
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
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx
import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
API_KEY = "soak-key"
KEY_HEADER = b"X-API-Key: " + API_KEY.encode() + b"\r\n"


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


def pose_bytes(pose) -> bytes:
    buf = io.BytesIO()
    pose.write(buf)
    return buf.getvalue()


def hostile_payloads(path: str) -> dict[str, bytes | list]:
    """Bodies built from a real pose: low frame rate, corrupt bytes, keypoints of 1e20, every coordinate
    scaled by 1e20 (a valid pose), 6,000 frames (body and hands, ~7 MB)."""
    from pose_format import Pose
    from pose_format.numpy import NumPyPoseBody

    from signclip.config import PoseConfig
    from signclip.pose.io import read_pose
    from signclip.pose.preprocess import preprocess

    pose = read_pose(path)
    body = pose.body
    far = np.nan_to_num(preprocess(path, PoseConfig()))
    far[0, -1] = 1e20
    data = open(path, "rb").read()
    part = pose.get_components(["POSE_LANDMARKS", "LEFT_HAND_LANDMARKS", "RIGHT_HAND_LANDMARKS"])
    reps = 6000 // len(body.data) + 1
    long = NumPyPoseBody(body.fps, np.ma.concatenate([part.body.data] * reps)[:6000],
                         np.concatenate([part.body.confidence] * reps)[:6000])
    return {"slow_fps": pose_bytes(Pose(pose.header, NumPyPoseBody(0.001, body.data, body.confidence))),
            "corrupt": data[:200] + bytes(range(256)) * 4, "far": far.tolist(), "good": data,
            "scaled": pose_bytes(Pose(pose.header, NumPyPoseBody(body.fps, body.data * np.float32(1e20),
                                                                 body.confidence))),
            "long": pose_bytes(Pose(part.header, long))}


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
        "pose scaled by 1e20": (dict(method="POST", url="/api/embed/pose",
                                     files={"file": ("b.pose", payloads["scaled"])}), {200}),
        "6,000 frames": (dict(method="POST", url="/api/embed/pose", files={"file": ("l.pose", payloads["long"])}),
                         {200}),
        "JSON nested 100,000 deep": (dict(method="POST", url="/api/embed/pose", content=b"[" * 100_000 + b"]" * 100_000,
                                          headers={"content-type": "application/json"}), {400}),
        "no API key": (dict(method="POST", url="/api/embed/text", json={"text": ["A"]}, headers={"X-API-Key": ""}),
                       {401}),
    }


PROBES = {"6,000 frames", "pose scaled by 1e20"}  # good requests drawn as often as a bad one (weight 1, not 4)
# raw-socket cases: name -> (weight, the status that is correct); 499 = answered as expected, then closed
RAW = {"trickled body": (0.2, {408}), "silent connection": (0.2, {499}), "unread body 405": (0.2, {499}),
       "unread body 404": (0.2, {499}), "unread body 401 (no key)": (0.2, {499})}
UNREAD = {"unread body 405": (b"POST /api/health", KEY_HEADER, 405),
          "unread body 404": (b"POST /api/nope", KEY_HEADER, 404),
          "unread body 401 (no key)": (b"POST /api/embed/text", b"", 401)}


async def raw_case(port: int, kind: str) -> int:
    """A trickled body (expects 408), a connection that never finishes its headers (expects a close), or a
    body trickled a byte at a time to a route that answers without reading it (expects the answer, then a
    close within the header timeout)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if kind == "trickled body":
            writer.write(b"POST /api/embed/text HTTP/1.1\r\nHost: x\r\n" + KEY_HEADER + b"Content-Type: "
                         b"application/json\r\nContent-Length: 100\r\n\r\n{\"te")
            line = await asyncio.wait_for(reader.readline(), 30)
            return int(line.split()[1]) if line else 0
        if kind == "silent connection":
            writer.write(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")
            data = await asyncio.wait_for(reader.read(100), 30)
            return 499 if data == b"" else 200  # 499: closed by the server, as it should be
        request_line, headers, expected = UNREAD[kind]
        writer.write(request_line + b" HTTP/1.1\r\nHost: x\r\n" + headers + b"Content-Type: application/json\r\n"
                     b"Content-Length: 100000\r\n\r\n{")
        line = await asyncio.wait_for(reader.readline(), 30)
        status = int(line.split()[1]) if line else 0
        until = time.time() + 15  # well past the 3 s header timeout
        while time.time() < until:
            try:
                writer.write(b" ")
                if await asyncio.wait_for(reader.read(4096), 0.5) == b"":
                    return 499 if status == expected else status
            except asyncio.TimeoutError:
                continue
            except OSError:  # reset by the server
                return 499 if status == expected else status
        return 0  # still open
    finally:
        writer.close()


async def client(base: str, port: int, table: dict, until: float, seed: int, results: dict) -> None:
    rng = random.Random(seed)
    names = list(table) + list(RAW)
    weights = [4 if table[n][1] == {200} and n not in PROBES else 1 for n in table] + [w for w, _ in RAW.values()]
    async with httpx.AsyncClient(base_url=base, timeout=60, headers={"X-API-Key": API_KEY}) as c:
        while time.time() < until:
            name = rng.choices(names, weights)[0]
            start = time.perf_counter()
            try:
                if name in RAW:
                    status, ok = await raw_case(port, name), RAW[name][1]
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


def long_pose(path: str, frames: int) -> bytes:
    """A real pose repeated to ``frames`` frames, only its shoulders and right hand (23 points: 368 bytes a
    frame, the shape of the upload that once cost the server 0.5 GB)."""
    from pose_format import Pose
    from pose_format.numpy import NumPyPoseBody

    from signclip.pose.io import read_pose

    pose = read_pose(path).get_components(["POSE_LANDMARKS", "RIGHT_HAND_LANDMARKS"],
                                          {"POSE_LANDMARKS": ["LEFT_SHOULDER", "RIGHT_SHOULDER"]})
    reps = frames // len(pose.body.data) + 1
    body = NumPyPoseBody(pose.body.fps, np.ma.concatenate([pose.body.data] * reps)[:frames],
                         np.concatenate([pose.body.confidence] * reps)[:frames])
    return pose_bytes(Pose(pose.header, body))


class RssSampler:
    """The resident memory of a process, sampled every ``interval`` seconds in a thread while in the block."""

    def __init__(self, pid: int, interval: float):
        self.pid, self.interval, self.samples, self._stop = pid, interval, [], threading.Event()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(rss(self.pid)[0])
            time.sleep(self.interval)

    def __enter__(self) -> "RssSampler":
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def burst(base: str, pid: int, data: bytes, n: int) -> None:
    """``n`` uploads of ``data`` at once; prints their statuses and the server's memory before, at its
    sampled peak and after."""
    async def send():
        async with httpx.AsyncClient(base_url=base, timeout=300, headers={"X-API-Key": API_KEY}) as c:
            return await asyncio.gather(*(c.post("/api/embed/pose", files={"file": ("long.pose", data)})
                                          for _ in range(n)))

    before = rss(pid)[0]
    start = time.perf_counter()
    with RssSampler(pid, 0.02) as sampler:
        answers = asyncio.run(send())
    statuses = sorted(r.status_code for r in answers)
    print(f"| {n} | {len(data) / 1e6:.1f} MB | {statuses} | {before:.0f} | {max(sampler.samples):.0f} | "
          f"{rss(pid)[0]:.0f} | {time.perf_counter() - start:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60, help="length of the mix (0: none)")
    parser.add_argument("--burst", type=int, nargs="*", default=[],
                        help="before the mix, send this many uploads of a --burst-frames pose at once (e.g. 1 4); "
                             "the upload limit is then 50 MB instead of 8")
    parser.add_argument("--burst-frames", type=int, default=100_000)
    parser.add_argument("--read-timeout", type=float, default=3.0, help="the server's --read-timeout (and the time "
                        "a request may wait for its share of the memory budget)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        soak(Path(tmp), args.clients, args.seconds, args.burst, args.burst_frames, args.read_timeout)


def soak(tmp: Path, clients: int, seconds: float, bursts: list[int], burst_frames: int, read_timeout: float) -> None:
    model, index, paths = prepare(tmp)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    limit_mb = 50 if bursts else 8
    server = subprocess.Popen([sys.executable, "-m", "signclip.cli", "serve", str(model), "--index", str(index),
                               "--port", str(port), "--max-upload-mb", str(limit_mb),
                               "--read-timeout", str(read_timeout), "--header-timeout", "3", "--threads", "1"],
                              stdout=subprocess.DEVNULL, stderr=open(tmp / "server.log", "w"),
                              env={**os.environ, "SIGNCLIP_API_KEY": API_KEY})
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(base + "/api/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        start_rss = rss(server.pid)[0]
        if bursts:
            data = long_pose(paths[0], burst_frames)
            print(f"uploads of a {burst_frames}-frame pose at once; server RSS in MiB; load average "
                  f"{os.getloadavg()[0]:.1f}\n\n| uploads | size | statuses | before | peak | after | seconds |\n"
                  "|---:|---:|---|---:|---:|---:|---:|")
            for n in bursts:
                burst(base, server.pid, data, n)
            print()
        if not seconds:
            return
        table = cases(paths, hostile_payloads(paths[0]), limit_mb * 1024 * 1024)
        results: dict = defaultdict(list)
        until = time.time() + seconds

        async def run_all():
            await asyncio.gather(*(client(base, port, table, until, i, results) for i in range(clients)))

        with RssSampler(server.pid, 1.0) as sampler:
            asyncio.run(run_all())
        end_rss, peak = rss(server.pid)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    print(f"{clients} clients x {seconds:.0f} s against `signclip serve` (tiny, index of {len(paths)} "
          f"poses + prompts, 1 torch thread, {limit_mb} MB upload limit); load average "
          f"{os.getloadavg()[0]:.1f}\n")
    print("| case | requests | unexpected (statuses) | 5xx | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|---:|")
    total = unexpected = fivexx = 0
    for name, rows in sorted(results.items()):
        if name == "exceptions":
            continue
        lat = np.array([r[1] for r in rows]) * 1000
        bad = sorted(r[0] for r in rows if not r[2])
        five = sum(r[0] >= 500 for r in rows)
        total, unexpected, fivexx = total + len(rows), unexpected + len(bad), fivexx + five
        p50, p99 = np.percentile(lat, [50, 99])
        shown = f"{len(bad)} ({', '.join(map(str, bad))})" if bad else "0"
        print(f"| {name} | {len(rows)} | {shown} | {five} | {p50:.0f} | {p99:.0f} |")
    print(f"| **all** | {total} | {unexpected} | {fivexx} | | |")
    print(f"\nserver RSS: {start_rss:.0f} MiB after start, peak {peak:.0f} MiB, {end_rss:.0f} MiB at the end "
          f"(sampled max {max(sampler.samples):.0f} MiB); client exceptions: {len(results['exceptions'])}")
    for line in results["exceptions"][:5]:
        print("  ", line)


if __name__ == "__main__":
    main()
