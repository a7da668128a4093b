// An 8-bit grayscale PNG encoder: masks are class indices, and canvas.toBlob would give RGBA
// (and may colour-manage it), so the bytes are written here. CompressionStream gives real
// deflate where the browser has it; otherwise zlib "stored" blocks keep the file valid.

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n += 1) {
    let c = n;
    for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(bytes, crc = 0xffffffff) {
  for (let i = 0; i < bytes.length; i += 1) crc = CRC_TABLE[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8);
  return crc;
}

function adler32(bytes) {
  let a = 1;
  let b = 0;
  for (let i = 0; i < bytes.length; i += 1) {
    a = (a + bytes[i]) % 65521;
    b = (b + a) % 65521;
  }
  return ((b << 16) | a) >>> 0;
}

/** zlib stream of uncompressed ("stored") deflate blocks, at most 65535 bytes each. */
function zlibStored(raw) {
  const blocks = Math.max(1, Math.ceil(raw.length / 65535));
  const out = new Uint8Array(2 + raw.length + blocks * 5 + 4);
  const view = new DataView(out.buffer);
  out[0] = 0x78;
  out[1] = 0x01;
  let p = 2;
  for (let i = 0; i < blocks; i += 1) {
    const chunk = raw.subarray(i * 65535, Math.min(raw.length, (i + 1) * 65535));
    out[p] = i === blocks - 1 ? 1 : 0;
    view.setUint16(p + 1, chunk.length, true);
    view.setUint16(p + 3, ~chunk.length & 0xffff, true);
    out.set(chunk, p + 5);
    p += 5 + chunk.length;
  }
  view.setUint32(p, adler32(raw));
  return out;
}

async function zlib(raw) {
  if (typeof CompressionStream === "undefined") return zlibStored(raw);
  const stream = new Blob([raw]).stream().pipeThrough(new CompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function chunk(type, data) {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i += 1) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  view.setUint32(8 + data.length, (crc32(out.subarray(4, 8 + data.length)) ^ 0xffffffff) >>> 0);
  return out;
}

/** PNG bytes (as a Blob) of a width x height array of 8-bit values, one channel. */
export async function encodeGrayPNG(values, width, height, { stored = false } = {}) {
  const raw = new Uint8Array((width + 1) * height);
  for (let y = 0; y < height; y += 1) {
    raw[y * (width + 1)] = 0; // filter type None
    raw.set(values.subarray(y * width, (y + 1) * width), y * (width + 1) + 1);
  }
  const header = new Uint8Array(13);
  const hv = new DataView(header.buffer);
  hv.setUint32(0, width);
  hv.setUint32(4, height);
  header.set([8, 0, 0, 0, 0], 8); // bit depth 8, grayscale, deflate, no filter set, no interlace
  const idat = stored ? zlibStored(raw) : await zlib(raw);
  const signature = new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]);
  return new Blob([signature, chunk("IHDR", header), chunk("IDAT", idat),
    chunk("IEND", new Uint8Array(0))], { type: "image/png" });
}
