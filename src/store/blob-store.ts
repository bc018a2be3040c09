import { createHash, randomUUID } from "node:crypto";
import { mkdir, readFile, rename, stat, unlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import type { BlobStore } from "../ports.ts";

const SHA256_HEX = /^[0-9a-f]{64}$/;

export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/**
 * Content-addressed files: `<root>/ab/cd/<sha256>`. Written to a temporary name and renamed, so a crash never
 * leaves a half-written blob under its final name, and the same bytes are stored once.
 */
export class FsBlobStore implements BlobStore {
  readonly root: string;

  constructor(root: string) {
    this.root = root;
  }

  pathOf(sha256: string): string {
    if (!SHA256_HEX.test(sha256)) throw new Error(`not a sha256: ${JSON.stringify(sha256)}`);
    return path.join(this.root, sha256.slice(0, 2), sha256.slice(2, 4), sha256);
  }

  async put(bytes: Uint8Array): Promise<string> {
    const sha256 = sha256Hex(bytes);
    const target = this.pathOf(sha256);
    if (await this.has(sha256)) return sha256;
    await mkdir(path.dirname(target), { recursive: true });
    const temporary = `${target}.${randomUUID()}.tmp`;
    try {
      await writeFile(temporary, bytes);
      await rename(temporary, target);
    } catch (error) {
      await unlink(temporary).catch(() => {});
      throw error;
    }
    return sha256;
  }

  async get(sha256: string): Promise<Buffer> {
    return readFile(this.pathOf(sha256));
  }

  async has(sha256: string): Promise<boolean> {
    try {
      return (await stat(this.pathOf(sha256))).isFile();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return false;
      throw error;
    }
  }
}

/**
 * Content-addressed objects in an S3 bucket (`BLOB_STORE=s3`), so processes on several machines share images:
 * `<prefix><ab>/<sha256>`, the same addressing as the file store. Any S3-compatible server works (`S3_ENDPOINT`,
 * path-style addressing with `S3_FORCE_PATH_STYLE`); credentials come from the AWS SDK's own chain. An object is
 * written whole under its final key, so a crash never leaves a half-written blob, and the same bytes are
 * stored once (a HEAD first).
 */
export class S3BlobStore implements BlobStore {
  readonly #client: S3Client;
  readonly #bucket: string;
  readonly #prefix: string;

  constructor(options: { client: S3Client; bucket: string; prefix?: string }) {
    this.#client = options.client;
    this.#bucket = options.bucket;
    this.#prefix = options.prefix ?? "blobs/";
  }

  keyOf(sha256: string): string {
    if (!SHA256_HEX.test(sha256)) throw new Error(`not a sha256: ${JSON.stringify(sha256)}`);
    return `${this.#prefix}${sha256.slice(0, 2)}/${sha256}`;
  }

  async put(bytes: Uint8Array): Promise<string> {
    const sha256 = sha256Hex(bytes);
    if (await this.has(sha256)) return sha256;
    await this.#client.send(
      new PutObjectCommand({
        Bucket: this.#bucket,
        Key: this.keyOf(sha256),
        Body: bytes,
        ContentLength: bytes.byteLength,
        ContentType: "application/octet-stream",
      }),
    );
    return sha256;
  }

  async get(sha256: string): Promise<Buffer> {
    const object = await this.#client.send(
      new GetObjectCommand({ Bucket: this.#bucket, Key: this.keyOf(sha256) }),
    );
    if (!object.Body) throw new Error(`blob ${sha256} has no body`);
    // Read as the stream arrives, hashed chunk by chunk, and joined once: no second whole copy (the SDK's
    // `transformToByteArray` joins too, and a Buffer made from its result would copy again).
    const hash = createHash("sha256");
    const chunks: Buffer[] = [];
    for await (const chunk of object.Body as AsyncIterable<Uint8Array>) {
      hash.update(chunk);
      chunks.push(
        Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength),
      );
    }
    // What the bucket returned is checked against its name: a corrupt or truncated object is never used.
    if (hash.digest("hex") !== sha256) throw new Error(`blob ${sha256} does not match its hash`);
    return chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
  }

  async has(sha256: string): Promise<boolean> {
    try {
      await this.#client.send(new HeadObjectCommand({ Bucket: this.#bucket, Key: this.keyOf(sha256) }));
      return true;
    } catch (error) {
      if ((error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404)
        return false;
      throw error;
    }
  }
}
