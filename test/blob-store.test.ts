import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { ListObjectsV2Command, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import S3rver from "s3rver";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { BlobStore } from "../src/ports.ts";
import { FsBlobStore, S3BlobStore, sha256Hex } from "../src/store/blob-store.ts";
import { startFakeOpenAI } from "./fakes/openai-server.ts";
import { startBot } from "./support/bot-process.ts";
import { createTestDataDir } from "./support/database.ts";

/**
 * The BlobStore contract, run against both stores: files under a directory, and objects in a bucket of a real
 * S3-compatible server started here (s3rver on 127.0.0.1, spoken to by the real AWS SDK — not a mock of it).
 */

const BUCKET = "threadcanvas-test";
let root = "";
let s3Dir = "";
let server: S3rver;
let client: S3Client;
let endpoint = "";

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), "tc-blobs-"));
  s3Dir = await mkdtemp(path.join(os.tmpdir(), "tc-s3-"));
  server = new S3rver({
    address: "127.0.0.1",
    port: 0,
    silent: true,
    directory: s3Dir,
    configureBuckets: [{ name: BUCKET }],
  });
  const { port } = await server.run();
  endpoint = `http://127.0.0.1:${port}`;
  client = new S3Client({
    endpoint,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" },
  });
});
afterAll(async () => {
  client?.destroy();
  await server?.close();
  await rm(root, { recursive: true, force: true });
  await rm(s3Dir, { recursive: true, force: true });
});

const stores: Array<[string, () => BlobStore & { stored(): Promise<string[]> }]> = [
  [
    "FsBlobStore",
    () =>
      Object.assign(new FsBlobStore(root), {
        async stored() {
          const entries = await readdir(root, { recursive: true, withFileTypes: true });
          return entries.filter((entry) => entry.isFile()).map((entry) => entry.name);
        },
      }),
  ],
  [
    "S3BlobStore",
    () =>
      Object.assign(new S3BlobStore({ client, bucket: BUCKET }), {
        async stored() {
          const listed = await client.send(new ListObjectsV2Command({ Bucket: BUCKET }));
          return (listed.Contents ?? []).map((object) => path.basename(object.Key ?? ""));
        },
      }),
  ],
];

describe.each(stores)("%s", (_name, make) => {
  test("stores bytes once by their SHA-256, and gives them back exactly", async () => {
    const blobs = make();
    const bytes = randomBytes(256 * 1024);
    const sha = await blobs.put(bytes);
    expect(sha).toBe(sha256Hex(bytes));
    expect(await blobs.put(Uint8Array.from(bytes))).toBe(sha);
    expect((await blobs.stored()).filter((name) => name === sha)).toEqual([sha]);
    expect(Buffer.compare(await blobs.get(sha), bytes)).toBe(0);
    expect(await blobs.has(sha)).toBe(true);
  });

  test("knows what it does not hold, and refuses names that are not hashes", async () => {
    const blobs = make();
    const missing = sha256Hex(randomBytes(8));
    expect(await blobs.has(missing)).toBe(false);
    await expect(blobs.get(missing)).rejects.toThrow();
    await expect(blobs.get("../etc/passwd")).rejects.toThrow(/not a sha256/);
  });
});

test("S3BlobStore never returns bytes that do not match their name", async () => {
  const blobs = new S3BlobStore({ client, bucket: BUCKET });
  const sha = await blobs.put(randomBytes(1024));
  // Something else overwrote the object (a bug, a bad sync): reading it fails instead of serving wrong bytes.
  await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: blobs.keyOf(sha), Body: randomBytes(1024) }));
  await expect(blobs.get(sha)).rejects.toThrow(/does not match its hash/);
});

test("npm start with BLOB_STORE=s3 keeps every image in the bucket, none on disk", {
  timeout: 60_000,
}, async () => {
  const fake = await startFakeOpenAI();
  const data = await createTestDataDir();
  try {
    const bot = startBot({
      OPENAI_API_KEY: fake.apiKey,
      OPENAI_BASE_URL: fake.baseUrl,
      DATA_DIR: data.dataDir,
      USER: "s3",
      BLOB_STORE: "s3",
      S3_BUCKET: BUCKET,
      S3_ENDPOINT: endpoint,
      S3_REGION: "us-east-1",
      S3_FORCE_PATH_STYLE: "true",
      // The AWS SDK's own credential variables.
      AWS_ACCESS_KEY_ID: "S3RVER",
      AWS_SECRET_ACCESS_KEY: "S3RVER",
    });
    bot.send("/imagine a lighthouse --quality low");
    bot.send("make the sea green");
    bot.endInput();
    const { code } = await bot.exited;
    expect(bot.stderr()).toBe("");
    expect(code).toBe(0);
    expect(bot.stdout().match(/✔/g)).toHaveLength(2);
    // The edit was sent the first image's bytes, read back from the bucket.
    const first = fake.requests[1]?.images[0] ?? Buffer.alloc(0);
    const blobs = new S3BlobStore({ client, bucket: BUCKET });
    expect(await blobs.has(sha256Hex(first))).toBe(true);
    expect(await readdir(data.dataDir)).not.toContain("blobs");
  } finally {
    await fake.close();
    await data.cleanup();
  }
});
