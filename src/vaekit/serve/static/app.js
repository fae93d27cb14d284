// vaekit serve: the page. Plain JavaScript, no library, no network beyond this server's /api.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { info: null, u: [], map: null, selected: null, lastPosterior: null, thumbs: new Map() };
const RANGE = 3;

function showError(msg) { $("error").textContent = msg || ""; }

async function api(path, body) {
  const opts = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const r = await fetch(path, opts);
  const data = await r.json().catch(() => ({}));
  if (!r.ok) {
    const d = data.detail;
    const msg = typeof d === "string" ? d : Array.isArray(d) ? d.map((e) => e.msg).join("; ") : r.statusText;
    throw new Error(`${path}: ${msg}`);
  }
  return data;
}

function img(src, title) { const el = document.createElement("img"); el.src = src; if (title) el.title = title; return el; }

// ---- sliders: decode live, at most one request in flight -------------------------------------------------
let decoding = false, pending = false;
async function decodeNow() {
  if (decoding) { pending = true; return; }
  decoding = true;
  $("decoded").dataset.state = "busy";
  try {
    do {
      pending = false;
      const r = await api("/api/decode", { u: [state.u.slice()] });
      $("decoded").src = r.images[0];
    } while (pending);
    showError("");
  } catch (e) { showError(e.message); }
  decoding = false;
  $("decoded").dataset.state = "idle";
}

function dimName(d) {
  const { layers } = state.info;
  if (layers.length < 2) return `z${d}`;
  const l = layers.find((x) => d >= x.start && d < x.start + x.dim);
  return `${l.name}.${d - l.start}`;
}

function buildSliders() {
  const box = $("sliders");
  box.textContent = "";
  const { info } = state;
  for (const d of info.order) {
    const name = dimName(d);
    const label = document.createElement("label");
    label.textContent = info.kl ? `${name} (KL ${info.kl[d].toFixed(2)})` : name;
    const s = document.createElement("input");
    Object.assign(s, { type: "range", min: -RANGE, max: RANGE, step: 0.05, value: 0 });
    s.id = `slider-${d}`;
    s.setAttribute("aria-label", name);
    label.htmlFor = s.id;
    const out = document.createElement("output");
    out.id = `value-${d}`;
    out.textContent = "0.00";
    s.addEventListener("input", () => { state.u[d] = parseFloat(s.value); out.textContent = state.u[d].toFixed(2); decodeNow(); });
    box.append(label, s, out);
  }
}

function setU(u) {
  state.u = u.map((v) => v);
  u.forEach((v, d) => {
    const s = $(`slider-${d}`);
    if (s) { s.value = Math.max(-RANGE, Math.min(RANGE, v)); $(`value-${d}`).textContent = v.toFixed(2); }
  });
  decodeNow();
}

function buildLayers() {
  const box = $("layers");
  box.textContent = "";
  const { layers } = state.info;
  if (layers.length < 2) return;
  const t = document.createElement("p");
  t.textContent = "Ladder: resample one layer";
  box.append(t);
  layers.forEach((l, i) => {
    const b = document.createElement("button");
    b.textContent = `${l.name} (${l.dim})`;
    b.id = `resample-${i}`;
    b.addEventListener("click", async () => {
      try {
        const r = await api("/api/resample", { u: state.u, layer: i, temperature: temperature(),
          seed: Math.floor(Math.random() * 2 ** 31) });
        setU(r.u[0]);
      } catch (e) { showError(e.message); }
    });
    box.append(b, " ");
  });
}

// ---- the map ---------------------------------------------------------------------------------------------
const PAD = 12;
function mapScale() {
  const m = state.map, c = $("map");
  const lim = Math.max(3, ...m.x.map(Math.abs), ...m.y.map(Math.abs)) * 1.05;
  return { lim, toPx: (x, y) => [PAD + (x + lim) / (2 * lim) * (c.width - 2 * PAD), PAD + (lim - y) / (2 * lim) * (c.height - 2 * PAD)],
    fromPx: (px, py) => [(px - PAD) / (c.width - 2 * PAD) * 2 * lim - lim, lim - (py - PAD) / (c.height - 2 * PAD) * 2 * lim] };
}
const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

function drawMap() {
  const c = $("map"), g = c.getContext("2d"), m = state.map, sc = mapScale();
  g.clearRect(0, 0, c.width, c.height);
  g.strokeStyle = "#ddd";
  const [ox, oy] = sc.toPx(0, 0);
  g.beginPath(); g.moveTo(ox, 0); g.lineTo(ox, c.height); g.moveTo(0, oy); g.lineTo(c.width, oy); g.stroke();
  for (let i = 0; i < m.x.length; i++) {
    const [px, py] = sc.toPx(m.x[i], m.y[i]);
    g.fillStyle = m.labels ? COLOURS[((m.labels[i] % 10) + 10) % 10] : "#555";
    g.globalAlpha = 0.7;
    g.fillRect(px - 2, py - 2, 4, 4);
  }
  g.globalAlpha = 1;
  if (state.selected !== null) {
    const [px, py] = sc.toPx(m.x[state.selected], m.y[state.selected]);
    g.strokeStyle = "#000"; g.lineWidth = 2; g.strokeRect(px - 5, py - 5, 10, 10); g.lineWidth = 1;
  }
}

function nearest(px, py, radius) {
  const m = state.map, sc = mapScale();
  let best = null, bd = radius * radius;
  for (let i = 0; i < m.x.length; i++) {
    const [qx, qy] = sc.toPx(m.x[i], m.y[i]);
    const d = (qx - px) ** 2 + (qy - py) ** 2;
    if (d <= bd) { bd = d; best = i; }
  }
  return best;
}

async function thumbnail(i) {
  if (!state.thumbs.has(i)) state.thumbs.set(i, api(`/api/points/${i}`));
  return state.thumbs.get(i);
}

function setupMap() {
  const c = $("map"), th = $("thumb");
  const pos = (ev) => { const r = c.getBoundingClientRect(); return [(ev.clientX - r.left) * c.width / r.width, (ev.clientY - r.top) * c.height / r.height]; };
  c.addEventListener("mousemove", async (ev) => {
    const [px, py] = pos(ev), i = nearest(px, py, 6);
    if (i === null) { th.hidden = true; return; }
    try {
      const p = await thumbnail(i);
      th.src = p.image; th.title = `test #${i}` + (p.label !== null ? ` (label ${p.label})` : "");
      th.style.left = `${px + 10}px`; th.style.top = `${py + 10}px`; th.hidden = false;
    } catch (e) { showError(e.message); }
  });
  c.addEventListener("mouseleave", () => { th.hidden = true; });
  c.addEventListener("click", (ev) => {
    const [px, py] = pos(ev), m = state.map, [x, y] = mapScale().fromPx(px, py);
    const u = m.mean.map((mu, d) => mu + x * m.components[d][0] + y * m.components[d][1]);
    state.selected = nearest(px, py, 8);
    drawMap();
    setU(u);
  });
}

// ---- interpolation -----------------------------------------------------------------------------------------
async function endpoint(fileId, indexId) {
  const f = $(fileId).files[0];
  if (f) return (await api("/api/encode", { image: await readFile(f) })).mean;
  return (await api(`/api/points/${parseInt($(indexId).value, 10)}`)).u;
}

async function interpolate() {
  try {
    const [ua, ub] = await Promise.all([endpoint("fa", "ia"), endpoint("fb", "ib")]);
    const r = await api("/api/interpolate", { ua, ub, steps: parseInt($("steps").value, 10), method: $("method").value });
    const out = $("interp-out");
    out.textContent = "";
    r.images.forEach((src, k) => { const el = img(src, `step ${k}`); el.addEventListener("click", () => setU(r.u[k])); out.append(el); });
    showError("");
  } catch (e) { showError(e.message); }
}

// ---- encode: upload or draw ----------------------------------------------------------------------------------
function readFile(f) {
  return new Promise((ok, fail) => { const rd = new FileReader(); rd.onload = () => ok(rd.result); rd.onerror = () => fail(new Error("cannot read the file")); rd.readAsDataURL(f); });
}

async function encode(dataUrl) {
  try {
    const r = await api("/api/encode", { image: dataUrl });
    $("enc-input").src = r.input;
    $("recon").src = r.reconstruction;
    state.lastPosterior = r.mean;
    $("to-sliders").disabled = false;
    const box = $("posterior");
    box.textContent = "";
    const lim = RANGE + 1;
    for (const d of state.info.order) {
      const name = document.createElement("span"); name.textContent = dimName(d);
      const bar = document.createElement("div"); bar.className = "bar";
      const pct = (v) => `${Math.max(0, Math.min(100, (v + lim) / (2 * lim) * 100))}%`;
      const sd = document.createElement("div"); sd.className = "sd";
      sd.style.left = pct(r.mean[d] - r.std[d]);
      sd.style.width = `calc(${pct(r.mean[d] + r.std[d])} - ${pct(r.mean[d] - r.std[d])})`;
      const mu = document.createElement("div"); mu.className = "mu"; mu.style.left = pct(r.mean[d]);
      const zero = document.createElement("div"); zero.className = "zero";
      bar.append(zero, sd, mu);
      const txt = document.createElement("span"); txt.textContent = `${r.mean[d].toFixed(2)} ± ${r.std[d].toFixed(2)}`;
      box.append(name, bar, txt);
    }
    showError("");
  } catch (e) { showError(e.message); }
}

function setupDrawing() {
  const c = $("draw"), g = c.getContext("2d");
  const clear = () => { g.fillStyle = "#000"; g.fillRect(0, 0, c.width, c.height); };
  clear();
  let down = false, last = null;
  const at = (ev) => { const r = c.getBoundingClientRect(); return [(ev.clientX - r.left) * c.width / r.width, (ev.clientY - r.top) * c.height / r.height]; };
  c.addEventListener("pointerdown", (ev) => { down = true; last = at(ev); c.setPointerCapture(ev.pointerId); });
  c.addEventListener("pointermove", (ev) => {
    if (!down) return;
    const p = at(ev);
    g.strokeStyle = "#fff"; g.lineWidth = c.width / 9; g.lineCap = "round";
    g.beginPath(); g.moveTo(...last); g.lineTo(...p); g.stroke();
    last = p;
  });
  c.addEventListener("pointerup", () => { down = false; });
  $("clear").addEventListener("click", clear);
  $("encode-draw").addEventListener("click", () => encode(c.toDataURL("image/png")));
  $("upload").addEventListener("change", async () => { const f = $("upload").files[0]; if (f) encode(await readFile(f)); });
  $("to-sliders").addEventListener("click", () => { if (state.lastPosterior) setU(state.lastPosterior); });
}

// ---- samples -------------------------------------------------------------------------------------------------
function temperature() { return parseFloat($("temp").value); }

async function drawSamples() {
  try {
    const r = await api("/api/sample", { n: 16, temperature: temperature(), seed: Math.floor(Math.random() * 2 ** 31) });
    const out = $("samples");
    out.textContent = "";
    r.images.forEach((src, k) => { const el = img(src, "click: to the sliders"); el.addEventListener("click", () => setU(r.u[k])); out.append(el); });
  } catch (e) { showError(e.message); }
}

// ---- start ---------------------------------------------------------------------------------------------------
async function start() {
  try {
    const info = await api("/api/info");
    state.info = info;
    $("run-name").textContent = info.name;
    $("run-info").textContent = `${info.family}, ${info.latent_dim} latent dimensions` +
      (info.layers.length > 1 ? ` in ${info.layers.length} layers` : "") + `, images ${info.data_shape.join(" x ")}, ${info.n_points} test points`;
    buildSliders();
    buildLayers();
    setU(new Array(info.latent_dim).fill(0));
    if (info.n_points > 0) {
      state.map = await api("/api/map");
      $("map-axes").textContent = `x: ${state.map.xlabel}; y: ${state.map.ylabel}`;
      drawMap();
      setupMap();
    } else {
      $("map-axes").textContent = "no test data on this server";
    }
  } catch (e) { showError(e.message); }
  setupDrawing();
  $("zero").addEventListener("click", () => setU(new Array(state.info.latent_dim).fill(0)));
  $("random").addEventListener("click", async () => {
    try { setU((await api("/api/sample", { n: 1, temperature: temperature(), seed: Math.floor(Math.random() * 2 ** 31) })).u[0]); } catch (e) { showError(e.message); }
  });
  $("interp").addEventListener("click", interpolate);
  $("pick-a").addEventListener("click", () => { if (state.selected !== null) $("ia").value = state.selected; });
  $("pick-b").addEventListener("click", () => { if (state.selected !== null) $("ib").value = state.selected; });
  $("temp").addEventListener("input", () => { $("temp-out").textContent = temperature().toFixed(2); });
  $("sample").addEventListener("click", drawSamples);
  document.body.dataset.ready = "1";
}

start();
