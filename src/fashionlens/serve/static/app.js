// fashionlens page: upload or drop photos, show each with its predictions. No framework.
// Everything from the server or the user (labels, filenames, errors) goes through textContent.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
const state = {
  limits: { max_files: 16, max_upload_bytes: 10 * 1024 * 1024, max_request_bytes: 40 * 1024 * 1024 },
  urls: [],
};

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function mib(bytes) {
  return `${(bytes / (1024 * 1024)).toFixed(bytes < 1024 * 1024 ? 2 : 0)} MiB`;
}

function setStatus(text, bad = false) {
  $("status").textContent = text;
  $("status").classList.toggle("bad", bad);
}

async function loadInfo() {
  try {
    const info = await (await fetch("/healthz")).json();
    const heads = info.heads.concat(info.landmarks ? ["landmarks"] : []);
    $("model-info").textContent = `model ${info.model} · ${heads.join(", ")}`;
    state.limits = info.limits;
    $("api-key-row").hidden = !info.api_key_required;
    $("limits").textContent = `JPEG, PNG, WebP… up to ${info.limits.max_files} photos per request, ` +
      `${mib(info.limits.max_upload_bytes)} each`;
  } catch (err) {
    setStatus("The service cannot be reached.", true);
  }
}

function makeCard(file) {
  const card = el("article", "card");
  const photo = el("div", "photo");
  const img = el("img");
  const url = URL.createObjectURL(file);
  state.urls.push(url);
  img.src = url;
  img.alt = file.name;
  photo.append(img);
  const preds = el("div", "preds");
  preds.append(el("h2", "filename", file.name), el("p", "note", "Analysing…"));
  card.append(photo, preds);
  $("results").append(card);
  return { file, card, photo, preds };
}

function barRows(title, kind, labels) {
  const box = el("section", `head-${kind}`);
  box.append(el("h3", "", title));
  for (const { label, score } of labels) {
    const row = el("div", "row");
    const track = el("span", "track");
    const bar = el("span", `bar ${kind}`);
    bar.style.width = `${Math.max(0, Math.min(1, score)) * 100}%`;
    track.append(bar);
    row.append(el("span", "name", label), track, el("span", "score", `${(score * 100).toFixed(1)}%`));
    row.title = `${label}: ${score.toFixed(4)}`;
    box.append(row);
  }
  return box;
}

// Short names drawn beside each landmark (the full name is the dot's tooltip).
const LANDMARK_TAGS = {
  left_collar: "L collar", right_collar: "R collar", left_sleeve: "L sleeve", right_sleeve: "R sleeve",
  left_waistline: "L waist", right_waistline: "R waist", left_hem: "L hem", right_hem: "R hem",
};
// Swatches for colour attributes (the shipped model's 12 colours).
const COLOUR_SWATCH = {
  black: "#111111", white: "#ffffff", grey: "#8a8f98", red: "#d92d20", orange: "#f97316", yellow: "#facc15",
  green: "#16a34a", blue: "#2563eb", purple: "#7e22ce", pink: "#f472b6", brown: "#7c4a21", beige: "#d9c4a0",
};

function drawLandmarks(item, landmarks, size, box) {
  const [w, h] = size;
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("class", "landmarks");
  const span = box ? Math.max(box[2] - box[0], box[3] - box[1]) : Math.max(w, h);
  const r = span * 0.018;
  for (const lm of landmarks) {
    const shown = lm.visible !== false; // models without a visibility head: every landmark
    const dot = document.createElementNS(SVG_NS, "circle");
    dot.setAttribute("class", shown ? "landmark" : "landmark hidden");
    dot.setAttribute("cx", lm.x);
    dot.setAttribute("cy", lm.y);
    dot.setAttribute("r", r);
    dot.setAttribute("stroke-width", r * 0.35);
    const tip = document.createElementNS(SVG_NS, "title");
    const what = lm.visible === undefined || lm.visible === null ? "score" : "visible";
    tip.textContent = `${lm.name.replace(/_/g, " ")} (${what} ${lm.score.toFixed(2)})`;
    dot.append(tip);
    svg.append(dot);
    if (!shown) continue;
    const label = document.createElementNS(SVG_NS, "text");
    label.setAttribute("class", "landmark-name");
    label.setAttribute("x", lm.x + r * 1.4);
    label.setAttribute("y", lm.y + r * 0.6);
    label.setAttribute("font-size", r * 2.2);
    label.setAttribute("stroke-width", r * 0.4);
    label.textContent = LANDMARK_TAGS[lm.name] || lm.name;
    svg.append(label);
  }
  item.photo.append(svg);
}

function isColours(attributes) {
  return attributes.length > 0 && attributes.every(({ label }) => label in COLOUR_SWATCH);
}

function colourChips(attributes) {
  const box = el("section", "head-colour");
  box.append(el("h3", "", "Colours"));
  const chips = el("div", "chips");
  for (const { label, score } of attributes) {
    const chip = el("span", score >= 0.5 ? "chip" : "chip faint");
    const swatch = el("span", "swatch");
    swatch.style.background = COLOUR_SWATCH[label];
    chip.append(swatch, el("span", "", `${label} ${(score * 100).toFixed(0)}%`));
    chip.title = `${label}: ${score.toFixed(4)}`;
    chips.append(chip);
  }
  box.append(chips);
  return box;
}

function render(item, record) {
  const preds = item.preds;
  preds.replaceChildren(el("h2", "filename", record.path || item.file.name));
  if (record.error) {
    preds.append(el("p", "error", record.error));
    return;
  }
  if (record.category) preds.append(barRows("Category", "category", record.category));
  if (record.tags) {
    const box = barRows("Tags", "tag", record.tags);
    const thr = Number(record.tag_threshold).toFixed(2);
    const below = record.tags.some((t) => t.score < record.tag_threshold);  // the model's best guess (min_tags)
    box.append(el("p", "note", !record.tags.length ? `no tag scores ≥ ${thr}`
                                : below ? `scores ≥ ${thr}, else the best guess` : `scores ≥ ${thr}`));
    preds.append(box);
  }
  if (record.styles) {
    const box = barRows("Styles", "style", record.styles);
    const main = box.querySelector(".row .name");  // the first row is the main style
    if (main) main.append(el("span", "badge", "main"));
    const thr = Number(record.style_threshold).toFixed(2);
    box.append(el("p", "note", `the main style (the most likely), then sub styles ≥ ${thr}`));
    preds.append(box);
  }
  const colours = record.colours && record.colours.length ? record.colours
    : record.attributes && isColours(record.attributes) ? record.attributes : null;
  if (record.attributes && !isColours(record.attributes)) {
    const box = barRows("Attributes", "attribute", record.attributes);
    box.insertBefore(el("p", "summary", record.attributes.map((a) => a.label).join(" · ") || "-"), box.children[1]);
    preds.append(box);
  }
  if (colours) preds.append(colourChips(colours));
  if (record.landmarks && record.image_size) {
    drawLandmarks(item, record.landmarks, record.image_size, record.box);
    const shown = record.landmarks.filter((lm) => lm.visible !== false).length;
    preds.append(el("p", "note", `${shown} of ${record.landmarks.length} landmarks visible, drawn with their names`));
  }
}

function showError(items, message) {
  for (const item of items) render(item, { path: item.file.name, error: message });
}

async function sendBatch(items) {
  const form = new FormData();
  for (const item of items) form.append("files", item.file, item.file.name);
  const params = new URLSearchParams({ top_k: $("top-k").value || "5" });
  if ($("threshold").value !== "") params.set("threshold", $("threshold").value);
  const headers = {};
  if ($("api-key").value) headers["X-API-Key"] = $("api-key").value;
  let response;
  try {
    response = await fetch(`/v1/predict?${params}`, { method: "POST", body: form, headers });
  } catch (err) {
    showError(items, "The service cannot be reached.");
    return 0;
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    showError(items, body.error || `request failed (HTTP ${response.status})`);
    return 0;
  }
  body.results.forEach((record, i) => render(items[i], record));
  return body.results.filter((r) => !r.error).length;
}

async function handleFiles(fileList) {
  const files = Array.from(fileList);
  if (!files.length) return;
  state.urls.forEach((url) => URL.revokeObjectURL(url));
  state.urls = [];
  $("results").replaceChildren();
  const items = files.map(makeCard);
  const tooBig = items.filter((it) => it.file.size > state.limits.max_upload_bytes);
  showError(tooBig, `larger than the limit of ${mib(state.limits.max_upload_bytes)}`);
  const queue = items.filter((it) => !tooBig.includes(it));
  setStatus(`Analysing ${queue.length} photo${queue.length === 1 ? "" : "s"}…`);
  let done = 0;
  for (const batch of batches(queue)) done += await sendBatch(batch);
  setStatus(`${done} of ${files.length} photo${files.length === 1 ? "" : "s"} analysed.`, done < files.length);
}

// Requests within the server's limits: at most max_files photos and (with room for the multipart
// framing) max_request_bytes each.
function batches(items) {
  const out = [];
  let current = [];
  let bytes = 0;
  for (const item of items) {
    const size = item.file.size + 4096;
    if (current.length && (current.length >= state.limits.max_files ||
        bytes + size > state.limits.max_request_bytes - 65536)) {
      out.push(current);
      current = [];
      bytes = 0;
    }
    current.push(item);
    bytes += size;
  }
  if (current.length) out.push(current);
  return out;
}

function setUpDrop() {
  const drop = $("drop");
  $("files").addEventListener("change", (e) => handleFiles(e.target.files));
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    handleFiles(e.dataTransfer.files);
  });
  // A photo dropped next to the zone must not make the browser navigate away from the page.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
  $("show-landmarks").addEventListener("change", (e) => {
    $("results").classList.toggle("hide-landmarks", !e.target.checked);
  });
}

setUpDrop();
loadInfo();
