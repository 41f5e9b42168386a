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
    const heads = info.heads.concat(info.landmarks ? ["landmarks"] : [], info.garments ? ["garments"] : []);
    $("model-info").textContent = `model ${info.model} · ${heads.join(", ")}`;
    state.limits = info.limits;
    for (const toggle of document.querySelectorAll(".garment-toggle")) toggle.hidden = !info.garments;
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

// One colour per garment group (fashionlens/garments/groups.py), for its outline, label and swatch.
const GROUP_COLOURS = {
  upper: "#e11d48", outer: "#7c3aed", dress: "#c026d3", skirt: "#ca8a04", pants: "#0369a1", shorts: "#0891b2",
  legwear: "#65a30d", shoes: "#15803d", bag: "#a16207", hat: "#6d28d9", belt: "#78350f", scarf: "#0f766e",
  glasses: "#475569", accessory: "#be185d",
};
const OTHER_GROUP = "#334155";

function groupColour(label) {
  return GROUP_COLOURS[label] || OTHER_GROUP;
}

// The run lengths of a COCO compressed RLE string (rleFrString of the COCO mask API): each count is
// 5-bit groups, lowest first, as characters 48 + group, 0x20 set while more follow, 0x10 of the last
// the sign; from the third count on, each is the difference to the count two before.
function rleCounts(text) {
  const counts = [];
  let p = 0;
  while (p < text.length) {
    let x = 0;
    let k = 0;
    let c = 0;
    do {
      if (p >= text.length) throw new Error("RLE counts end inside a count");
      c = text.charCodeAt(p) - 48;
      if (c < 0 || c > 63) throw new Error(`bad RLE character at ${p}`);
      x += (c & 0x1f) * 2 ** (5 * k);
      p += 1;
      k += 1;
    } while (c & 0x20);
    if (c & 0x10) x -= 2 ** (5 * k);
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

// A COCO RLE {size: [h, w], counts} -> {h, w, mask}: mask[x * h + y] is 1 inside (column-major, as COCO).
function decodeRle(rle) {
  const [h, w] = rle.size;
  const mask = new Uint8Array(h * w);
  let pos = 0;
  let inside = false;
  for (const n of rleCounts(rle.counts)) {
    if (n < 0 || pos + n > mask.length) throw new Error("RLE counts do not fit the mask size");
    if (inside) mask.fill(1, pos, pos + n);
    pos += n;
    inside = !inside;
  }
  if (pos !== mask.length) throw new Error("RLE counts do not cover the mask");
  return { h, w, mask };
}

function hexRgb(hex) {
  const v = parseInt(hex.slice(1), 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

// Every garment's mask on one canvas over the photo: its outline in its group's colour, its inside
// lightly tinted. The canvas is MASK_SIDE pixels on its longer side (the masks are sampled to it), so
// outlines are as crisp on a small photo as on a large one.
const MASK_SIDE = 600;

function drawGarmentMasks(item, garments, size) {
  const [w, h] = size;
  const scale = MASK_SIDE / Math.max(w, h);
  const cw = Math.max(1, Math.round(w * scale));
  const ch = Math.max(1, Math.round(h * scale));
  const canvas = el("canvas", "garment-masks");
  canvas.width = cw;
  canvas.height = ch;
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(cw, ch);
  const width = Math.round(MASK_SIDE / 150); // the outline, canvas pixels (2 on a 300-pixel-wide photo)
  for (const garment of garments) {
    let decoded;
    try {
      decoded = decodeRle(garment.mask);
    } catch (err) {
      continue; // a mask this page cannot read: the garment's other answers are still shown
    }
    const inside = new Uint8Array(cw * ch);
    for (let cy = 0; cy < ch; cy++) {
      const y = Math.min(decoded.h - 1, Math.floor(((cy + 0.5) * decoded.h) / ch));
      for (let cx = 0; cx < cw; cx++) {
        const x = Math.min(decoded.w - 1, Math.floor(((cx + 0.5) * decoded.w) / cw));
        inside[cy * cw + cx] = decoded.mask[x * decoded.h + y];
      }
    }
    let core = inside; // eroded `width` times: the outline is inside minus core
    for (let i = 0; i < width; i++) {
      const next = new Uint8Array(cw * ch);
      for (let cy = 1; cy < ch - 1; cy++) {
        for (let cx = 1; cx < cw - 1; cx++) {
          const j = cy * cw + cx;
          next[j] = core[j] & core[j - 1] & core[j + 1] & core[j - cw] & core[j + cw];
        }
      }
      core = next;
    }
    const [r, g, b] = hexRgb(groupColour(garment.label));
    const data = image.data;
    for (let j = 0; j < inside.length; j++) {
      if (!inside[j]) continue;
      data[j * 4] = r;
      data[j * 4 + 1] = g;
      data[j * 4 + 2] = b;
      data[j * 4 + 3] = core[j] ? 56 : 255;
    }
  }
  ctx.putImageData(image, 0, 0);
  item.photo.append(canvas);
}

// Each garment's group name at its box's top-left corner, in the group's colour.
function drawGarmentLabels(item, garments, size) {
  const [w, h] = size;
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("class", "garment-labels");
  const fontSize = Math.max(w, h) * 0.045;
  for (const garment of garments) {
    const [x0, y0] = garment.box;
    const text = document.createElementNS(SVG_NS, "text");
    text.setAttribute("class", "garment-label");
    text.setAttribute("x", x0 + fontSize * 0.2);
    text.setAttribute("y", Math.min(h, y0 + fontSize));
    text.setAttribute("font-size", fontSize);
    text.setAttribute("stroke-width", fontSize * 0.18);
    text.setAttribute("fill", groupColour(garment.label));
    text.textContent = garment.label;
    const tip = document.createElementNS(SVG_NS, "title"); // the tooltip: score and category
    const category = garment.category && garment.category.length ? `, ${garment.category[0].label}` : "";
    tip.textContent = `${garment.label} ${(garment.score * 100).toFixed(0)}%${category}`;
    const group = document.createElementNS(SVG_NS, "g");
    group.append(tip, text);
    svg.append(group);
  }
  item.photo.append(svg);
}

function chip(label, score, colour, faint = false) {
  const node = el("span", faint ? "chip faint" : "chip");
  const swatch = el("span", "swatch");
  swatch.style.background = colour;
  node.append(swatch, el("span", "", `${label} ${(score * 100).toFixed(0)}%`));
  node.title = `${label}: ${score.toFixed(4)}`;
  return node;
}

// One row per garment: its group (in its colour) and score, its category, its colours as chips.
function garmentRows(garments) {
  const box = el("section", "head-garments");
  box.append(el("h3", "", "Garments"));
  if (!garments.length) box.append(el("p", "note", "no garment found"));
  for (const garment of garments) {
    const row = el("div", "garment");
    const name = el("span", "garment-name");
    const swatch = el("span", "swatch group");
    swatch.style.background = groupColour(garment.label);
    name.append(swatch, el("span", "", `${garment.label} ${(garment.score * 100).toFixed(0)}%`));
    row.append(name);
    if (garment.category && garment.category.length) {
      const top = garment.category[0];
      row.append(el("span", "garment-category", `${top.label} ${(top.score * 100).toFixed(0)}%`));
    }
    const chips = el("span", "chips garment-colours");
    for (const { label, score } of garment.colours || []) {
      chips.append(chip(label, score, COLOUR_SWATCH[label] || OTHER_GROUP));
    }
    row.append(chips);
    row.title = `box ${garment.box.join(", ")}`;
    box.append(row);
  }
  return box;
}

function isColours(attributes) {
  return attributes.length > 0 && attributes.every(({ label }) => label in COLOUR_SWATCH);
}

function colourChips(attributes) {
  const box = el("section", "head-colour");
  box.append(el("h3", "", "Colours"));
  const chips = el("div", "chips");
  for (const { label, score } of attributes) chips.append(chip(label, score, COLOUR_SWATCH[label], score < 0.5));
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
  if (record.garments && record.image_size) {
    // the parser's garments: their outlines, names and own landmarks (the whole photo's landmarks
    // belong to no garment in particular, so they are not drawn)
    drawGarmentMasks(item, record.garments, record.image_size);
    drawGarmentLabels(item, record.garments, record.image_size);
    preds.append(garmentRows(record.garments));
    const withLandmarks = record.garments.filter((g) => g.landmarks && g.landmarks.length);
    for (const garment of withLandmarks) {
      drawLandmarks(item, garment.landmarks, record.image_size, garment.box);
    }
    if (withLandmarks.length) {
      const all = withLandmarks.flatMap((g) => g.landmarks);
      const shown = all.filter((lm) => lm.visible !== false).length;
      preds.append(el("p", "note", `${shown} of ${all.length} landmarks of ${withLandmarks.length} ` +
        `garment${withLandmarks.length === 1 ? "" : "s"} visible, drawn with their names`));
    }
  } else if (record.landmarks && record.image_size) {
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
  for (const layer of ["landmarks", "masks", "labels"]) {
    $(`show-${layer}`).addEventListener("change", (e) => {
      $("results").classList.toggle(`hide-${layer}`, !e.target.checked);
    });
  }
}

setUpDrop();
loadInfo();
