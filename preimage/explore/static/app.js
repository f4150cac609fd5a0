// preimage explore: the page asks the local server (/api/...) for every decoder's reconstruction of the chosen
// photo and shows them side by side; every control re-renders the panels. No framework, no CDN.
"use strict";

const $ = (id) => document.getElementById(id);
let state = null;          // /api/state: panels, photos, perturbations
let photo = null;          // the id of the photo shown
let generation = 0;        // each render's number: late answers of an older render are dropped
let sampleSeed = 0;
let job = null;            // the running optimisation's id

function message(text) {
  const box = $("message");
  box.textContent = text || "";
  box.hidden = !text;
}

async function api(path, body) {
  const response = await fetch(path, body === undefined ? {} : {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  const data = await response.json().catch(() => ({error: `the server answered ${response.status}`}));
  if (!response.ok || data.error) throw new Error(data.error || `the server answered ${response.status}`);
  return data;
}

function option(select, value, text, title) {
  const o = document.createElement("option");
  o.value = value; o.textContent = text; o.title = title || text; select.appendChild(o);
}

function shortName(name) {  // a file's own name for the menus; the whole path stays in the tooltip
  const [prefix, path] = name.startsWith("store: ") ? ["store: ", name.slice(7)] : ["", name];
  return prefix + path.split(/[\\/]/).pop();
}

function folderName(feature) {  // hf:/a/long/path/my-model:layer as hf:my-model:layer (the menu; the tooltip has it all)
  return feature.replace(/^hf:(?:[A-Za-z]:)?[.\\/].*[\\/]([^\\/:]+):/, "hf:$1:");
}

function addPhoto(id, name) {
  for (const select of [$("photo-select"), $("second-select")]) {
    if (![...select.options].some((o) => o.value === id)) option(select, id, shortName(name), name);
  }
}

function titled(select) {  // a select's tooltip: its chosen option's whole name
  select.title = select.selectedOptions[0] ? select.selectedOptions[0].title : "";
}

function perturbation() {
  return {kind: $("perturbation").value, amount: +$("amount").value, start: +$("start").value,
          stop: +$("stop").value, top: +$("top").value, left: +$("left").value, size: +$("size").value, seed: 0};
}

function panelFigure(panel) {
  let figure = document.querySelector(`.panel[data-name="${CSS.escape(panel.name)}"]`);
  if (figure) return figure;
  figure = document.createElement("figure");
  figure.className = "panel"; figure.dataset.name = panel.name;
  figure.innerHTML = `<img alt=""><figcaption></figcaption><div class="scores"></div><div class="error"></div>
    <a class="download" download>PNG</a>`;
  figure.querySelector("figcaption").textContent = panel.label;
  figure.querySelector("img").alt = `reconstruction from ${panel.name}`;
  figure.querySelector("a").download = `${panel.name.replace(/[:+]/g, "-")}.png`;
  $("panels").appendChild(figure);
  return figure;
}

function show(figure, data, mine) {
  if (mine !== generation) return;
  const img = figure.querySelector("img");
  img.src = data.png; img.dataset.generation = mine;
  figure.querySelector("a").href = data.png;
  figure.querySelector(".error").textContent = "";
  figure.querySelector(".scores").textContent = data.normalised_error === undefined ? "" :
    `error ${data.normalised_error.toFixed(3)} · PSNR ${data.psnr.toFixed(1)} dB · SSIM ${data.ssim.toFixed(3)}`;
}

function fail(figure, err, mine) {
  if (mine !== generation) return;
  figure.querySelector(".error").textContent = err.message;
  const img = figure.querySelector("img");  // no earlier picture or score stays beside the error
  img.removeAttribute("src"); img.dataset.generation = mine;
  figure.querySelector(".scores").textContent = "";
  figure.querySelector("a").removeAttribute("href");
}

async function showSecond(id) {  // the photo interpolated towards, as stored, beside the first
  const figure = $("second-original");
  figure.hidden = !id;
  if (!id) return;
  try { figure.querySelector("img").src = (await api("/api/photo", {photo: id})).png; } catch (err) { message(err.message); }
}

async function render(mode) {
  if (!photo) return;
  const mine = ++generation;
  document.body.dataset.rendered = "";
  const second = $("second-select").value;
  const interpolating = mode !== "sample" && $("interpolate").checked && second;
  showSecond(interpolating ? second : null);
  const jobs = state.panels.map((panel) => {
    const figure = panelFigure(panel);
    let request;
    if (mode === "sample") request = api("/api/sample", {panel: panel.name, seed: sampleSeed});
    else if (interpolating) request = api("/api/interpolate", {first: photo, second, panel: panel.name, t: +$("t").value});
    else request = api("/api/reconstruct", {photo, panel: panel.name, perturbation: perturbation()});
    return request.then((data) => show(figure, data, mine), (err) => fail(figure, err, mine));
  });
  await Promise.all(jobs);
  if (mine === generation) document.body.dataset.rendered = String(mine);
}

async function choose(id) {
  photo = id;
  $("photo-select").value = id;
  titled($("photo-select"));
  message("");
  try {  // the photo as the decoders' stores crop it
    const original = await api("/api/photo", {photo: id});
    $("original").querySelector("img").src = original.png;
  } catch (err) { message(err.message); }
  await render();
}

async function upload(file) {
  message("");
  if (file.size > state.max_upload) {
    message(`${file.name}: ${(file.size / 1048576).toFixed(1)} MiB, over the ${(state.max_upload / 1048576).toFixed(0)} MiB an upload may take (start preimage explore with --max-upload-mb to allow more)`);
    return;
  }
  try {
    const response = await fetch("/api/upload", {method: "POST", headers: {"X-Filename": file.name}, body: file});
    const data = await response.json().catch(() => ({error: `the server answered ${response.status}`}));
    if (!response.ok || data.error) throw new Error(data.error);
    addPhoto(data.id, data.name);
    await choose(data.id);
  } catch (err) { message(err.message); }
}

async function optimizeStart() {
  message("");
  try {
    const data = await api("/api/optimize", {photo, feature: $("optimize-feature").value, steps: +$("optimize-steps").value});
    job = data.job;
    $("optimize-progress").value = 0;
    $("optimize-result").hidden = true; $("optimize-result").dataset.state = "running";
    $("optimize-stop").disabled = false; $("optimize-start").disabled = true;
    poll();
  } catch (err) { message(err.message); }
}

async function poll() {
  if (!job) return;
  const response = await fetch(`/api/optimize/${job}`);
  const data = await response.json();
  $("optimize-progress").value = data.total ? data.step / data.total : 0;
  if (!data.done) { setTimeout(poll, 300); return; }
  job = null;
  $("optimize-stop").disabled = true; $("optimize-start").disabled = false;
  const result = $("optimize-result");
  if (data.error) { message(`optimisation: ${data.error}`); result.dataset.state = data.error; return; }
  result.hidden = false; result.dataset.state = data.stopped ? "stopped" : "done";
  result.querySelector("img").src = data.png;
  const where = data.stopped ? ` (stopped at step ${data.step} of ${data.total})` : "";
  result.querySelector("figcaption").textContent =
    `${data.feature}${where}: relative feature error ${data.relative_error.toFixed(4)}`;
}

async function optimizeStop() {
  if (job) await fetch(`/api/optimize/${job}`, {method: "DELETE"});
}

async function start() {
  state = await api("/api/state");
  for (const kind of state.perturbations) option($("perturbation"), kind, kind);
  for (const [name, id] of Object.entries(state.photos)) addPhoto(id, name);
  for (const [name, id] of Object.entries(state.store_photos)) addPhoto(id, `store: ${name}`);
  const features = [...new Set(state.panels.map((p) => p.feature))];
  for (const feature of features) {
    if (feature === "hog" || feature.includes(":")) option($("optimize-feature"), feature, folderName(feature), feature);
  }
  $("sample").disabled = !state.store;
  $("sample-hint").textContent = state.store ? "" : "(start with --store to draw samples)";
  for (const panel of state.panels) panelFigure(panel);

  $("photo-select").addEventListener("change", (e) => choose(e.target.value));
  $("upload").addEventListener("change", (e) => e.target.files[0] && upload(e.target.files[0]));
  let pending = false;  // a select fires both input and change: one render for both
  const changed = () => {
    for (const range of document.querySelectorAll("input[type=range]")) $(`${range.id}-value`).textContent = range.value;
    titled($("second-select"));
    if (pending) return;
    pending = true;
    setTimeout(() => { pending = false; render(); }, 0);
  };
  for (const id of ["perturbation", "amount", "start", "stop", "top", "left", "size", "interpolate", "second-select", "t"]) {
    $(id).addEventListener("input", changed);
    $(id).addEventListener("change", changed);
  }
  $("sample").addEventListener("click", () => { sampleSeed += 1; render("sample"); });
  $("optimize-start").addEventListener("click", optimizeStart);
  $("optimize-stop").addEventListener("click", optimizeStop);
  document.addEventListener("dragover", (e) => { e.preventDefault(); document.body.classList.add("dragging"); });
  document.addEventListener("dragleave", () => document.body.classList.remove("dragging"));
  document.addEventListener("drop", (e) => {
    e.preventDefault(); document.body.classList.remove("dragging");
    if (e.dataTransfer.files[0]) upload(e.dataTransfer.files[0]);
  });
  const first = Object.values(state.photos)[0] || Object.values(state.store_photos)[0];
  if (first) await choose(first);
  document.body.dataset.started = "yes";
}

start().catch((err) => message(err.message));
