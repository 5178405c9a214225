// signclip web page: text or .pose query -> /api/search; query pose animated on a canvas.
"use strict";
const $ = (id) => document.getElementById(id);
let animation = null;

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "muted";
}

async function api(path, options = {}) {
  // a server started with --api-key wants the key in X-API-Key; it is kept in this browser's localStorage
  const key = localStorage.getItem("signclip-api-key");
  const headers = { ...(options.headers || {}), ...(key ? { "X-API-Key": key } : {}) };
  const response = await fetch(path, { ...options, headers });
  const body = await response.json().catch(() => ({ detail: response.statusText }));
  if (response.status === 401) $("key-form").hidden = false;
  if (!response.ok) throw new Error(`${response.status}: ${body.detail || response.statusText}`);
  return body;
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  localStorage.setItem("signclip-api-key", $("key-input").value.trim());
  $("key-form").hidden = true;
  loadInfo();
});

async function loadInfo() {
  try {
    const info = await api("/api/info");
    const sizes = info.index ? Object.entries(info.index).map(([k, v]) => `${v} ${k}s`).join(", ") : "no index";
    $("model-info").textContent = `embedding dim ${info.embed_dim} · index: ${sizes}`;
    for (const [id, codes] of [["spoken-select", info.spoken_languages], ["signed-select", info.signed_languages]]) {
      $(id).length = 1;  // keep "(none)", drop the codes of an earlier call
      for (const code of codes || []) {
        const option = document.createElement("option");
        option.value = option.textContent = code;
        $(id).appendChild(option);
      }
    }
  } catch (e) { setStatus(`could not load /api/info: ${e.message}`, true); }
}

function showResults(data) {
  const tbody = $("results").querySelector("tbody");
  tbody.innerHTML = "";
  for (const r of data.results) {
    const tr = document.createElement("tr");
    tr.className = "result";
    const langs = [r.spoken_language, r.signed_language].filter(Boolean).join(" / ");
    const label = r.text ?? r.prompt ?? r.path ?? r.id;
    const width = Math.max(0, Math.round(60 * r.score));
    tr.innerHTML = `<td>${r.rank}</td><td class="score">${r.score.toFixed(3)}<span class="bar" style="width:${width}px"></span></td>` +
      `<td class="label"></td><td class="langs"></td><td></td>`;
    tr.querySelector(".label").textContent = label;
    tr.querySelector(".langs").textContent = langs;
    if (data.target === "pose" && r.path) {
      const button = document.createElement("button");
      button.textContent = "play";
      button.onclick = async () => {
        const kp = await api(`/api/index/pose/${r.id}/keypoints`);
        animate(kp, `Result #${r.rank}: ${label}`);
      };
      tr.lastElementChild.appendChild(button);
    }
    tbody.appendChild(tr);
  }
  setStatus(`${data.results.length} results (${data.query.modality} → ${data.target}s)`);
}

function animate(kp, title) {
  if (animation) cancelAnimationFrame(animation);
  $("canvas-title").textContent = title;
  const canvas = $("pose-canvas"), ctx = canvas.getContext("2d");
  // fit all frames: shoulder-normalised coordinates, y down
  let minX = Infinity, maxX = -Infinity, minY = Infinity, maxY = -Infinity;
  for (const frame of kp.keypoints) for (const p of frame) if (p) {
    minX = Math.min(minX, p[0]); maxX = Math.max(maxX, p[0]); minY = Math.min(minY, p[1]); maxY = Math.max(maxY, p[1]);
  }
  const scale = 0.9 * Math.min(canvas.width / (maxX - minX || 1), canvas.height / (maxY - minY || 1));
  const ox = (canvas.width - scale * (maxX - minX)) / 2, oy = (canvas.height - scale * (maxY - minY)) / 2;
  const xy = (p) => [ox + (p[0] - minX) * scale, oy + (p[1] - minY) * scale];
  const fps = kp.fps || 25;
  let start = null;
  canvas.dataset.frames = kp.frames;
  const draw = (now) => {
    // rAF timestamps are frame start times and may precede performance.now(): start the clock at the first frame
    if (start === null) start = now;
    const t = Math.floor((Math.max(0, now - start) / 1000) * fps) % kp.frames;
    const frame = kp.keypoints[t];
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.strokeStyle = "#1f3b57"; ctx.lineWidth = 2;
    for (const [a, b] of kp.edges) {
      if (!frame[a] || !frame[b]) continue;
      const [x1, y1] = xy(frame[a]), [x2, y2] = xy(frame[b]);
      ctx.beginPath(); ctx.moveTo(x1, y1); ctx.lineTo(x2, y2); ctx.stroke();
    }
    ctx.fillStyle = "#c0392b";
    for (const p of frame) if (p) { const [x, y] = xy(p); ctx.fillRect(x - 1, y - 1, 2, 2); }
    canvas.dataset.frame = t;
    animation = requestAnimationFrame(draw);
  };
  animation = requestAnimationFrame(draw);
}

$("text-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("text-input").value.trim();
  if (!text) { setStatus("type a text first", true); return; }
  setStatus("searching…");
  const body = { text, k: Number($("k-input").value) || 10 };
  if ($("spoken-select").value) body.spoken_language = $("spoken-select").value;
  if ($("signed-select").value) body.signed_language = $("signed-select").value;
  try {
    showResults(await api("/api/search", { method: "POST", headers: { "Content-Type": "application/json" },
                                           body: JSON.stringify(body) }));
  } catch (e) { setStatus(e.message, true); }
});

$("pose-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = $("pose-input").files[0];
  if (!file) { setStatus("choose a .pose file first", true); return; }
  setStatus("searching…");
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("k", String(Number($("k-input").value) || 10));
  if ($("pose-target").value) form.append("target", $("pose-target").value);
  const keypointsForm = new FormData();
  keypointsForm.append("file", file, file.name);
  try {
    const [results, kp] = await Promise.all([
      api("/api/search", { method: "POST", body: form }),
      api("/api/pose/keypoints", { method: "POST", body: keypointsForm }),
    ]);
    showResults(results);
    animate(kp, `Query pose: ${file.name} (${kp.frames} frames)`);
  } catch (e) { setStatus(e.message, true); }
});

loadInfo();
