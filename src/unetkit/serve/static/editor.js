// Editing a full-size class-index mask: round brush strokes, flood fill, undo/redo.
// Each edit records only the pixels it changed (index + old value), so undo history costs
// memory in proportion to what was painted, not to the image size.

export class MaskEditor {
  constructor(width, height, initial) {
    this.width = width;
    this.height = height;
    this.mask = initial ? Uint8Array.from(initial) : new Uint8Array(width * height).fill(255);
    this.history = [];
    this.position = 0; // edits [0, position) are applied
    this.savedAt = 0;
    this.stroke = null;
  }

  get dirty() {
    return this.position !== this.savedAt;
  }

  get canUndo() {
    return this.position > 0 && !this.stroke;
  }

  get canRedo() {
    return this.position < this.history.length && !this.stroke;
  }

  markSaved(position = this.position) {
    this.savedAt = position;
  }

  /** Start a brush stroke of class `value` with `radius` (image pixels) at (x, y). */
  beginStroke(x, y, value, radius) {
    this.stroke = { value, radius, idx: [], old: [], last: null };
    this.strokeTo(x, y);
  }

  strokeTo(x, y) {
    const s = this.stroke;
    if (!s) return;
    if (!s.last) {
      this.dab(x, y);
    } else {
      // dabs along the segment, close enough that the band has no gaps
      const dx = x - s.last.x;
      const dy = y - s.last.y;
      const n = Math.max(1, Math.ceil(Math.hypot(dx, dy) / Math.max(0.25, s.radius / 3)));
      for (let k = 1; k <= n; k += 1) this.dab(s.last.x + (dx * k) / n, s.last.y + (dy * k) / n);
    }
    s.last = { x, y };
  }

  /** Set every pixel whose centre lies within the radius of (x, y). */
  dab(x, y) {
    const { value, radius: r, idx, old } = this.stroke;
    const m = this.mask;
    const y0 = Math.max(0, Math.floor(y - r));
    const y1 = Math.min(this.height - 1, Math.ceil(y + r));
    for (let py = y0; py <= y1; py += 1) {
      const dy = py + 0.5 - y;
      const half = r * r - dy * dy;
      if (half < 0) continue;
      const h = Math.sqrt(half);
      const x0 = Math.max(0, Math.ceil(x - h - 0.5));
      const x1 = Math.min(this.width - 1, Math.floor(x + h - 0.5));
      for (let px = x0, i = py * this.width + x0; px <= x1; px += 1, i += 1) {
        if (m[i] !== value) {
          idx.push(i);
          old.push(m[i]);
          m[i] = value;
        }
      }
    }
  }

  endStroke() {
    const s = this.stroke;
    this.stroke = null;
    if (s && s.idx.length) this.record(s.value, s.idx, s.old);
  }

  /** Flood-fill the 4-connected region of the clicked pixel's class with `value`. */
  fill(x, y, value) {
    const px = Math.floor(x);
    const py = Math.floor(y);
    if (px < 0 || py < 0 || px >= this.width || py >= this.height) return 0;
    const { width: w, height: h, mask: m } = this;
    const target = m[py * w + px];
    if (target === value) return 0;
    const idx = [];
    const stack = [py * w + px];
    while (stack.length) {
      const start = stack.pop();
      if (m[start] !== target) continue;
      const row = start - (start % w);
      let l = start;
      while (l > row && m[l - 1] === target) l -= 1;
      let r = start;
      while (r < row + w - 1 && m[r + 1] === target) r += 1;
      for (let i = l; i <= r; i += 1) {
        m[i] = value;
        idx.push(i);
        if (i >= w && m[i - w] === target) stack.push(i - w);
        if (i < w * (h - 1) && m[i + w] === target) stack.push(i + w);
      }
    }
    this.record(value, idx, new Array(idx.length).fill(target));
    return idx.length;
  }

  record(value, idx, old) {
    this.history.length = this.position;
    if (this.savedAt > this.position) this.savedAt = -1; // the saved state is gone for good
    this.history.push({ value, idx: Int32Array.from(idx), old: Uint8Array.from(old) });
    this.position += 1;
  }

  undo() {
    if (!this.canUndo) return false;
    this.position -= 1;
    const { idx, old } = this.history[this.position];
    for (let k = idx.length - 1; k >= 0; k -= 1) this.mask[idx[k]] = old[k];
    return true;
  }

  redo() {
    if (!this.canRedo) return false;
    const { idx, value } = this.history[this.position];
    for (let k = 0; k < idx.length; k += 1) this.mask[idx[k]] = value;
    this.position += 1;
    return true;
  }
}
