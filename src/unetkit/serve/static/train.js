// "Train on my corrections": start a training job, follow it each second (epoch, loss, Dice,
// ETA, a progress bar), cancel it, and when it is done hand over so the page re-predicts and
// shows the metrics before and after.

import { getJSON, sendJSON } from "./api.js";
import { duration, fmt, table } from "./ui.js";

const SUMMARY_KEYS = ["dice", "iou", "mean_dice", "mean_iou", "pixel_accuracy"];

export class Trainer {
  /** hooks: starting() (before the job starts), finished(status) (a job ended well),
   * error(message). */
  constructor(hooks) {
    this.hooks = hooks;
    this.timer = 0;
    this.state = "idle";
    this.el = {
      start: document.getElementById("train"),
      cancel: document.getElementById("train-cancel"),
      box: document.getElementById("train-status"),
      bar: document.getElementById("train-bar"),
      text: document.getElementById("train-text"),
      result: document.getElementById("train-result"),
      epochs: document.getElementById("train-epochs"),
      time: document.getElementById("train-time"),
    };
    this.el.start.addEventListener("click", () => this.start());
    this.el.cancel.addEventListener("click", () => this.cancel());
  }

  setHasModel(hasModel) {
    this.el.start.textContent = hasModel ? "Train on my corrections" : "Train the first model";
  }

  /** Show the status the page loaded with; keep following a job that already runs. */
  show(status) {
    this.render(status);
    if (status.state === "running") this.follow();
  }

  async start() {
    const epochs = parseInt(this.el.epochs.value, 10);
    const maxTime = this.el.time.value.trim();
    try {
      await this.hooks.starting();
      await sendJSON("api/train", { epochs: Number.isFinite(epochs) ? epochs : null,
        max_time: maxTime || null });
    } catch (err) {
      this.hooks.error(err.message);
      return;
    }
    this.el.result.hidden = true;
    this.render({ state: "running", epoch: 0, message: "Starting…" });
    this.follow();
  }

  async cancel() {
    try {
      this.render(await sendJSON("api/train/cancel"));
    } catch (err) {
      this.hooks.error(err.message);
    }
  }

  follow() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.poll(), 1000);
  }

  async poll() {
    let status;
    try {
      status = await getJSON("api/train");
    } catch (err) {
      this.hooks.error(err.message);
      this.follow(); // the server may be busy; keep asking
      return;
    }
    const was = this.state;
    this.render(status);
    if (status.state === "running") {
      this.follow();
    } else if (was === "running" && status.state === "done") {
      await this.hooks.finished(status);
    }
  }

  render(status) {
    const { state = "idle", epoch = 0, epochs = null } = status;
    this.state = state;
    this.el.box.dataset.state = state;
    const running = state === "running";
    this.el.start.disabled = running;
    this.el.cancel.hidden = !running;
    const fraction = epochs ? Math.min(1, epoch / epochs) : state === "done" ? 1 : null;
    this.el.bar.style.width = fraction === null ? "100%" : `${Math.round(fraction * 100)}%`;
    this.el.bar.classList.toggle("indeterminate", running && fraction === null);
    const parts = [state[0].toUpperCase() + state.slice(1)];
    if (running || state === "done") {
      parts.push(`epoch ${epoch}${epochs ? `/${epochs}` : ""}`);
      if (status.loss !== null && status.loss !== undefined) parts.push(`loss ${fmt(status.loss)}`);
      if (status.dice !== null && status.dice !== undefined) parts.push(`Dice ${fmt(status.dice)}`);
    }
    if (running && status.eta_s !== null && status.eta_s !== undefined) {
      parts.push(`ETA ${duration(status.eta_s)}`);
    }
    this.el.text.textContent = parts.join(" · ") + (status.message ? ` — ${status.message}` : "");
  }

  /** The before/after table: the run's validation metrics and this image's own. */
  showResult(status, image) {
    const rows = [];
    for (const key of SUMMARY_KEYS) {
      const b = status.before?.[key];
      const a = status.after?.[key];
      if (b === undefined && a === undefined) continue;
      rows.push([key.replace("_", " "), b, a]);
    }
    if (image) rows.push([`${image.name}: Dice`, image.before?.dice, image.after?.dice]);
    const marked = rows.map(([label, b, a]) => [label, b, a,
      { cls: Number(a) > Number(b) ? "better" : Number(a) < Number(b) ? "worse" : "" }]);
    const el = table(["before", "after"], marked);
    el.className = "before-after";
    this.el.result.replaceChildren(el);
    this.el.result.hidden = rows.length === 0;
    this.el.result.scrollIntoView({ block: "nearest" });
  }
}
