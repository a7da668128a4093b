// The studio page: look at a prediction, correct it, save it, train again. This file wires
// the parts together (gallery, viewer, editor, trainer) and owns the open image's state.

import { ApiError, getBitmap, getJSON, getMask, imagePath, request, url } from "./api.js";
import { classTable, colourTables, markActive, renderLegend } from "./classes.js";
import { MaskEditor } from "./editor.js";
import { Gallery, Suggestions } from "./gallery.js";
import { bindKeys } from "./keys.js";
import { encodeGrayPNG } from "./png.js";
import { Trainer } from "./train.js";
import { table } from "./ui.js";
import { Viewer } from "./viewer.js";

const $ = (id) => document.getElementById(id);
const PREVIEW_SIDE = 2048;

const state = {
  info: null, classes: [], colours: [], binary: true, unlabeled: null,
  item: null, truth: null, prediction: null, uncertainty: null, editor: null,
  metrics: null, mode: "prediction", tool: "brush", paintClass: 1, size: 9, opacity: 0.5,
  threshold: 0.5,
};

const viewer = new Viewer($("stage"), {
  strokeStart: (x, y) => edit((ed) => ed.beginStroke(x, y, paintValue(), state.size / 2)),
  strokeMove: (x, y) => edit((ed) => ed.strokeTo(x, y)),
  strokeEnd: () => edit((ed) => ed.endStroke()),
  fill: (x, y) => edit((ed) => ed.fill(x, y, state.paintClass)),
  crop: (r) => getBitmap(imagePath(state.item.name, "image"), r),
  changed: () => { $("zoom-info").textContent = `${Math.round(viewer.view.scale * 100)}%`; },
});
const gallery = new Gallery((item) => openImage(item));
const suggestions = new Suggestions((name) => openImage(name));
const trainer = new Trainer({
  starting: beforeTraining, finished: afterTraining, error: (m) => status(m, "error"),
});

function status(text, kind = "info") {
  const bar = $("statusbar");
  bar.textContent = text;
  bar.dataset.kind = kind;
}

function paintValue() {
  return state.tool === "eraser" ? (state.unlabeled ?? 0) : state.paintClass;
}

/** Run an edit on the open mask, then redraw and refresh the undo/save buttons. */
function edit(action) {
  if (!state.editor) return;
  if (state.mode === "prediction") setMode("truth"); // show what is being painted
  action(state.editor);
  viewer.setMasks({ truth: state.editor.mask });
  updateEditButtons();
}

function updateEditButtons() {
  const ed = state.editor;
  $("undo").disabled = !ed?.canUndo;
  $("redo").disabled = !ed?.canRedo;
  $("save").disabled = !ed?.dirty;
  $("dirty-flag").hidden = !ed?.dirty;
  $("accept").disabled = !state.prediction;
}

// ---- data set and model facts -------------------------------------------------------------

function applyInfo(info) {
  state.info = info;
  state.table = classTable(info);
  Object.assign(state, state.table);
  if (state.paintClass >= state.classes.length) state.paintClass = state.classes.length - 1;
  const model = info.model;
  $("model-name").textContent = model ? `model: ${model.name}` : "model: none yet";
  const folder = info.data.root.replace(/[/\\]+$/, "").split(/[/\\]/).pop();
  $("data-facts").textContent = `data: ${folder} · ${info.data.images} images · `
    + `${info.data.labelled} labelled`;
  $("data-facts").title = info.data.root;
  const banner = $("banner");
  banner.hidden = Boolean(model);
  banner.textContent = model ? "" : "No model yet. Paint masks on a few images (Brush, then "
    + "Save; at least 2), then press “Train the first model” on the right.";
  $("threshold-row").hidden = !(model && model.binary);
  $("uncertainty-row").hidden = !(model && model.has_uncertainty);
  for (const b of document.querySelectorAll("#modes button")) {
    b.disabled = !model && b.dataset.mode !== "truth";
  }
  if (!model) setMode("truth");
  trainer.setHasModel(Boolean(model));
  viewer.setLuts(colourTables(state.table), state.binary);
  renderLegend(state.table, state.paintClass, pickClass);
}

function pickClass(i) {
  if (i < 0 || i >= state.classes.length) return;
  state.paintClass = i;
  if (state.tool !== "brush" && state.tool !== "fill") setTool("brush");
  markActive(i);
}

function setMode(mode) {
  state.mode = mode;
  viewer.setMode(mode);
  for (const b of document.querySelectorAll("#modes button")) {
    b.classList.toggle("active", b.dataset.mode === mode);
  }
  $("diff-legend").hidden = mode !== "difference";
}

function setTool(tool) {
  state.tool = tool;
  viewer.setTool(tool);
  for (const b of document.querySelectorAll("#tools button")) {
    b.classList.toggle("active", b.dataset.tool === tool);
  }
}

function setSize(size) {
  state.size = Math.max(1, Math.min(101, Math.round(size)));
  $("size").value = String(state.size);
  $("size-value").textContent = String(state.size);
  viewer.setRadius(state.size / 2);
}

// ---- the open image -----------------------------------------------------------------------

function predictionQuery() {
  return { threshold: state.info.model?.binary ? state.threshold : null,
    model: state.info.model?.id };
}

async function maybeMask(path, query) {
  try {
    return await getMask(path, query);
  } catch (err) {
    if (err instanceof ApiError && (err.status === 404 || err.status === 409)) return null;
    throw err;
  }
}

let opening = 0; // the latest click wins when images are opened faster than they load

async function openImage(itemOrName) {
  if (state.editor?.dirty && !confirm("Discard the unsaved changes to this mask?")) return;
  const seq = (opening += 1);
  const item = typeof itemOrName === "string" ? await gallery.find(itemOrName) : itemOrName;
  if (!item) {
    status(`Image ${itemOrName} is not in the data set.`, "error");
    return;
  }
  const stage = $("stage");
  stage.dataset.state = "loading";
  stage.dataset.image = item.name;
  $("image-name").textContent = `${item.name} · ${item.width}×${item.height}`;
  gallery.select(item.name);
  status(`Opening ${item.name}…`);
  try {
    const path = (what) => imagePath(item.name, what);
    const [preview, truth] = await Promise.all([
      getBitmap(path("image"), { max_side: PREVIEW_SIDE }),
      item.has_mask ? maybeMask(path("truth")) : null,
    ]);
    if (seq !== opening) return;
    if (truth && (truth.width !== item.width || truth.height !== item.height)) {
      throw new Error(`its mask is ${truth.width}×${truth.height}, the image `
        + `${item.width}×${item.height}`);
    }
    Object.assign(state, { item, truth: truth?.data ?? null, prediction: null,
      uncertainty: null, metrics: null });
    viewer.setImage(item.width, item.height, preview);
    await loadPrediction(true);
    stage.dataset.state = "ready";
    status(`${item.name} open.`);
  } catch (err) {
    stage.dataset.state = "error";
    status(`Could not open ${item.name}: ${err.message}`, "error");
  }
  updateDownloads();
}

/** (Re)load the prediction, uncertainty and metrics; a fresh editor unless edits exist. */
async function loadPrediction(fresh = false) {
  const { item } = state;
  const model = state.info.model;
  const path = (what) => imagePath(item.name, what);
  const [pred, unc] = await Promise.all([
    model ? maybeMask(path("prediction"), predictionQuery()) : null,
    model?.has_uncertainty ? maybeMask(path("uncertainty"), { model: model.id }) : null,
  ]);
  if (state.item !== item) return; // another image was opened meanwhile
  state.prediction = pred?.data ?? null;
  state.uncertainty = unc?.data ?? null;
  if (fresh || !state.editor?.dirty) {
    const start = state.truth ?? state.prediction;
    state.editor = new MaskEditor(item.width, item.height, start);
    if (!start && state.unlabeled === null) state.editor.mask.fill(0);
  }
  viewer.setMasks({ prediction: state.prediction, truth: state.editor.mask,
    uncertainty: state.uncertainty });
  $("stage").dataset.model = model?.id ?? "";
  updateEditButtons();
  await loadMetrics();
}

async function loadMetrics() {
  const box = $("metrics");
  if (!state.item || !state.info.model) {
    box.textContent = state.info?.model ? "—" : "No model yet.";
    return;
  }
  const { item } = state;
  let m;
  try {
    m = await getJSON(imagePath(item.name, "metrics"), predictionQuery());
  } catch (err) {
    box.textContent = err.message;
    return;
  }
  if (state.item !== item) return;
  state.metrics = m;
  if (!m.has_truth) {
    box.textContent = "No truth mask yet: correct the prediction and Save.";
    box.dataset.dice = "";
    return;
  }
  const rows = m.dice === null && m.iou === null ? [] : [["overall", m.dice, m.iou]];
  for (const [name, v] of Object.entries(m.per_class || {})) rows.push([name, v.dice, v.iou]);
  box.replaceChildren(table(["Dice", "IoU"], rows));
  box.dataset.dice = m.dice === null ? "" : String(m.dice);
}

function updateDownloads() {
  const name = state.item?.name;
  const stem = name ? name.replace(/\.[^./]+$/, "").replaceAll("/", "_") : "";
  const link = (id, what, file, query = {}) => {
    const a = $(id);
    const ok = Boolean(name && (what === "mask" || state.info.model));
    a.classList.toggle("disabled", !ok);
    if (!ok) a.removeAttribute("href");
    else if (what !== "mask") a.href = url(imagePath(name, what), query);
    a.download = file;
  };
  link("dl-mask", "mask", `${stem}_mask.png`);
  link("dl-prediction", "prediction", `${stem}_prediction.png`, predictionQuery());
  link("dl-overlay", "overlay", `${stem}_overlay.png`, predictionQuery());
  link("dl-probabilities", "probabilities", `${stem}_probabilities.png`, predictionQuery());
  $("dl-zip").href = url("api/masks.zip");
}

async function downloadEdited(event) {
  event.preventDefault();
  if (!state.editor) return;
  const blob = await encodeGrayPNG(state.editor.mask, state.item.width, state.item.height);
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = $("dl-mask").download;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

// ---- saving, accepting, training ----------------------------------------------------------

async function save() {
  const { editor, item } = state;
  if (!editor || editor.stroke) return;
  $("save").disabled = true;
  status(`Saving ${item.name}…`);
  try {
    const at = editor.position; // strokes painted while the request runs stay unsaved
    const truth = Uint8Array.from(editor.mask);
    const png = await encodeGrayPNG(truth, item.width, item.height);
    const res = await (await request(imagePath(item.name, "mask"),
      { method: "PUT", body: png, type: "image/png" })).json();
    editor.markSaved(at);
    await afterSave(res, truth);
  } catch (err) {
    status(`Not saved: ${err.message}`, "error");
  }
  updateEditButtons();
}

async function afterSave(res, truth) {
  state.truth = truth;
  state.item.has_mask = true;
  gallery.markLabelled(state.item.name);
  updateEditButtons();
  status(`Saved ${res.saved}${res.previous ? ` (the old mask is in ${res.previous})` : ""}.`);
  applyInfo(await getJSON("api/info"));
  await loadMetrics();
  $("stage").dataset.saved = String(Number($("stage").dataset.saved || 0) + 1);
}

async function accept() {
  const { item } = state;
  if (state.editor?.dirty && !confirm("Replace your unsaved changes with the prediction?")) return;
  try {
    const res = await (await request(imagePath(item.name, "accept"),
      { method: "POST", query: predictionQuery() })).json();
    const truth = await getMask(imagePath(item.name, "truth"));
    state.editor = new MaskEditor(item.width, item.height, truth.data);
    viewer.setMasks({ truth: state.editor.mask });
    await afterSave(res, Uint8Array.from(truth.data));
  } catch (err) {
    status(`Not accepted: ${err.message}`, "error");
  }
  updateEditButtons();
}

let trainedFrom = null;

async function beforeTraining() {
  if (state.editor?.dirty && confirm("Save your changes to this mask before training?")) {
    await save();
  }
  trainedFrom = state.item ? { name: state.item.name, before: state.metrics } : null;
}

async function afterTraining(done) {
  applyInfo(await getJSON("api/info"));
  let image = null;
  if (state.item) {
    await loadPrediction();
    if (trainedFrom?.name === state.item.name) {
      image = { name: state.item.name, before: trainedFrom.before, after: state.metrics };
    }
  }
  trainer.showResult(done, image);
  updateDownloads();
  status("Training done: the new model is current.");
  if (!$("tab-suggest").hidden) suggestions.load(true); // ranking predicts every image
}

// ---- controls and keys --------------------------------------------------------------------

function bindControls() {
  for (const b of document.querySelectorAll(".tab")) {
    b.addEventListener("click", () => {
      for (const t of document.querySelectorAll(".tab")) t.classList.toggle("active", t === b);
      $("tab-gallery").hidden = b.dataset.tab !== "gallery";
      $("tab-suggest").hidden = b.dataset.tab !== "suggest";
      if (b.dataset.tab === "suggest") suggestions.load(Boolean(state.info?.model));
    });
  }
  for (const b of document.querySelectorAll("#modes button")) {
    b.addEventListener("click", () => setMode(b.dataset.mode));
  }
  for (const b of document.querySelectorAll("#tools button")) {
    b.addEventListener("click", () => setTool(b.dataset.tool));
  }
  $("opacity").addEventListener("input", (e) => {
    state.opacity = Number(e.target.value);
    viewer.layers.overlay.style.opacity = String(state.opacity);
  });
  $("threshold").addEventListener("input", (e) => {
    $("threshold-value").textContent = Number(e.target.value).toFixed(2);
  });
  $("threshold").addEventListener("change", async (e) => {
    state.threshold = Number(e.target.value);
    if (state.item) await loadPrediction();
    updateDownloads();
  });
  $("uncertainty").addEventListener("change", (e) => viewer.setUncertainty(e.target.checked));
  $("size").addEventListener("input", (e) => setSize(Number(e.target.value)));
  $("undo").addEventListener("click", () => edit((ed) => ed.undo()));
  $("redo").addEventListener("click", () => edit((ed) => ed.redo()));
  $("save").addEventListener("click", save);
  $("accept").addEventListener("click", accept);
  $("fit").addEventListener("click", () => viewer.fit());
  $("dl-mask").addEventListener("click", downloadEdited);
  window.addEventListener("beforeunload", (e) => {
    if (state.editor?.dirty) e.preventDefault();
  });
  bindKeys({
    undo: () => edit((ed) => ed.undo()),
    redo: () => edit((ed) => ed.redo()),
    save,
    tool: setTool,
    grow: (sign) => setSize(state.size + sign * Math.max(1, Math.round(state.size / 8))),
    pickClass,
    space: (held) => {
      viewer.spaceDown = held;
      viewer.updateCursorStyle();
    },
  });
}

async function main() {
  bindControls();
  setSize(state.size);
  viewer.layers.overlay.style.opacity = String(state.opacity);
  try {
    const info = await getJSON("api/info");
    applyInfo(info);
    trainer.show(info.training ?? { state: "idle" });
    await gallery.load(0);
    document.body.dataset.ready = "1";
    status("Pick an image on the left.");
  } catch (err) {
    const banner = $("banner");
    banner.hidden = false;
    banner.textContent = err instanceof ApiError && err.status === 401
      ? "This studio needs its access token: open the link `unetkit serve` printed (it ends "
        + "with ?token=…)." : `The studio's server did not answer: ${err.message}`;
    status(err.message, "error");
  }
  updateDownloads();
}

window.studio = { state, viewer, openImage, toClient: (x, y) => viewer.toClient(x, y) };
main();
