// fashionlens labelling page: one photo, the label vocabulary as buttons, keyboard first. No framework.
// Everything from the server (names, labels, errors) goes through textContent, never innerHTML.
"use strict";

const $ = (id) => document.getElementById(id);
const BANK = 9; // digits 1-9 address one group ("bank") of 9 labels; [ and ] switch groups
const KEEP_URLS = 12; // photos kept decoded in memory (prefetch ahead, instant back)
const S = {
  labels: [], photos: [], order: [], pos: new Map(), counts: null, version: 0,
  cur: null, sel: [], history: [], bank: 0, busy: false, loadToken: 0, urls: new Map(), gridOpen: false,
};

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function setStatus(text, kind = "") {
  $("status").textContent = text;
  $("status").className = `status ${kind}`;
}

async function api(path, body) {
  const opts = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  let response;
  try {
    response = await fetch(path, opts);
  } catch (err) {
    throw new Error("The labelling server cannot be reached: is `fashionlens label` still running? " +
      "Every saved label is on disk; restart it and reload this page.");
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(data.error || `request failed (HTTP ${response.status})`);
    error.status = response.status;
    throw error;
  }
  return data;
}

// ------------------------------------------------------------------------------------ state

async function loadState() {
  const st = await api("/api/state");
  Object.assign(S, { labels: st.labels, photos: st.photos, order: st.order, counts: st.counts, version: st.version });
  S.pos = new Map(S.order.map((index, k) => [index, k]));
  $("out-name").textContent = st.out;
  if (st.suggestions) {
    $("suggest-note").textContent = st.suggestions;
    $("suggest-note").hidden = false;
  }
  buildLabels();
  renderProgress();
  if (st.start !== null) show(st.start, false);
  if (st.counts.labelled === st.counts.total) allDone();
}

// Another tab wrote in between (the version jumped): take its labels, keep our place.
async function mergeState() {
  const st = await api("/api/state");
  st.photos.forEach((p, i) => { S.photos[i].record = p.record; S.photos[i].skipped = p.skipped; });
  Object.assign(S, { counts: st.counts, version: st.version });
  renderProgress();
}

async function afterChange(reply) {
  const stale = reply.version !== S.version + 1;
  S.counts = reply.counts;
  S.version = reply.version;
  renderProgress();
  if (stale) await mergeState(); // before moving on, so the grid and "next" know the other tab's labels
}

// ------------------------------------------------------------------------------------ rendering

function buildLabels() {
  const box = $("labels");
  box.replaceChildren();
  box.classList.toggle("many", S.labels.length > BANK);
  for (let b = 0; b * BANK < S.labels.length; b += 1) {
    const bank = el("div", "bank");
    bank.dataset.bank = b;
    S.labels.slice(b * BANK, (b + 1) * BANK).forEach((name, j) => {
      const k = b * BANK + j;
      const button = el("button", "lab");
      button.type = "button";
      button.dataset.index = k;
      button.dataset.name = name;
      button.append(el("kbd", "", String(j + 1)), el("span", "lab-name", name), el("span", "role"),
        el("span", "score"));
      button.title = `${j + 1}: toggle · Shift+${j + 1}: main`;
      button.addEventListener("click", (e) => {
        e.currentTarget.blur();
        if (e.shiftKey) makeMain(k); else toggle(k);
      });
      bank.append(button);
    });
    box.append(bank);
  }
}

function renderLabels() {
  const photo = S.photos[S.cur];
  const suggestion = photo && !photo.record ? photo.suggestion : null;
  for (const button of document.querySelectorAll(".lab")) {
    const name = button.dataset.name;
    const selected = S.sel.includes(name);
    const main = S.sel[0] === name;
    button.classList.toggle("selected", selected);
    button.classList.toggle("main", main);
    button.classList.toggle("suggested", Boolean(suggestion && suggestion.labels.includes(name)));
    button.setAttribute("aria-pressed", String(selected));
    button.querySelector(".role").textContent = main ? "main" : selected ? "sub" : "";
    const score = suggestion && suggestion.scores[name] !== undefined ? suggestion.scores[name] : null;
    const bar = button.querySelector(".score");
    bar.style.width = score === null ? "0" : `${Math.round(score * 100)}%`;
    bar.title = score === null ? "" : `model score ${score.toFixed(2)}`;
  }
  const banks = document.querySelectorAll(".bank");
  banks.forEach((bank, b) => bank.classList.toggle("active", b === S.bank));
  $("bank-info").textContent = banks.length > 1
    ? `keys 1–9 → labels ${S.bank * BANK + 1}–${Math.min(S.labels.length, (S.bank + 1) * BANK)} · [ ] switch` : "";
}

function renderCaption() {
  const photo = S.photos[S.cur];
  $("photo-name").textContent = photo.name;
  const badge = $("photo-state");
  const kind = photo.record ? "labelled" : photo.skipped ? "skipped" : photo.suggestion ? "suggested" : "";
  badge.className = `badge ${kind}`;
  badge.textContent = kind || "unlabelled";
  $("photo-pos").textContent = `${S.pos.get(S.cur) + 1} / ${S.order.length}`;
}

function renderProgress() {
  const c = S.counts;
  $("progress").textContent = `${c.labelled} of ${c.total} labelled` + (c.skipped ? ` · ${c.skipped} skipped` : "");
  $("meter").style.width = `${c.total ? (100 * c.labelled) / c.total : 0}%`;
}

// ------------------------------------------------------------------------------------ photos

function photoURL(index) {
  if (!S.urls.has(index)) {
    const promise = fetch(`/api/photo/${index}`).then(async (response) => {
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        throw new Error(body.error || `the photo cannot be shown (HTTP ${response.status})`);
      }
      return URL.createObjectURL(await response.blob());
    });
    promise.catch(() => S.urls.delete(index)); // a failed fetch may be retried later
    S.urls.set(index, promise);
    for (const old of S.urls.keys()) {
      if (S.urls.size <= KEEP_URLS) break;
      if (old === S.cur || old === index) continue;
      S.urls.get(old).then((url) => URL.revokeObjectURL(url), () => {});
      S.urls.delete(old);
    }
  }
  return S.urls.get(index);
}

async function loadPhoto(index) {
  const token = ++S.loadToken;
  const img = $("photo");
  $("viewer").dataset.ready = "";
  $("photo-error").hidden = true;
  try {
    const url = await photoURL(index);
    if (token !== S.loadToken) return;
    img.hidden = false;
    img.alt = S.photos[index].name;
    img.src = url;
    await img.decode().catch(() => {});
  } catch (err) {
    if (token !== S.loadToken) return;
    img.hidden = true;
    $("photo-error").textContent = err.message;
    $("photo-error").hidden = false;
  }
  if (token === S.loadToken) $("viewer").dataset.ready = String(index);
}

function nextOpenAfter(index) {
  const start = S.pos.get(index) + 1;
  for (let k = 0; k < S.order.length; k += 1) {
    const i = S.order[(start + k) % S.order.length];
    if (!S.photos[i].record && !S.photos[i].skipped && i !== index) return i;
  }
  return null;
}

function show(index, remember = true) {
  if (remember && S.cur !== null && S.cur !== index) S.history.push(S.cur);
  S.cur = index;
  const photo = S.photos[index];
  const start = photo.record ? photo.record.labels : photo.suggestion ? photo.suggestion.labels : [];
  S.sel = [...start];
  renderLabels();
  renderCaption();
  loadPhoto(index);
  const ahead = nextOpenAfter(index);
  if (ahead !== null) photoURL(ahead).catch(() => {});
}

// ------------------------------------------------------------------------------------ actions

function toggle(k) {
  const name = S.labels[k];
  S.sel = S.sel.includes(name) ? S.sel.filter((x) => x !== name) : [...S.sel, name];
  renderLabels();
}

function makeMain(k) {
  const name = S.labels[k];
  S.sel = [name, ...S.sel.filter((x) => x !== name)];
  renderLabels();
}

function clearChoice() {
  S.sel = [];
  renderLabels();
}

function switchBank(delta) {
  const banks = Math.ceil(S.labels.length / BANK);
  S.bank = (S.bank + delta + banks) % banks;
  renderLabels();
}

function allDone() {
  const skipped = S.counts.skipped;
  setStatus(`All photos are done: ${S.counts.labelled} labelled` +
    (skipped ? `, ${skipped} skipped (→ and ← reach them)` : "") + `. The labels are in ${$("out-name").textContent}.`,
  "good");
}

function goNext(next) {
  if (next === null || next === undefined) allDone();
  else show(next);
}

async function guarded(action) {
  if (S.busy || S.cur === null) return;
  S.busy = true;
  try {
    await action();
  } catch (err) {
    setStatus(err.status === 409 ? "Nothing to undo." : err.message, err.status === 409 ? "" : "bad");
  } finally {
    S.busy = false;
  }
}

function save() {
  return guarded(async () => {
    if (!S.sel.length) {
      setStatus("Choose at least one label (keys 1–9), or skip the photo (s).", "bad");
      return;
    }
    const reply = await api("/api/save", { photo: S.cur, main: S.sel[0], labels: S.sel });
    const photo = S.photos[reply.photo];
    photo.record = reply.record;
    photo.skipped = false;
    await afterChange(reply);
    renderCaption();
    setStatus(`Saved ${photo.name}: ${reply.record.labels.join(", ")} (main ${reply.record.main}).`, "good");
    goNext(reply.next);
  });
}

function skip() {
  return guarded(async () => {
    const reply = await api("/api/skip", { photo: S.cur });
    const photo = S.photos[reply.photo];
    photo.skipped = reply.skipped;
    await afterChange(reply);
    renderCaption();
    setStatus(reply.skipped ? `Skipped ${photo.name}.` : `${photo.name} stays labelled.`);
    goNext(reply.next);
  });
}

function undo() {
  return guarded(async () => {
    const reply = await api("/api/undo", {});
    const photo = S.photos[reply.photo];
    Object.assign(photo, { record: reply.record, skipped: reply.skipped });
    await afterChange(reply);
    closeGrid();
    show(reply.photo);
    const now = reply.record ? `labelled ${reply.record.labels.join(", ")}` : reply.skipped ? "skipped" : "unlabelled";
    setStatus(`Undone: ${photo.name} is ${now} again.`);
  });
}

function step(delta) {
  if (S.cur === null) return;
  const k = S.pos.get(S.cur) + delta;
  if (k >= 0 && k < S.order.length) show(S.order[k]);
}

function back() {
  if (S.history.length) show(S.history.pop(), false);
  else step(-1);
}

// ------------------------------------------------------------------------------------ grid

function openGrid() {
  const items = $("grid-items");
  items.replaceChildren();
  const done = S.order.filter((i) => S.photos[i].record || S.photos[i].skipped);
  for (const i of done) {
    const photo = S.photos[i];
    const fig = el("figure", photo.record ? "labelled" : "skipped");
    fig.dataset.index = i;
    const img = el("img");
    img.loading = "lazy";
    img.alt = photo.name;
    img.src = `/api/photo/${i}?size=thumb`;
    const cap = el("figcaption");
    cap.append(el("div", "g-main", photo.record ? photo.record.main : "skipped"));
    if (photo.record && photo.record.labels.length > 1) cap.append(el("div", "g-subs", photo.record.labels.slice(1).join(", ")));
    fig.title = photo.name;
    fig.append(img, cap);
    fig.addEventListener("click", () => { closeGrid(); show(i); });
    items.append(fig);
  }
  $("grid-title").textContent = `${S.counts.labelled} labelled` + (S.counts.skipped ? ` · ${S.counts.skipped} skipped` : "");
  $("viewer").hidden = true;
  $("grid").hidden = false;
  S.gridOpen = true;
}

function closeGrid() {
  $("grid").hidden = true;
  $("viewer").hidden = false;
  S.gridOpen = false;
}

// ------------------------------------------------------------------------------------ keyboard

function onKey(e) {
  if (e.altKey || e.metaKey || e.isComposing) return;
  if (e.ctrlKey) {
    if (e.key === "z" || e.key === "Z") { e.preventDefault(); undo(); }
    return;
  }
  const digit = /^(?:Digit|Numpad)([1-9])$/.exec(e.code); // the key's place, whatever the layout and Shift
  if (digit) {
    e.preventDefault();
    const k = S.bank * BANK + Number(digit[1]) - 1;
    if (!S.gridOpen && k < S.labels.length) (e.shiftKey ? makeMain : toggle)(k);
    return;
  }
  const actions = {
    Enter: () => (S.gridOpen ? null : save()),
    Backspace: () => { closeGrid(); back(); },
    ArrowLeft: () => step(-1),
    ArrowRight: () => step(1),
    s: skip, S: skip, u: undo, U: undo,
    g: () => (S.gridOpen ? closeGrid() : openGrid()),
    Escape: () => (S.gridOpen ? closeGrid() : clearChoice()),
    "[": () => switchBank(-1),
    "]": () => switchBank(1),
  };
  if (actions[e.key]) {
    e.preventDefault(); // Enter on a focused button, Backspace navigating away: ours, not the browser's
    actions[e.key]();
  }
}

function setUp() {
  document.addEventListener("keydown", onKey);
  const click = (id, fn) => $(id).addEventListener("click", (e) => { e.currentTarget.blur(); fn(); });
  click("save", save);
  click("skip", skip);
  click("undo", undo);
  click("back", back);
  click("grid-button", () => (S.gridOpen ? closeGrid() : openGrid()));
  click("grid-close", closeGrid);
  loadState().catch((err) => setStatus(err.message, "bad"));
}

setUp();
