// The classes the page paints and shows: names and colours from /api/info, the colour
// tables the overlay layers draw with, and the legend that doubles as the class picker.

import { DIFF_COLOURS, rgba } from "./layers.js";

const PALETTE = [[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200],
  [245, 130, 48], [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60]];
const ANNOTATED_BACKGROUND = rgba(90, 110, 140, 90);

/** {classes, colours, binary, unlabeled} of the current model, else of the data set. */
export function classTable(info) {
  const model = info.model;
  let classes = [...(model?.classes ?? info.data.classes ?? [])];
  let colours = [...(model?.colors ?? info.data.colors ?? [])];
  const binary = model ? model.binary : classes.length <= 2;
  if (binary && classes.length === 1) {
    classes = ["background", classes[0]];
    colours = [[0, 0, 0], colours[0] ?? PALETTE[1]];
  }
  if (classes.length === 0) classes = ["background", "foreground"];
  colours = classes.map((_, i) => colours[i] ?? PALETTE[i % PALETTE.length]);
  return { classes, colours, binary, unlabeled: info.data.unlabeled_value ?? null };
}

/** Class 0 is drawn see-through when it is the background (not, say, CamVid's sky). */
export function isBackground(table, i) {
  return i === 0 && (table.binary || /^(background|bg|_background_)$/i.test(table.classes[0]));
}

/** Colour per mask value for the prediction and the truth layers (255 stays see-through). */
export function colourTables(table) {
  const prediction = new Uint32Array(256);
  const truth = new Uint32Array(256);
  table.colours.forEach(([r, g, b], i) => {
    const background = isBackground(table, i);
    prediction[i] = background ? 0 : rgba(r, g, b, 255);
    // where "not annotated" exists, annotated background gets a faint tint to tell them apart
    truth[i] = !background ? rgba(r, g, b, 255)
      : table.unlabeled !== null ? ANNOTATED_BACKGROUND : 0;
  });
  return { prediction, truth };
}

function swatch(colour, transparent = false) {
  const sw = document.createElement("span");
  sw.className = "swatch";
  sw.classList.toggle("transparent", transparent);
  sw.style.setProperty("--c", `rgb(${colour.join(",")})`);
  return sw;
}

/** Fill #legend (click or key 0-9 picks the class to paint) and #diff-legend. */
export function renderLegend(table, active, onPick) {
  const items = table.classes.map((name, i) => {
    const li = document.createElement("li");
    li.className = "legend-item";
    li.dataset.class = String(i);
    li.classList.toggle("active", i === active);
    li.title = `Paint ${name}${i <= 9 ? ` (key ${i})` : ""}`;
    const label = document.createElement("span");
    label.textContent = name;
    const key = document.createElement("kbd");
    key.textContent = i <= 9 ? String(i) : "";
    li.append(swatch(table.colours[i], isBackground(table, i)), label, key);
    li.addEventListener("click", () => onPick(i));
    return li;
  });
  document.getElementById("legend").replaceChildren(...items);
  const entries = table.binary
    ? [["extra", "predicted, not in truth"], ["missed", "in truth, not predicted"]]
    : [["extra", "prediction disagrees with truth"]];
  document.getElementById("diff-legend").replaceChildren(...entries.map(([key, text]) => {
    const row = document.createElement("div");
    row.className = "legend-item";
    const label = document.createElement("span");
    label.textContent = text;
    row.append(swatch(DIFF_COLOURS[key]), label);
    return row;
  }));
}

export function markActive(i) {
  for (const li of document.querySelectorAll("#legend .legend-item")) {
    li.classList.toggle("active", Number(li.dataset.class) === i);
  }
}
