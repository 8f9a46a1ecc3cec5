// The anomalign inspection page: pick a detector, send images, re-decide with a slider.
// Decisions follow the service's rule (anomalous when score >= threshold); the confidence
// is recomputed here with the service's rule (see Calibration.confidence in anomalign/calibration.py).
"use strict";

// `exact` holds a threshold set exactly (the bundle's), which the slider's steps would round.
const state = { detectors: [], detector: null, results: [], exact: null, key: sessionStorage.getItem("anomalign-key") || "" };
const $ = (id) => document.getElementById(id);

function headers() {
  return state.key ? { "X-API-Key": state.key } : {};
}

function say(text, isError = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  if (response.status === 401) {
    $("key-form").hidden = false;
    throw new Error("An API key is needed (or the one given is wrong).");
  }
  if (!response.ok) {
    throw new Error(body && body.detail ? `${body.error}: ${body.detail}` : `HTTP ${response.status}`);
  }
  return body;
}

function fmt(value) {
  return value === null || value === undefined ? "–" : Number(value).toPrecision(4);
}

function confidence(score, threshold, spread) {
  if (threshold === null || spread === null || spread === undefined) return null;
  const margin = (score - threshold) / spread;
  return 1 / (1 + Math.pow(9, -Math.abs(margin)));
}

function currentThreshold() {
  const slider = $("threshold");
  if (slider.disabled) return null;
  return state.exact !== null ? state.exact : Number(slider.value);
}

function describeDetector(d) {
  const cal = d.calibration || {};
  const thr = d.threshold;
  const parts = [
    `${d.method} on ${d.backbone}`,
    thr ? `threshold ${fmt(thr.value)} (${thr.mode}${thr.fpr !== null && thr.fpr !== undefined ? ", target FPR " + thr.fpr : ""}; ${thr.source || "no source"})` : "no threshold in the bundle",
    `heatmap range [${fmt(cal.map_low)}, ${fmt(cal.map_high)}] from ${cal.source || "?"}`,
  ];
  const about = $("about");
  about.replaceChildren(...parts.map((text) => {
    const span = document.createElement("span");
    span.textContent = text;
    return span;
  }));
  const banner = $("untrained");
  banner.hidden = !d.untrained_backbone;
  banner.textContent = d.untrained_backbone ? "UNTRAINED BACKBONE: random weights, not a real result. Scores and heatmaps of this detector mean nothing." : "";
}

function sliderRange() {
  const d = state.detector;
  const values = state.results.map((r) => r.score);
  const cal = d.calibration || {};
  for (const v of [cal.score_low, cal.score_high, d.threshold && d.threshold.value]) {
    if (v !== null && v !== undefined) values.push(v);
  }
  if (!values.length) values.push(0, 1);
  let lo = Math.min(...values), hi = Math.max(...values);
  const pad = (hi - lo) * 0.05 || Math.abs(hi) * 0.05 || 0.05;
  return [lo - pad, hi + pad];
}

function setupSlider(keepValue) {
  const slider = $("threshold");
  const d = state.detector;
  const [lo, hi] = sliderRange();
  const previous = Number(slider.value);
  slider.min = lo; slider.max = hi; slider.step = (hi - lo) / 1000;
  slider.disabled = false;
  $("reset").disabled = !d.threshold;
  if (!keepValue) {
    state.exact = d.threshold ? d.threshold.value : (d.calibration.score_high ?? (lo + hi) / 2);
  }
  slider.value = state.exact !== null ? state.exact : Math.min(Math.max(previous, lo), hi);
  redecide();
}

function fprText(threshold) {
  const d = state.detector;
  const scores = d.validation_scores;
  if (scores && scores.length) {
    const flagged = scores.filter((s) => s >= threshold).length;
    return `FPR on ${scores.length} validation images: ${(100 * flagged / scores.length).toFixed(1)}%`;
  }
  const thr = d.threshold;
  if (thr && thr.stats && thr.stats.achieved_fpr !== undefined && Math.abs(threshold - thr.value) <= 1e-9 * Math.max(1, Math.abs(thr.value))) {
    return `FPR on ${thr.stats.n_normal} validation images: ${(100 * thr.stats.achieved_fpr).toFixed(1)}% (bundle threshold)`;
  }
  return "FPR: the bundle has no validation scores for this threshold";
}

function redecide() {
  const threshold = currentThreshold();
  $("threshold-value").textContent = fmt(threshold);
  $("fpr").textContent = threshold === null ? "" : fprText(threshold);
  const spread = state.detector ? state.detector.normal_spread : null;
  for (const result of state.results) {
    const card = result.card;
    const anomalous = threshold !== null && result.score >= threshold;
    const decision = card.querySelector(".decision");
    decision.textContent = threshold === null ? "no threshold" : anomalous ? "ANOMALOUS" : "normal";
    decision.className = "decision " + (threshold === null ? "" : anomalous ? "bad" : "good");
    card.classList.toggle("flagged", anomalous);
    const c = confidence(result.score, threshold, spread);
    card.querySelector(".confidence").textContent = c === null ? "" : `confidence ${(100 * c).toFixed(0)}%`;
  }
}

async function loadDetectors() {
  const body = await api("/v1/detectors");
  state.detectors = body.detectors;
  const select = $("detector");
  select.innerHTML = "";
  for (const d of state.detectors) {
    const option = document.createElement("option");
    option.value = d.name;
    option.textContent = d.name + (d.untrained_backbone ? " (untrained)" : "");
    select.appendChild(option);
  }
  $("key-form").hidden = true;
  chooseDetector(state.detectors[0] && state.detectors[0].name);
  say(`${state.detectors.length} detector(s) loaded.`);
}

function chooseDetector(name) {
  state.detector = state.detectors.find((d) => d.name === name) || null;
  state.results = [];
  $("results").innerHTML = "";
  if (!state.detector) return;
  describeDetector(state.detector);
  setupSlider(false);
}

async function predict(files) {
  const d = state.detector;
  if (!d || !files.length) return;
  const images = Array.from(files).filter((f) => f.type === "" || f.type.startsWith("image/"));
  say(`Inspecting ${images.length} image(s)…`);
  const form = new FormData();
  for (const file of images) form.append("file", file, file.name);
  try {
    const body = await api(`/v1/detectors/${encodeURIComponent(d.name)}/predict?overlays=true`, { method: "POST", body: form });
    const batch = document.createDocumentFragment();
    for (const result of body.results) batch.appendChild(makeCard(result));
    $("results").prepend(batch);
    setupSlider(true);
    say(`${body.results.length} image(s) inspected in ${body.seconds.toFixed(2)} s.` + (body.warning ? " " + body.warning : ""));
  } catch (error) {
    say(error.message, true);
  }
}

function makeCard(result) {
  const card = $("card").content.firstElementChild.cloneNode(true);
  card.querySelector(".overlay").src = "data:image/png;base64," + result.overlay_png;
  card.querySelector(".name").textContent = result.name || `image ${result.index}`;
  card.querySelector(".score").textContent = `score ${fmt(result.score)}`;
  state.results.push({ score: result.score, card });
  return card;
}

function wire() {
  $("detector").addEventListener("change", (e) => chooseDetector(e.target.value));
  $("threshold").addEventListener("input", () => { state.exact = null; redecide(); });
  $("reset").addEventListener("click", () => {
    state.exact = state.detector.threshold.value;
    $("threshold").value = state.exact;
    redecide();
  });
  $("files").addEventListener("change", (e) => { predict(e.target.files); e.target.value = ""; });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); predict(e.dataTransfer.files); });
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.key = $("api-key").value;
    sessionStorage.setItem("anomalign-key", state.key);
    loadDetectors().catch((error) => say(error.message, true));
  });
}

wire();
loadDetectors().catch((error) => say(error.message, true));
