"use strict";
const token = new URLSearchParams(location.search).get("token");
const authHeaders = token ? {"X-Bal-Token": token} : {};
const $ = (id) => document.getElementById(id);
let state = null;          // the last /api/state, items updated as labels are confirmed
let keyOf = new Map();     // class name -> its key (one character), for the classes that have one
let classOfKey = new Map(); // the other way round
let searching = false;     // "/" opened the class search box
const chosen = new Map();  // image id -> class pressed, shown until the server confirms it
let current = 0;           // index of the highlighted item
const pending = new Set(); // image ids with a request in flight
const undoStack = [];      // {label_id, image_id} of labels given on this page, newest last
let chain = Promise.resolve();  // requests go out one after another, in order

function say(text) { $("status").textContent = text || ""; }

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function api(method, path, body) {
  const init = {method, headers: {...authHeaders}};
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  // 503: another bal command is writing to the project (an import); wait and try again
  for (let attempt = 1; ; attempt++) {
    const response = await fetch(path, init);
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (response.status === 503 && attempt < 10) {
      say("The project is busy (another bal command is writing to it); trying again\u2026");
      await sleep(300 * attempt);
      continue;
    }
    if (!response.ok) throw new Error((data && data.error) || ("HTTP " + response.status));
    return data;
  }
}

function imageUrl(id, original) {
  const query = [original ? "original=1" : "", token ? "token=" + encodeURIComponent(token) : ""].filter(Boolean);
  return "/image/" + id + (query.length ? "?" + query.join("&") : "");
}

// Keys: a class whose name is one digit or letter is chosen by that very key (classes named
// 0..9 press their own digit); the other classes take the digits still free, 1..9 then 0, in
// list order; any class, keyed or not, can be found by typing "/" and part of its name.
function assignKeys(classes) {
  keyOf = new Map();
  const own = (name) => /^[0-9a-z]$/i.test(name) ? name.toLowerCase() : null;
  classes.forEach((name) => { if (own(name)) keyOf.set(name, own(name)); });
  const taken = new Set(keyOf.values());
  const free = "1234567890".split("").filter((k) => !taken.has(k));
  classes.forEach((name) => { if (!keyOf.has(name) && free.length) keyOf.set(name, free.shift()); });
  classOfKey = new Map([...keyOf].map(([name, key]) => [key, name]));
}

function build() {
  assignKeys(state.classes);
  const classes = $("classes");
  classes.replaceChildren();
  state.classes.forEach((name) => {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "class";
    b.dataset.class = name;
    const k = document.createElement("kbd");
    k.textContent = keyOf.has(name) ? keyOf.get(name) : "/";
    k.title = keyOf.has(name) ? "press " + keyOf.get(name) : "type / and part of the name, then Enter";
    b.append(k, document.createTextNode(name));
    b.addEventListener("click", () => labelCurrent(name));
    classes.append(b);
  });
  $("keys-help").textContent = keyOf.size < state.classes.length
    ? "keys as shown; / to search the other classes; u undoes" : "keys as shown; u undoes";
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
    // the thumbnail is what the model sees; the file itself opens full size in a new tab
    const full = document.createElement("a");
    full.className = "original";
    full.href = imageUrl(item.id, true);
    full.target = "_blank";
    full.rel = "noopener noreferrer";
    full.textContent = "full image";
    full.title = "open " + item.path + " at full size";
    full.addEventListener("click", (e) => e.stopPropagation());
    cap.append(lab, path, " ", full);
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
    // the class pressed shows at once; "saving" until the server has committed it
    fig.querySelector(".label").textContent = pending.has(item.id)
      ? (chosen.get(item.id) || "") + " (saving\u2026)" : (item.label || "");
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
  chosen.set(item.id, name);
  say("");
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
      chosen.delete(item.id);
      render();
    }
  });
}

function openSearch() {
  searching = true;
  const box = $("search");
  box.hidden = false;
  box.value = "";
  box.focus();
  filterClasses("");
}

function closeSearch() {
  searching = false;
  $("search").hidden = true;
  $("search").blur();
  filterClasses("");
}

function matches(query) {
  const q = query.trim().toLowerCase();
  if (!q) return [];
  const exact = state.classes.filter((c) => c.toLowerCase() === q);
  return exact.length ? exact : state.classes.filter((c) => c.toLowerCase().includes(q));
}

function filterClasses(query) {
  const hits = new Set(matches(query));
  document.querySelectorAll("#classes .class").forEach((b) => {
    b.classList.toggle("dim", query.trim() !== "" && !hits.has(b.dataset.class));
    b.classList.toggle("hit", hits.has(b.dataset.class));
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

$("search").addEventListener("input", (e) => filterClasses(e.target.value));
$("search").addEventListener("keydown", (e) => {
  if (e.key === "Escape") { e.preventDefault(); closeSearch(); return; }
  if (e.key === "Enter") {
    e.preventDefault();
    const hits = matches(e.target.value);
    if (hits.length === 1) { closeSearch(); labelCurrent(hits[0]); }
    else say(hits.length ? "several classes match: " + hits.slice(0, 8).join(", ") + "; type more"
                         : "no class matches " + JSON.stringify(e.target.value));
  }
  e.stopPropagation();  // typing a name is not a key press on the grid
});

document.addEventListener("keydown", (e) => {
  if (!state || searching) return;
  if ((e.ctrlKey || e.metaKey) && !e.altKey && !e.shiftKey && e.key.toLowerCase() === "z") {
    e.preventDefault(); undo(); return;
  }
  if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
  if (e.key === "/") { e.preventDefault(); openSearch(); return; }
  const key = e.key.length === 1 ? e.key.toLowerCase() : "";
  if (classOfKey.has(key)) { e.preventDefault(); labelCurrent(classOfKey.get(key)); return; }
  if (key === "u") { e.preventDefault(); undo(); return; }
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
