import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { crc32 } from "node:zlib";
import sharp from "sharp";

/**
 * Pre-made PNGs for the benchmark: random colour blocks (2×2 pixels each, so PNG filters can squeeze out
 * only about half), with 7 random bits a channel, which makes a 2048×2048 image ~5.6 MB and a 2048×1152 ~3.1 MB — about what gpt-image-2 returns
 * at those sizes. They are made once with sharp from a seeded PRNG and cached under the OS temp directory.
 */
export interface Fixture {
  width: number;
  height: number;
  bytes: Buffer;
}

const CACHE_DIR = path.join(os.tmpdir(), "threadcanvas-bench-fixtures");
const VERSION = 2;

export async function loadFixture(width: number, height: number): Promise<Fixture> {
  const file = path.join(CACHE_DIR, `noise-v${VERSION}-${width}x${height}.png`);
  try {
    const bytes = await readFile(file);
    const meta = await sharp(bytes).metadata();
    if (meta.width === width && meta.height === height) return { width, height, bytes };
  } catch {
    // not cached yet (or unreadable): make it
  }
  const bytes = await makeNoisePng(width, height, width * 31 + height);
  await mkdir(CACHE_DIR, { recursive: true });
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, bytes);
  await rename(temporary, file);
  return { width, height, bytes };
}

/** Random RGB blocks of 2×2 pixels: 6 random bytes per 4 pixels, which PNG cannot compress away. */
export async function makeNoisePng(width: number, height: number, seed: number): Promise<Buffer> {
  const w = Math.ceil(width / 2);
  const h = Math.ceil(height / 2);
  const raw = Buffer.allocUnsafe(w * h * 3);
  let state = seed >>> 0 || 1;
  for (let i = 0; i < raw.length; i++) {
    // xorshift32: fast, deterministic, good enough to defeat deflate
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    raw[i] = state & 0xfe; // 7 random bits a channel: ~5.6 MB at 2048×2048
  }
  return sharp(raw, { raw: { width: w, height: h, channels: 3 } })
    .resize(width, height, { kernel: "nearest", fit: "fill" })
    .png({ compressionLevel: 6 })
    .toBuffer();
}

/**
 * The same image with a `tEXt` chunk after IHDR that carries `tag`: still a valid PNG with the same pixels, but
 * different bytes, so the content-addressed blob store really writes every result instead of finding it stored.
 */
export function withTextChunk(png: Buffer, tag: string): Buffer {
  const IHDR_END = 8 + 25; // signature + IHDR (length, type, 13 bytes of data, crc)
  const data = Buffer.from(`bench\0${tag}`, "latin1");
  const chunk = Buffer.alloc(12 + data.length);
  chunk.writeUInt32BE(data.length, 0);
  chunk.write("tEXt", 4, "latin1");
  data.copy(chunk, 8);
  chunk.writeUInt32BE(crc32(chunk.subarray(4, 8 + data.length)), 8 + data.length);
  return Buffer.concat([png.subarray(0, IHDR_END), chunk, png.subarray(IHDR_END)]);
}

/** Width and height from a PNG's IHDR, without decoding; null when the bytes are not a PNG. */
export function pngSize(bytes: Buffer): { width: number; height: number } | null {
  if (
    bytes.length < 24 ||
    bytes.readUInt32BE(0) !== 0x89504e47 ||
    bytes.toString("latin1", 12, 16) !== "IHDR"
  ) {
    return null;
  }
  return { width: bytes.readUInt32BE(16), height: bytes.readUInt32BE(20) };
}
