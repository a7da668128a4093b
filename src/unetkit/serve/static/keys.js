// Keyboard shortcuts: B brush, E eraser, F fill, H pan, [ ] size, 0-9 class, Ctrl+Z undo,
// Ctrl+Shift+Z (or Ctrl+Y) redo, Ctrl+S save, space held: pan with the left button.

const TYPING = "input[type=text], input[type=search], input[type=number], select, textarea";
const TOOLS = { b: "brush", e: "eraser", f: "fill", h: "pan" };

/** actions: undo(), redo(), save(), tool(name), grow(sign), pickClass(i), space(held). */
export function bindKeys(actions) {
  document.addEventListener("keydown", (e) => {
    if (e.target.closest(TYPING)) return; // keys there are text; sliders keep the shortcuts
    const key = e.key.toLowerCase();
    const ctrl = e.ctrlKey || e.metaKey;
    if (ctrl && key === "z") (e.shiftKey ? actions.redo : actions.undo)();
    else if (ctrl && key === "y") actions.redo();
    else if (ctrl && key === "s") actions.save();
    else if (ctrl || e.altKey) return;
    else if (e.code === "Space") actions.space(true);
    else if (TOOLS[key]) actions.tool(TOOLS[key]);
    else if (key === "[" || key === "]") actions.grow(key === "]" ? 1 : -1);
    else if (/^[0-9]$/.test(key)) actions.pickClass(Number(key));
    else return;
    e.preventDefault();
  });
  document.addEventListener("keyup", (e) => {
    if (e.code !== "Space") return;
    actions.space(false);
    if (!e.target.closest(TYPING)) e.preventDefault(); // no click on a focused button
  });
}
