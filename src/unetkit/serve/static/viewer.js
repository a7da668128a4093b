// The canvas stack: image, mask overlay, uncertainty and cursor layers over one view
// transform (zoom with the wheel, pan with the middle button, space+drag or the pan tool).
// Masks stay full-size class-index arrays; each overlay frame samples them at screen
// resolution, so zoom, pan and painting cost the same on a 512 px or a 20,000 px image.

import { fillDiff, fillLut, heatLut, outline } from "./layers.js";

const MAX_CROP_PIXELS = 16e6; // larger visible regions keep showing the preview
const LAYERS = ["image", "overlay", "uncertainty", "cursor"];

export class Viewer {
  /** hooks: strokeStart(x, y), strokeMove(x, y), strokeEnd(), fill(x, y), crop(rect) ->
   * Promise<ImageBitmap>, changed() (view moved). */
  constructor(stage, hooks) {
    this.stage = stage;
    this.hooks = hooks;
    this.layers = {};
    for (const name of LAYERS) {
      const canvas = document.createElement("canvas");
      canvas.className = `layer layer-${name}`;
      stage.appendChild(canvas);
      this.layers[name] = canvas;
    }
    this.view = { scale: 1, ox: 0, oy: 0 };
    this.tool = "brush";
    this.radius = 4;
    this.mode = "prediction";
    this.showUncertainty = false;
    this.binary = true;
    this.luts = { prediction: new Uint32Array(256), truth: new Uint32Array(256) };
    this.heat = heatLut();
    this.masks = { prediction: null, truth: null, uncertainty: null };
    this.image = null;
    this.pointer = null;
    this.drag = null;
    this.spaceDown = false;
    this.dirty = new Set();
    this.frame = 0;
    new ResizeObserver(() => this.resize()).observe(stage);
    this.bindPointer();
  }

  setImage(width, height, preview) {
    this.image?.preview?.close?.();
    this.image?.crop?.bitmap.close();
    this.image = { width, height, preview, crop: null };
    this.resize();
    this.fit();
  }

  setMasks(masks) {
    Object.assign(this.masks, masks);
    this.render("overlay", "uncertainty");
  }

  setLuts(luts, binary) {
    this.luts = luts;
    this.binary = binary;
    this.render("overlay");
  }

  setMode(mode) {
    this.mode = mode;
    this.render("overlay");
  }

  setUncertainty(visible) {
    this.showUncertainty = visible;
    this.render("uncertainty");
  }

  setTool(tool) {
    this.tool = tool;
    this.updateCursorStyle();
    this.render("cursor");
  }

  setRadius(radius) {
    this.radius = radius;
    this.render("cursor");
  }

  /** Client (page) coordinates of an image point: for tests and the cursor. */
  toClient(x, y) {
    const r = this.layers.cursor.getBoundingClientRect();
    return { x: r.left + this.view.ox + x * this.view.scale,
      y: r.top + this.view.oy + y * this.view.scale };
  }

  toImage(event) {
    const r = this.layers.cursor.getBoundingClientRect();
    return { x: (event.clientX - r.left - this.view.ox) / this.view.scale,
      y: (event.clientY - r.top - this.view.oy) / this.view.scale };
  }

  fit() {
    if (!this.image) return;
    const { clientWidth: cw, clientHeight: ch } = this.stage;
    const scale = 0.96 * Math.min(cw / this.image.width, ch / this.image.height);
    this.view = { scale, ox: (cw - this.image.width * scale) / 2,
      oy: (ch - this.image.height * scale) / 2 };
    this.viewChanged();
  }

  zoomAt(factor, cx, cy) {
    if (!this.image) return;
    const fitScale = Math.min(this.stage.clientWidth / this.image.width,
      this.stage.clientHeight / this.image.height);
    const scale = Math.min(64, Math.max(fitScale / 4, this.view.scale * factor));
    const k = scale / this.view.scale;
    this.view = { scale, ox: cx - (cx - this.view.ox) * k, oy: cy - (cy - this.view.oy) * k };
    this.viewChanged();
  }

  viewChanged() {
    this.render("image", "overlay", "uncertainty", "cursor");
    this.maybeFetchCrop();
    this.hooks.changed?.();
  }

  resize() {
    const dpr = window.devicePixelRatio || 1;
    this.dpr = dpr;
    for (const canvas of Object.values(this.layers)) {
      canvas.width = Math.max(1, Math.round(this.stage.clientWidth * dpr));
      canvas.height = Math.max(1, Math.round(this.stage.clientHeight * dpr));
    }
    this.render(...LAYERS);
  }

  render(...layers) {
    for (const l of layers) this.dirty.add(l);
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      const todo = new Set(this.dirty);
      this.dirty.clear();
      if (todo.has("image")) this.drawImage();
      if (todo.has("overlay")) this.drawOverlay();
      if (todo.has("uncertainty")) this.drawUncertainty();
      if (todo.has("cursor")) this.drawCursor();
      this.stage.dataset.frames = String(Number(this.stage.dataset.frames || 0) + 1);
    });
  }

  drawImage() {
    const ctx = this.layers.image.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.layers.image.width, this.layers.image.height);
    const img = this.image;
    if (!img) return;
    const { scale, ox, oy } = this.view;
    const d = this.dpr;
    const k = (scale * img.width) / img.preview.width; // screen px per preview px
    ctx.setTransform(d * k, 0, 0, d * k, d * ox, d * oy);
    ctx.imageSmoothingEnabled = k < 1;
    ctx.drawImage(img.preview, 0, 0);
    if (img.crop && k > 1) {
      ctx.setTransform(d * scale, 0, 0, d * scale, d * ox, d * oy);
      ctx.imageSmoothingEnabled = scale < 1;
      ctx.drawImage(img.crop.bitmap, img.crop.x, img.crop.y);
    }
  }

  /** The image's visible part in device pixels and, per device column / row, which image
   * column / row it shows (nearest neighbour). */
  sampling(canvas) {
    const img = this.image;
    const s = this.view.scale * this.dpr;
    const ox = this.view.ox * this.dpr;
    const oy = this.view.oy * this.dpr;
    const x0 = Math.max(0, Math.floor(ox));
    const y0 = Math.max(0, Math.floor(oy));
    const x1 = Math.min(canvas.width, Math.ceil(ox + img.width * s));
    const y1 = Math.min(canvas.height, Math.ceil(oy + img.height * s));
    if (x1 <= x0 || y1 <= y0) return null;
    const cols = new Int32Array(x1 - x0);
    for (let i = 0; i < cols.length; i += 1) {
      cols[i] = Math.min(img.width - 1, Math.max(0, Math.floor((x0 + i + 0.5 - ox) / s)));
    }
    const rows = new Int32Array(y1 - y0);
    for (let j = 0; j < rows.length; j += 1) {
      rows[j] = Math.min(img.height - 1, Math.max(0, Math.floor((y0 + j + 0.5 - oy) / s)));
    }
    return { x0, y0, cols, rows };
  }

  paint(canvas, fill) {
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (!this.image) return;
    const sm = this.sampling(canvas);
    if (!sm) return;
    const out = ctx.createImageData(sm.cols.length, sm.rows.length);
    fill(new Uint32Array(out.data.buffer), sm);
    ctx.putImageData(out, sm.x0, sm.y0);
  }

  drawOverlay() {
    const { prediction, truth } = this.masks;
    const mode = this.mode;
    const canvas = this.layers.overlay;
    if (mode === "prediction" && prediction) {
      this.paint(canvas, (px, sm) => fillLut(px, sm, this.image.width, prediction, this.luts.prediction));
    } else if (mode === "truth" && truth) {
      this.paint(canvas, (px, sm) => fillLut(px, sm, this.image.width, truth, this.luts.truth));
    } else if (mode === "both" && prediction && truth) {
      this.paint(canvas, (px, sm) => {
        fillLut(px, sm, this.image.width, prediction, this.luts.prediction);
        outline(px, sm, this.image.width, truth);
      });
    } else if (mode === "difference" && prediction && truth) {
      this.paint(canvas, (px, sm) => fillDiff(px, sm, this.image.width, prediction, truth,
        this.binary));
    } else {
      canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
    }
  }

  drawUncertainty() {
    const canvas = this.layers.uncertainty;
    const u = this.masks.uncertainty;
    if (this.showUncertainty && u) {
      this.paint(canvas, (px, sm) => fillLut(px, sm, this.image.width, u, this.heat));
    } else {
      canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
    }
  }

  drawCursor() {
    const canvas = this.layers.cursor;
    const ctx = canvas.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (!this.image || !this.pointer || !["brush", "eraser"].includes(this.tool)) return;
    const d = this.dpr;
    const r = Math.max(1, this.radius * this.view.scale);
    ctx.setTransform(d, 0, 0, d, 0, 0);
    ctx.beginPath();
    ctx.arc(this.pointer.x, this.pointer.y, r, 0, 2 * Math.PI);
    ctx.lineWidth = 2;
    ctx.strokeStyle = "rgba(0,0,0,0.6)";
    ctx.stroke();
    ctx.lineWidth = 1;
    ctx.strokeStyle = this.tool === "eraser" ? "#ffb3b3" : "#ffffff";
    ctx.stroke();
  }

  updateCursorStyle() {
    const panning = this.drag?.kind === "pan";
    const pan = this.tool === "pan" || this.spaceDown;
    this.layers.cursor.style.cursor = panning ? "grabbing" : pan ? "grab"
      : this.tool === "fill" ? "cell" : "none";
  }

  bindPointer() {
    const el = this.layers.cursor;
    el.addEventListener("pointerdown", (e) => this.pointerDown(e));
    el.addEventListener("pointermove", (e) => this.pointerMove(e));
    el.addEventListener("pointerup", (e) => this.pointerUp(e));
    el.addEventListener("pointercancel", (e) => this.pointerUp(e));
    el.addEventListener("pointerleave", () => {
      this.pointer = null;
      this.render("cursor");
    });
    el.addEventListener("auxclick", (e) => e.preventDefault());
    el.addEventListener("contextmenu", (e) => e.preventDefault());
    el.addEventListener("wheel", (e) => {
      e.preventDefault();
      const r = el.getBoundingClientRect();
      const step = e.deltaMode === 1 ? e.deltaY * 16 : e.deltaY;
      this.zoomAt(Math.exp(-step * 0.0015), e.clientX - r.left, e.clientY - r.top);
    }, { passive: false });
  }

  pointerDown(e) {
    if (!this.image || this.drag) return;
    e.preventDefault();
    this.layers.cursor.setPointerCapture(e.pointerId);
    const pan = e.button === 1 || (e.button === 0 && (this.spaceDown || this.tool === "pan"));
    if (pan) {
      this.drag = { kind: "pan", x: e.clientX, y: e.clientY };
    } else if (e.button === 0) {
      const p = this.toImage(e);
      if (this.tool === "fill") {
        this.hooks.fill(p.x, p.y);
      } else {
        this.drag = { kind: "paint" };
        this.hooks.strokeStart(p.x, p.y);
      }
    }
    this.updateCursorStyle();
  }

  pointerMove(e) {
    const r = this.layers.cursor.getBoundingClientRect();
    this.pointer = { x: e.clientX - r.left, y: e.clientY - r.top };
    if (this.drag?.kind === "pan") {
      this.view.ox += e.clientX - this.drag.x;
      this.view.oy += e.clientY - this.drag.y;
      this.drag.x = e.clientX;
      this.drag.y = e.clientY;
      this.viewChanged();
      return;
    }
    if (this.drag?.kind === "paint") {
      const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
      for (const ev of events.length ? events : [e]) {
        const p = this.toImage(ev);
        this.hooks.strokeMove(p.x, p.y);
      }
    }
    this.render("cursor");
  }

  pointerUp(e) {
    if (!this.drag) return;
    if (this.drag.kind === "paint") this.hooks.strokeEnd();
    this.drag = null;
    if (this.layers.cursor.hasPointerCapture(e.pointerId)) {
      this.layers.cursor.releasePointerCapture(e.pointerId);
    }
    this.updateCursorStyle();
  }

  visibleRect() {
    const img = this.image;
    const { scale, ox, oy } = this.view;
    const x0 = Math.max(0, Math.floor(-ox / scale));
    const y0 = Math.max(0, Math.floor(-oy / scale));
    const x1 = Math.min(img.width, Math.ceil((this.stage.clientWidth - ox) / scale));
    const y1 = Math.min(img.height, Math.ceil((this.stage.clientHeight - oy) / scale));
    return { x: x0, y: y0, w: Math.max(0, x1 - x0), h: Math.max(0, y1 - y0) };
  }

  /** Zoomed in beyond the preview's resolution: fetch the visible region at full size. */
  maybeFetchCrop() {
    const img = this.image;
    if (!img || img.preview.width >= img.width) return;
    if ((this.view.scale * img.width) / img.preview.width <= 1) return;
    const want = this.visibleRect();
    if (want.w * want.h === 0 || want.w * want.h > MAX_CROP_PIXELS) return;
    const c = img.crop;
    if (c && c.x <= want.x && c.y <= want.y && c.x + c.w >= want.x + want.w
        && c.y + c.h >= want.y + want.h) return;
    clearTimeout(this.cropTimer);
    this.cropTimer = setTimeout(() => this.fetchCrop(img, padded(want, img)), 150);
  }

  async fetchCrop(img, rect) {
    const seq = (this.cropSeq = (this.cropSeq || 0) + 1);
    let bitmap;
    try {
      bitmap = await this.hooks.crop(rect);
    } catch {
      return; // the preview stays; the next move tries again
    }
    if (seq !== this.cropSeq || img !== this.image) {
      bitmap.close();
      return;
    }
    img.crop?.bitmap.close();
    img.crop = { ...rect, bitmap };
    this.render("image");
  }
}

function padded(r, img) {
  const mx = Math.round(r.w / 4);
  const my = Math.round(r.h / 4);
  const x = Math.max(0, r.x - mx);
  const y = Math.max(0, r.y - my);
  return { x, y, w: Math.min(img.width, r.x + r.w + mx) - x,
    h: Math.min(img.height, r.y + r.h + my) - y };
}
