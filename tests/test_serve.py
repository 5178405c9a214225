"""The real HTTP service on 127.0.0.1: embeddings equal the model's, reference-client bodies, search,
limits and bad input (each followed by a request that still succeeds)."""
from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from serve_utils import (
    corrupt_pose,
    far_keypoints,
    live_server,
    long_pose,
    nan_pose,
    pose_with_fps,
    untrained_model_dir,
    zero_frame_pose,
)

MAX_UPLOAD = 16 * 1024 * 1024
DEEP_JSON = b"[" * 100_000 + b"]" * 100_000  # once a RecursionError in the JSON parser: a 500


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, lexicon):
    return untrained_model_dir(tmp_path_factory.mktemp("serve_model"), lexicon)


@pytest.fixture(scope="module")
def server(model_dir, lexicon_paths, lexicon):
    # fp32: these tests compare the server's embeddings with the model's to 2e-5 (bf16: tests/test_cpu.py)
    with live_server(model_dir, lexicon_paths[:24], lexicon, max_upload_bytes=MAX_UPLOAD, max_batch=8,
                     max_wait_ms=5, precision="fp32") as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server[0], timeout=60) as c:
        yield c


def b64(path: str) -> str:
    return base64.b64encode(open(path, "rb").read()).decode()


def assert_good(client, path: str) -> None:
    """A valid request right after a bad one still succeeds."""
    r = client.post("/api/embed/pose", files={"file": ("ok.pose", open(path, "rb").read())})
    assert r.status_code == 200, r.text
    assert np.isfinite(r.json()["embedding"]).all()


def test_health_info_docs_and_unknown_routes(client, server):
    assert client.get("/api/health").json() == {"status": "ok"}
    info = client.get("/api/info").json()
    assert info["embed_dim"] == server[1].cfg.embed_dim and info["index"] == server[2].sizes()
    assert info["signed_languages"] == server[1].cfg.signed_languages
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/embed/text", "/api/embed/pose", "/api/search", "/api/health", "/api/info"} <= set(paths)
    docs = client.get("/docs").text  # the docs page works offline: its assets come from this server
    asset = docs.split('src="')[1].split('"')[0]
    assert asset.startswith("/") and client.get(asset).status_code == 200
    r = client.get("/api/nope")
    assert r.status_code == 404 and "detail" in r.json()
    r = client.delete("/api/health")
    assert r.status_code == 405 and "detail" in r.json()
    assert client.put("/api/search", json={}).status_code == 405


def test_embed_text_matches_model_and_reference_bodies(client, server):
    model = server[1]
    texts = ["A", "house", "B"]
    expected = model.encode_text(texts)
    # reference client: {"text": [...]} on POST and on GET with a JSON body
    for method in ("POST", "GET"):
        r = client.request(method, "/api/embed/text", content=json.dumps({"text": texts}),
                           headers={"content-type": "application/json"})
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(r.json()["embedding"], expected, atol=2e-5)
    r = client.post("/api/embed/text", json={"text": "A"})  # a single string
    np.testing.assert_allclose(r.json()["embedding"], expected[:1], atol=2e-5)
    r = client.get("/api/embed/text", params={"text": ["A", "house"]})  # query string
    np.testing.assert_allclose(r.json()["embedding"], expected[:2], atol=2e-5)
    spoken, signed = model.cfg.spoken_languages[0], model.cfg.signed_languages[0]
    r = client.post("/api/embed/text", json={"text": ["A"], "spoken_language": spoken, "signed_language": signed})
    assert r.json()["prompts"] == model.prompts(["A"], spoken, signed)
    np.testing.assert_allclose(r.json()["embedding"], model.encode_text(["A"], spoken, signed), atol=2e-5)


def test_embed_pose_multipart_base64_and_keypoints(client, server, lexicon_paths):
    model = server[1]
    paths = lexicon_paths[:3]
    expected = model.encode_pose(paths)
    files = [("file", (f"p{i}.pose", open(p, "rb").read())) for i, p in enumerate(paths)]
    r = client.post("/api/embed/pose", files=files)
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["embedding"], expected, atol=2e-5)
    for method in ("POST", "GET"):  # reference client bodies
        r = client.request(method, "/api/embed/pose", content=json.dumps({"pose": [b64(p) for p in paths]}),
                           headers={"content-type": "application/json"})
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(r.json()["embedding"], expected, atol=2e-5)
    r = client.post("/api/embed/pose", json={"pose": b64(paths[0])})
    np.testing.assert_allclose(r.json()["embedding"], expected[:1], atol=2e-5)
    x = model.preprocess_pose(paths[1])  # (T, P, D), NaN -> null
    kp = np.where(np.isnan(x), None, x.astype(object)).tolist()
    r = client.post("/api/embed/pose", json={"keypoints": kp})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["embedding"], expected[1:2], atol=2e-5)


def test_concurrent_requests_are_batched_and_padding_correct(client, server, lexicon_paths):
    """16 clients at once with poses of different lengths: each answer equals the pose embedded alone."""
    model = server[1]
    paths = lexicon_paths[:16]
    alone = np.stack([model.encode_pose(p) for p in paths])
    before = client.get("/api/info").json()["batches"]["pose"]

    def one(p):
        with httpx.Client(base_url=server[0], timeout=60) as c:
            return c.post("/api/embed/pose", json={"pose": b64(p)}).json()["embedding"][0]

    with ThreadPoolExecutor(16) as pool:
        got = np.array(list(pool.map(one, paths)))
    np.testing.assert_allclose(got, alone, atol=2e-5)
    after = client.get("/api/info").json()["batches"]["pose"]
    batches, items = after[0] - before[0], after[1] - before[1]
    assert items == 16 and batches < 16  # some requests shared a model call


def test_search_text_to_poses_and_pose_to_texts(client, server, lexicon_paths):
    model, index = server[1], server[2]
    r = client.post("/api/search", json={"text": "A", "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["target"] == "pose" and len(body["results"]) == 5
    scores = [x["score"] for x in body["results"]]
    assert scores == sorted(scores, reverse=True)
    assert {"rank", "score", "id", "path", "text", "signed_language"} <= set(body["results"][0])
    expected = index.search(model.encode_text(["A"]), "pose", 5)[0]
    assert [x["id"] for x in body["results"]] == expected["id"].tolist()
    r = client.post("/api/search", files={"file": ("q.pose", open(lexicon_paths[0], "rb").read())}, data={"k": "3"})
    assert r.status_code == 200, r.text
    assert r.json()["target"] == "text" and len(r.json()["results"]) == 3 and "prompt" in r.json()["results"][0]
    r = client.post("/api/search", json={"pose": b64(lexicon_paths[0]), "target": "pose", "k": 1})
    path = r.json()["results"][0]["path"]  # relative to the indexed data's folder: no server paths leak
    assert lexicon_paths[0].endswith("/" + path) and not path.startswith("/")  # a pose finds itself
    assert r.json()["results"][0]["score"] == pytest.approx(1.0, abs=1e-4)


def test_keypoints_endpoints(client, server, lexicon_paths):
    r = client.post("/api/pose/keypoints", files={"file": ("q.pose", open(lexicon_paths[0], "rb").read())})
    assert r.status_code == 200, r.text
    kp = r.json()
    x = server[1].preprocess_pose(lexicon_paths[0])
    assert kp["frames"] == x.shape[0] and kp["points"] == x.shape[1] and len(kp["edges"]) > 40
    finite = np.isfinite(x[0, :, :2]).all(-1)
    assert [p is not None for p in kp["keypoints"][0]] == finite.tolist()
    assert client.get("/api/index/pose/0/keypoints").json()["frames"] > 0
    assert client.get("/api/index/pose/99999/keypoints").status_code == 404


BAD = {
    "corrupt file": lambda p: ("multipart", corrupt_pose(p), 422, "not a readable .pose"),
    "empty file": lambda p: ("multipart", b"", 422, "empty file"),
    "zero frames": lambda p: ("multipart", zero_frame_pose(p), 422, "zero frames"),
    "all NaN": lambda p: ("multipart", nan_pose(p), 422, "NaN"),
    "wrong content type": lambda p: ("text/plain", b"hello", 415, "content-type"),
    "oversize upload": lambda p: ("multipart", b"\0" * (MAX_UPLOAD + 1), 413, "exceeds the limit"),
    "bad base64": lambda p: ("json", {"pose": ["not base64!"]}, 422, "base64"),
    "bad json": lambda p: ("application/json", b"{nope", 400, "JSON"),
    "deeply nested json": lambda p: ("application/json", DEEP_JSON, 400, "nested too deeply"),
    "no pose": lambda p: ("json", {}, 422, "no pose"),
    "keypoints wrong shape": lambda p: ("json", {"keypoints": [[[1.0, 2.0]]]}, 422, "keypoints[0]"),
    "frame rate 0.001": lambda p: ("multipart", pose_with_fps(p, 0.001), 422, "frame rate"),
    "keypoints of 1e20": lambda p: ("json", {"keypoints": far_keypoints(p)}, 422, "shoulder widths"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_pose_input_gets_4xx_and_server_keeps_serving(client, lexicon_paths, case):
    kind, payload, status, message = BAD[case](lexicon_paths[0])
    if kind == "multipart":
        r = client.post("/api/embed/pose", files={"file": ("bad.pose", payload)})
    elif kind == "json":
        r = client.post("/api/embed/pose", json=payload)
    else:
        r = client.post("/api/embed/pose", content=payload, headers={"content-type": kind})
    assert r.status_code == status, r.text
    assert message in r.json()["detail"] and r.json()["error"]
    if kind == "multipart" and status == 422:
        assert "bad.pose" in r.json()["detail"]  # the error names the uploaded file
    assert_good(client, lexicon_paths[1])


def test_ten_thousand_frames_are_resampled(client, server, lexicon_paths):
    data = long_pose(lexicon_paths[0])
    r = client.post("/api/pose/keypoints", files={"file": ("long.pose", data)})
    assert r.status_code == 200, r.text
    assert r.json()["frames"] == server[1].cfg.pose.max_frames
    r = client.post("/api/embed/pose", files={"file": ("long.pose", data)})
    assert r.status_code == 200 and np.isfinite(r.json()["embedding"]).all()
    assert_good(client, lexicon_paths[1])


def test_deeply_nested_json_is_a_400_on_every_route(client):
    for route in ("/api/embed/text", "/api/search", "/api/pose/keypoints"):
        r = client.post(route, content=DEEP_JSON, headers={"content-type": "application/json"})
        assert r.status_code == 400 and "nested too deeply" in r.json()["detail"], r.text
    assert client.post("/api/embed/text", json={"text": ["A"]}).status_code == 200


def test_pose_scaled_by_1e20_embeds_as_the_original(client, server, lexicon_paths, make_pose):
    """Its shoulder width overflowed float32 and it was refused with "shoulder width is zero"."""
    scaled = make_pose(lexicon_paths[0], lambda data, conf: (data * np.float32(1e20), conf))
    r = client.post("/api/embed/pose", files={"file": ("big.pose", open(scaled, "rb").read())})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["embedding"], server[1].encode_pose([lexicon_paths[0]]), atol=1e-4)


@pytest.mark.parametrize("body,status,message", [
    ({"text": []}, 422, "no text"),
    ({"text": [""]}, 422, "empty text"),
    ({"text": ["A"], "signed_language": "xx-unknown"}, 422, "unknown language code"),
    ({"text": [1, 2]}, 422, "text"),
    ([1, 2], 400, "JSON object"),
    ({"text": ["\ud800"]}, 422, "not valid Unicode"),
    ({"text": ["A"], "spoken_language": "\udfff"}, 422, "not valid Unicode"),
])
def test_bad_text_input(client, body, status, message):
    # json.dumps escapes lone surrogates ("\\ud800"), as a JavaScript client's JSON.stringify does
    r = client.post("/api/embed/text", content=json.dumps(body), headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert message in r.json()["detail"]
    assert client.post("/api/embed/text", json={"text": ["A"]}).status_code == 200


def test_bad_search_input(client, lexicon_paths):
    assert client.post("/api/search", json={"text": "A", "k": 0}).status_code == 422
    assert client.post("/api/search", json={"text": "A", "target": "video"}).status_code == 422
    r = client.post("/api/search", json={})
    assert r.status_code == 422 and "no pose given" in r.json()["detail"]
    assert client.post("/api/search", json={"text": "A"}).status_code == 200


GUARDED_BUDGET = 1024 * 1024  # bytes of requests in flight


@pytest.fixture(scope="module")
def guarded(model_dir):
    """A second server with an API key, a CORS origin, short timeouts, a short queue and a small memory budget."""
    from signclip.models.signclip import load
    from signclip.serve import ServerThread, ServeSettings, create_app

    settings = ServeSettings(api_key="s3cret", cors_origins=("https://example.org",), read_timeout_s=1.0,
                             header_timeout_s=1.0, max_queue=4, memory_budget_bytes=GUARDED_BUDGET)
    app = create_app(load(model_dir), None, settings)
    app.add_api_route("/api/boom", lambda: 1 / len("/etc/secret-path"[:0]))  # an internal error (ZeroDivision)
    with ServerThread(app) as url:
        yield url


def test_api_key(guarded):
    with httpx.Client(base_url=guarded, timeout=30) as c:
        assert c.get("/api/health").status_code == 200 and c.get("/").status_code == 200  # open
        for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}):
            r = c.post("/api/embed/text", json={"text": ["A"]}, headers=headers)
            assert r.status_code == 401 and "API key" in r.json()["detail"]
        for headers in ({"X-API-Key": "s3cret"}, {"Authorization": "Bearer s3cret"}):
            assert c.post("/api/embed/text", json={"text": ["A"]}, headers=headers).status_code == 200
        assert "s3cret" not in c.get("/api/info", headers={"X-API-Key": "s3cret"}).text


def test_cors_origins(guarded):
    pre = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-api-key,content-type"}
    with httpx.Client(base_url=guarded, timeout=30) as c:
        r = c.options("/api/embed/text", headers={"Origin": "https://example.org", **pre})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://example.org"
        r = c.options("/api/embed/text", headers={"Origin": "https://evil.example", **pre})
        assert "access-control-allow-origin" not in r.headers


def test_internal_errors_do_not_leak_details(guarded):
    r = httpx.get(guarded + "/api/boom", headers={"X-API-Key": "s3cret"}, timeout=30)
    assert r.status_code == 500 and "reference" in r.json()["detail"]
    assert "ZeroDivision" not in r.text and "secret-path" not in r.text


def test_trickled_body_gets_408_and_silent_connections_are_closed(guarded):
    """A body that does not arrive in time is answered 408; a connection that never sends its headers is
    closed by the server (uvicorn alone keeps both open forever)."""
    import socket
    import time

    host, port = guarded.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"POST /api/embed/text HTTP/1.1\r\nHost: x\r\nX-API-Key: s3cret\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"text\"")
        start = time.time()
        answer = s.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408") and time.time() - start < 5, answer[:200]
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        start = time.time()
        assert s.recv(4096) == b"" and time.time() - start < 5  # closed after the 1 s header timeout
    assert httpx.get(guarded + "/api/health", timeout=10).status_code == 200


@pytest.mark.parametrize("request_line,headers,status", [
    (b"POST /api/health", b"", 405),  # health is GET only
    (b"POST /api/nope", b"X-API-Key: s3cret\r\n", 404),
    (b"POST /api/embed/text", b"", 401),  # no API key: refused before the body is read
])
def test_a_body_the_route_never_reads_does_not_hold_the_connection(guarded, request_line, headers, status):
    """The answer came, but a body trickled a byte at a time once kept the connection open for ever (neither
    the header nor the read timeout applied); now it is closed within the header timeout (1 s here)."""
    import socket
    import time

    host, port = guarded.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(request_line + b" HTTP/1.1\r\nHost: x\r\n" + headers
                  + b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
        assert s.recv(4096).startswith(b"HTTP/1.1 %d" % status)
        s.settimeout(0.2)
        start, closed = time.time(), None
        while closed is None and time.time() - start < 8:
            try:
                s.sendall(b" ")
                closed = time.time() - start if s.recv(4096) == b"" else None
            except socket.timeout:
                continue
            except OSError:  # reset by the server
                closed = time.time() - start
        assert closed is not None and closed < 4, closed
    assert httpx.get(guarded + "/api/health", timeout=10).status_code == 200


def test_full_queue_is_a_503_and_the_server_keeps_serving(guarded):
    key = {"X-API-Key": "s3cret"}
    with httpx.Client(base_url=guarded, timeout=30, headers=key) as c:
        r = c.post("/api/embed/text", json={"text": ["A", "B", "C", "D", "E"]})  # 5 texts, a queue of 4
        assert r.status_code == 503 and r.json()["error"] == "Busy" and "limit of 4" in r.json()["detail"], r.text
        assert c.post("/api/embed/text", json={"text": ["A", "B", "C", "D"]}).status_code == 200


def test_requests_beyond_the_memory_budget_wait_for_it(guarded):
    """A request whose body (8 bytes held per body byte) does not fit beside those in flight waits until one
    of them is answered, instead of raising the server's memory with every upload at once."""
    import socket
    import time

    from signclip.serve.budget import BYTES_PER_BODY_BYTE

    host, port = guarded.removeprefix("http://").split(":")
    holder = int(0.8 * GUARDED_BUDGET / BYTES_PER_BODY_BYTE)  # declared, never sent: held until its 408
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"POST /api/embed/text HTTP/1.1\r\nHost: x\r\nX-API-Key: s3cret\r\nContent-Type: "
                  b"application/json\r\nContent-Length: %d\r\n\r\n{" % holder)
        time.sleep(0.3)
        start = time.time()
        text = "A " * int(0.3 * GUARDED_BUDGET / BYTES_PER_BODY_BYTE / 2)  # 30 % of the budget: does not fit
        r = httpx.post(guarded + "/api/embed/text", json={"text": [text]}, headers={"X-API-Key": "s3cret"},
                       timeout=30)
        waited = time.time() - start
        assert r.status_code == 200, r.text
        assert s.recv(4096).startswith(b"HTTP/1.1 408")  # the holder's body never came
    assert 0.4 < waited < 3, waited  # it ran once the holder's share came back (read timeout 1 s)


def test_memory_budget_waits_then_refuses():
    """The budget on its own: a share that is not free by the deadline is refused (the server's 503)."""
    import asyncio

    from signclip.serve.budget import BudgetExhausted, MemoryBudget

    async def scenario():
        budget = MemoryBudget(800)
        loop = asyncio.get_running_loop()
        async with budget.reservation() as first:
            await first.grow(80, loop.time() + 1)  # 640 of 800 bytes
            async with budget.reservation() as second:
                with pytest.raises(BudgetExhausted, match="memory budget"):
                    await second.grow(30, loop.time() + 0.1)
                assert budget.used == 640

                async def later():
                    async with budget.reservation() as third:
                        await third.grow(30, loop.time() + 5)
                        return budget.used

                waiting = asyncio.ensure_future(later())
                await asyncio.sleep(0.1)
                assert not waiting.done()
        assert await waiting == 240 and budget.used == 0
        async with budget.reservation() as huge:  # larger than the whole budget: runs alone
            await huge.grow(10**6, loop.time() + 1)
            assert budget.used == 800

    asyncio.run(scenario())


def test_index_of_another_model_is_refused(model_dir):
    from signclip.models.signclip import load
    from signclip.serve import create_app
    from signclip.serve.index import SearchIndex

    model = load(model_dir)
    index = SearchIndex(128)  # embeddings of a 128-d model
    index.add("text", np.eye(128, dtype=np.float32)[:3])
    with pytest.raises(ValueError, match="128-d"):
        create_app(model, index)
