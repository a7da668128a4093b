// Pixel painters of the overlay layers: each fills a screen-sized RGBA buffer (one Uint32
// per pixel, ABGR on little-endian machines) by sampling full-size masks, nearest neighbour.

const OUTLINE = 0xffffffff; // white, opaque
export const DIFF_COLOURS = { extra: [240, 70, 70], missed: [60, 150, 255] };
const FALSE_POS = rgba(...DIFF_COLOURS.extra, 255);
const FALSE_NEG = rgba(...DIFF_COLOURS.missed, 255);

export function rgba(r, g, b, a) {
  return ((a << 24) | (b << 16) | (g << 8) | r) >>> 0;
}

export function fillLut(px, { cols, rows }, width, mask, lut) {
  const w = cols.length;
  for (let j = 0; j < rows.length; j += 1) {
    const row = rows[j] * width;
    const o = j * w;
    for (let i = 0; i < w; i += 1) px[o + i] = lut[mask[row + cols[i]]];
  }
}

/** White outline where the truth class changes between neighbouring screen pixels. */
export function outline(px, { cols, rows }, width, mask) {
  const w = cols.length;
  let prev = null;
  for (let j = 0; j < rows.length; j += 1) {
    const row = rows[j] * width;
    const vals = new Uint8Array(w);
    for (let i = 0; i < w; i += 1) vals[i] = mask[row + cols[i]];
    for (let i = 0; i < w; i += 1) {
      const v = vals[i];
      if ((i + 1 < w && vals[i + 1] !== v) || (prev && prev[i] !== v)) px[j * w + i] = OUTLINE;
    }
    prev = vals;
  }
}

/** Where prediction and truth disagree (annotated pixels only): binary models tell extra
 * (predicted, not in the truth) from missed (in the truth, not predicted). */
export function fillDiff(px, { cols, rows }, width, pred, truth, binary) {
  const w = cols.length;
  for (let j = 0; j < rows.length; j += 1) {
    const row = rows[j] * width;
    for (let i = 0; i < w; i += 1) {
      const k = row + cols[i];
      const t = truth[k];
      const p = pred[k];
      let c = 0;
      if (t !== 255 && t !== p) c = binary && t > 0 ? FALSE_NEG : FALSE_POS;
      px[j * w + i] = c;
    }
  }
}

/** Uncertainty 0..255 -> a warm ramp whose opacity grows with the uncertainty. */
export function heatLut() {
  const lut = new Uint32Array(256);
  for (let v = 0; v < 256; v += 1) {
    const t = v / 255;
    const r = Math.round(255 * Math.min(1, 0.3 + 1.4 * t));
    const g = Math.round(255 * Math.max(0, Math.min(1, 1.6 * t - 0.4)));
    const b = Math.round(255 * Math.max(0, 0.6 - t) * 0.6);
    lut[v] = rgba(r, g, b, Math.round(230 * Math.min(1, t * 1.3)));
  }
  return lut;
}
