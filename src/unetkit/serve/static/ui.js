// Small DOM helpers the panels share: number formatting and label + numbers tables.

export function fmt(x, digits = 3) {
  return x === null || x === undefined || Number.isNaN(Number(x)) ? "—"
    : Number(x).toFixed(digits);
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.max(0, Math.round(seconds));
  const m = Math.floor(s / 60);
  return m ? `${m}m ${String(s % 60).padStart(2, "0")}s` : `${s}s`;
}

/** A table: a header row (first cell empty), then [label, number, number...] rows. Each
 * row may carry a class name as its last element ({cls: "better"}). */
export function table(headers, rows) {
  const el = document.createElement("table");
  const head = document.createElement("tr");
  for (const h of ["", ...headers]) {
    const th = document.createElement("th");
    th.textContent = h;
    head.append(th);
  }
  el.createTHead().append(head);
  const body = el.createTBody();
  for (const row of rows) {
    const tr = body.insertRow();
    const cells = row.filter((c) => typeof c !== "object" || c === null);
    const extra = row.find((c) => typeof c === "object" && c !== null);
    if (extra?.cls) tr.classList.add(extra.cls);
    cells.forEach((v, i) => {
      const cell = document.createElement(i ? "td" : "th");
      cell.textContent = i ? fmt(v) : v;
      tr.append(cell);
    });
  }
  return el;
}
