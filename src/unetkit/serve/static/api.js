// Talking to the studio's HTTP API: every request carries the access token (when the page was
// opened with ?token=...), errors become one readable sentence, masks decode to class indices.

const params = new URLSearchParams(location.search);
export const token = params.get("token");
if (token) {
  // the server accepts the cookie too; it covers requests we cannot add a query to
  document.cookie = `unetkit_token=${encodeURIComponent(token)}; path=/; SameSite=Strict`;
}

/** Absolute URL for an API path (relative to the page, so a proxy prefix keeps working). */
export function url(path, query = {}) {
  const u = new URL(path, document.baseURI);
  for (const [k, v] of Object.entries(query)) {
    if (v !== null && v !== undefined && v !== "") u.searchParams.set(k, v);
  }
  if (token) u.searchParams.set("token", token);
  return u.toString();
}

/** The API path of one image's resource (names are relative paths: each part is encoded). */
export function imagePath(name, what) {
  return `api/images/${name.split("/").map(encodeURIComponent).join("/")}/${what}`;
}

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

async function check(res) {
  if (res.ok) return res;
  let detail = `${res.status} ${res.statusText}`;
  try {
    const body = await res.json();
    if (body && body.detail) detail = typeof body.detail === "string" ? body.detail
      : JSON.stringify(body.detail);
  } catch { /* not JSON: keep the status line */ }
  throw new ApiError(res.status, detail);
}

export async function request(path, { method = "GET", query = {}, body, type } = {}) {
  const init = { method, cache: "no-store", credentials: "same-origin", headers: {} };
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) {
    if (type) {
      init.body = body;
      init.headers["Content-Type"] = type;
    } else {
      init.body = JSON.stringify(body);
      init.headers["Content-Type"] = "application/json";
    }
  }
  return check(await fetch(url(path, query), init));
}

export async function getJSON(path, query = {}) {
  return (await request(path, { query })).json();
}

export async function sendJSON(path, body = {}, method = "POST") {
  return (await request(path, { method, body })).json();
}

/** An image resource as an ImageBitmap, pixel values untouched (no colour management). */
export async function getBitmap(path, query = {}) {
  const blob = await (await request(path, { query })).blob();
  return createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
}

/** An 8-bit single-channel PNG (mask, uncertainty) as {width, height, data: Uint8Array}. */
export async function getMask(path, query = {}) {
  const bitmap = await getBitmap(path, query);
  const { width, height } = bitmap;
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  const rgba = ctx.getImageData(0, 0, width, height).data;
  const data = new Uint8Array(width * height);
  for (let i = 0, j = 0; i < data.length; i += 1, j += 4) data[i] = rgba[j];
  return { width, height, data };
}
