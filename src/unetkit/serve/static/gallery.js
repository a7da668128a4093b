// The left sidebar: a paged, filtered, searchable gallery of the data set's thumbnails, and
// the "suggested next" list. Pages keep thousands of images cheap: only 60 thumbnails load.

import { getJSON, imagePath, url } from "./api.js";

export const PAGE_SIZE = 60;

export class Gallery {
  constructor(onOpen) {
    this.onOpen = onOpen;
    this.offset = 0;
    this.total = 0;
    this.current = null;
    this.grid = document.getElementById("gallery");
    this.search = document.getElementById("search");
    this.filter = document.getElementById("filter");
    let timer = 0;
    this.search.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => this.load(0), 250);
    });
    this.filter.addEventListener("change", () => this.load(0));
    document.getElementById("prev-page").addEventListener("click",
      () => this.load(Math.max(0, this.offset - PAGE_SIZE)));
    document.getElementById("next-page").addEventListener("click",
      () => this.load(this.offset + PAGE_SIZE));
  }

  async load(offset = this.offset) {
    const seq = (this.seq = (this.seq || 0) + 1);
    const page = await getJSON("api/images", { offset, limit: PAGE_SIZE,
      filter: this.filter.value, q: this.search.value.trim() });
    if (seq !== this.seq) return; // a newer search won
    this.offset = page.offset ?? offset;
    this.total = page.total;
    this.grid.replaceChildren(...page.items.map((item) => this.tile(item)));
    if (!page.items.length) {
      const empty = document.createElement("p");
      empty.className = "hint";
      empty.textContent = "No images match.";
      this.grid.append(empty);
    }
    const last = Math.min(this.total, this.offset + page.items.length);
    document.getElementById("page-info").textContent = this.total
      ? `${this.offset + 1}–${last} of ${this.total}` : "0 images";
    document.getElementById("prev-page").disabled = this.offset <= 0;
    document.getElementById("next-page").disabled = last >= this.total;
    this.grid.dataset.loaded = String(seq);
  }

  tile(item) {
    const tile = document.createElement("button");
    tile.className = "tile";
    tile.dataset.name = item.name;
    tile.title = `${item.name} (${item.width}×${item.height})`;
    tile.classList.toggle("labelled", item.has_mask);
    tile.classList.toggle("selected", item.name === this.current);
    const img = document.createElement("img");
    img.loading = "lazy";
    img.alt = item.name;
    img.src = url(imagePath(item.name, "thumb"));
    const label = document.createElement("span");
    label.className = "tile-name";
    label.textContent = item.name;
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = item.has_mask ? "labelled" : "unlabelled";
    tile.append(img, badge, label);
    tile.addEventListener("click", () => this.onOpen(item));
    return tile;
  }

  select(name) {
    this.current = name;
    for (const t of this.grid.querySelectorAll(".tile")) {
      t.classList.toggle("selected", t.dataset.name === name);
    }
  }

  /** Show an image's new labelled state without reloading the page of thumbnails. */
  markLabelled(name) {
    for (const t of this.grid.querySelectorAll(".tile")) {
      if (t.dataset.name !== name) continue;
      t.classList.add("labelled");
      t.querySelector(".badge").textContent = "labelled";
    }
  }

  /** The listing entry of one image (size, labelled), found by name. */
  async find(name) {
    const page = await getJSON("api/images", { q: name, limit: PAGE_SIZE, filter: "all" });
    return page.items.find((it) => it.name === name) || null;
  }
}

export class Suggestions {
  constructor(onOpen) {
    this.onOpen = onOpen;
    this.list = document.getElementById("suggestions");
    document.getElementById("refresh-suggest").addEventListener("click", () => this.load(true));
  }

  async load(hasModel) {
    if (!hasModel) {
      this.message("Suggestions need a model: train the first one.");
      return;
    }
    this.message("Ranking…");
    try {
      const { items } = await getJSON("api/suggest", { top: 10 });
      this.list.replaceChildren(...items.map((it) => this.entry(it)));
      if (!items.length) this.message("Every image is labelled.");
    } catch (err) {
      this.message(err.message);
    }
    this.list.dataset.loaded = "1";
  }

  entry(item) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.className = "suggestion";
    button.dataset.name = item.name;
    const name = document.createElement("span");
    name.className = "s-name";
    name.textContent = item.name;
    const score = document.createElement("span");
    score.className = "s-score";
    score.textContent = Number(item.score).toFixed(3);
    const reason = document.createElement("span");
    reason.className = "s-reason muted small";
    reason.textContent = item.reason || "";
    button.append(name, score, reason);
    button.addEventListener("click", () => this.onOpen(item.name));
    li.append(button);
    return li;
  }

  message(text) {
    const p = document.createElement("li");
    p.className = "hint";
    p.textContent = text;
    this.list.replaceChildren(p);
  }
}
