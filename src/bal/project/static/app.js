"use strict";
const token = new URLSearchParams(location.search).get("token");
const authHeaders = token ? {"X-Bal-Token": token} : {};
const $ = (id) => document.getElementById(id);
let state = null;          // the last /api/state, items updated as labels are confirmed
let current = 0;           // index of the highlighted item
const pending = new Set(); // image ids with a request in flight
const undoStack = [];      // {label_id, image_id} of labels given on this page, newest last
let chain = Promise.resolve();  // requests go out one after another, in order

function say(text) { $("status").textContent = text || ""; }

async function api(method, path, body) {
  const init = {method, headers: {...authHeaders}};
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (!response.ok) throw new Error((data && data.error) || ("HTTP " + response.status));
  return data;
}

function imageUrl(id) {
  return "/image/" + id + (token ? "?token=" + encodeURIComponent(token) : "");
}

function build() {
  const classes = $("classes");
  classes.replaceChildren();
  state.classes.forEach((name, i) => {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "class";
    b.dataset.class = name;
    if (i < 9) {
      const k = document.createElement("kbd");
      k.textContent = String(i + 1);
      b.append(k);
    }
    b.append(document.createTextNode(name));
    b.addEventListener("click", () => labelCurrent(name));
    classes.append(b);
  });
  const grid = $("grid");
  grid.replaceChildren();
  state.items.forEach((item, i) => {
    const fig = document.createElement("figure");
    fig.id = "item-" + item.id;
    fig.dataset.id = item.id;
    const img = document.createElement("img");
    img.src = imageUrl(item.id);
    // tiny images (digits, icons) stay crisp when enlarged; photos are smoothed
    img.addEventListener("load", () => img.classList.toggle("small", img.naturalWidth <= 48));
    img.alt = item.path;
    img.loading = "lazy";
    const cap = document.createElement("figcaption");
    const lab = document.createElement("span");
    lab.className = "label";
    const path = document.createElement("span");
    path.textContent = item.path;
    cap.append(lab, path);
    fig.append(img, cap);
    fig.addEventListener("click", () => { current = i; render(); });
    grid.append(fig);
  });
  $("empty").hidden = state.items.length > 0;
  render();
}

function render() {
  state.items.forEach((item, i) => {
    const fig = $("item-" + item.id);
    fig.classList.toggle("current", i === current);
    fig.classList.toggle("done", item.label !== null && !pending.has(item.id));
    fig.classList.toggle("pending", pending.has(item.id));
    fig.querySelector(".label").textContent = pending.has(item.id) ? "saving\u2026" : (item.label || "");
  });
  const fig = state.items.length ? $("item-" + state.items[current].id) : null;
  if (fig) fig.scrollIntoView({block: "nearest"});
  $("progress").max = Math.max(state.total, 1);
  $("progress").value = state.labelled;
  $("progress-text").textContent = state.labelled + " / " + state.total + " labelled";
  $("undo").disabled = undoStack.length === 0;
  $("cycle").textContent = state.cycle_id === null ? "" : "cycle " + state.cycle_id;
}

function nextUnlabelled(from) {
  const n = state.items.length;
  for (let step = 1; step <= n; step++) {
    const i = (from + step) % n;
    const item = state.items[i];
    if (item.label === null && !pending.has(item.id)) return i;
  }
  return from;
}

function apply(result) {
  const item = state.items.find((it) => it.id === result.image_id);
  if (item) item.label = result.label;
  state.labelled = result.labelled;
  state.total = result.total;
}

function labelCurrent(name) {
  if (!state || state.items.length === 0) return;
  const item = state.items[current];
  pending.add(item.id);
  current = nextUnlabelled(current);
  render();
  chain = chain.then(async () => {
    try {
      const result = await api("POST", "/api/label", {image_id: item.id, label: name, cycle_id: state.cycle_id});
      undoStack.push({label_id: result.label_id, image_id: item.id});
      apply(result);
      say("");
    } catch (e) {
      say("Not saved: " + e.message);
    } finally {
      pending.delete(item.id);
      render();
    }
  });
}

function undo() {
  chain = chain.then(async () => {
    const last = undoStack.pop();
    if (!last) return;
    pending.add(last.image_id);
    render();
    try {
      apply(await api("POST", "/api/undo", {label_id: last.label_id}));
      current = state.items.findIndex((it) => it.id === last.image_id);
      if (current < 0) current = 0;
      say("");
    } catch (e) {
      say("Undo failed: " + e.message);
    } finally {
      pending.delete(last.image_id);
      render();
    }
  });
}

document.addEventListener("keydown", (e) => {
  if (!state) return;
  if ((e.ctrlKey || e.metaKey) && !e.altKey && !e.shiftKey && e.key.toLowerCase() === "z") {
    e.preventDefault(); undo(); return;
  }
  if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
  if (e.key === "u" || e.key === "U") { e.preventDefault(); undo(); return; }
  if (/^[1-9]$/.test(e.key)) {
    const name = state.classes[Number(e.key) - 1];
    if (name !== undefined) { e.preventDefault(); labelCurrent(name); }
    return;
  }
  const n = state.items.length;
  if (n && (e.key === "ArrowRight" || e.key === "ArrowDown")) { current = (current + 1) % n; render(); }
  else if (n && (e.key === "ArrowLeft" || e.key === "ArrowUp")) { current = (current - 1 + n) % n; render(); }
});

async function load() {
  try {
    state = await api("GET", "/api/state");
  } catch (e) {
    say("Could not load the selection: " + e.message);
    return;
  }
  const first = state.items.findIndex((it) => it.label === null);
  current = first < 0 ? 0 : first;
  build();
  document.body.dataset.ready = "1";
}

$("undo").addEventListener("click", undo);
load();
