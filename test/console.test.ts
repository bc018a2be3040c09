import { readFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type FakeOpenAI, startFakeOpenAI } from "./fakes/openai-server.ts";
import { startBot } from "./support/bot-process.ts";
import { createTestDataDir, type TestDataDir } from "./support/database.ts";

/** `npm start` with no platform token: the console adapter, driven through stdin/stdout as a child process. */
let fake: FakeOpenAI;
let data: TestDataDir;
/** Version 1 of the thread the first test makes; the restart test continues that thread. */
let firstVersionFile = "";

beforeAll(async () => {
  fake = await startFakeOpenAI();
  data = await createTestDataDir();
});
afterAll(async () => {
  await fake?.close();
  await data?.cleanup();
});
afterEach(() => fake.reset());

const env = () => ({
  OPENAI_API_KEY: fake.apiKey,
  OPENAI_BASE_URL: fake.baseUrl,
  DATA_DIR: data.dataDir,
  USER: "tester",
});

/** The files each `✔` line reports, in order. */
const savedFiles = (stdout: string) =>
  [...stdout.matchAll(/✔ .*?: (\S+\.(?:png|jpg|webp)) \(/g)].map((m) => m[1] ?? "");

describe("console adapter", () => {
  it("runs a piped script: generate, edit, undo, history — and exits when the input ends", async () => {
    const bot = startBot(env());
    bot.send("/imagine a red fox in the snow --ar 3:2");
    bot.send("make it winter at night");
    bot.send("/undo");
    bot.send("/history");
    bot.send("/usage");
    bot.endInput();
    const { code } = await bot.exited;
    expect(bot.stderr()).toBe("");
    expect(code).toBe(0);

    const out = bot.stdout();
    const [v1, v2] = savedFiles(out);
    expect(v1).toMatch(/out[/\\]console-tester-[0-9a-f]+[/\\]v1-1\.png$/);
    expect(v2).toMatch(/v2-1\.png$/);
    firstVersionFile = v1 ?? "";
    const v1Bytes = await readFile(firstVersionFile);
    // The edit was sent exactly the bytes the console saved for version 1.
    expect(fake.requests).toHaveLength(2);
    expect(fake.requests[1]?.images[0]?.equals(v1Bytes)).toBe(true);
    expect(fake.requests[0]?.body.size).toBe("1536x1024");
    // A piped script runs line by line: each result is printed before the next command is read.
    expect(out).toMatch(/✔ turn 3 .*undone/);
    const history = out.slice(out.indexOf("Thread console:"));
    expect(history).toMatch(
      /└ \S+ {2}#1 generate “a red fox in the snow” \(3:2 · 1536x1024\) {2}1536x1024 {2}◀ head/,
    );
    expect(history).toMatch(
      /\n {2}└ \S+ {2}#2 edit “make it winter at night” \(3:2 · 1536x1024\) {2}1536x1024\n/,
    );
    expect(history).toMatch(/#3 undo succeeded/);
    // What each image was expected to cost is shown as it is queued; /usage adds up what was billed.
    expect(out).toMatch(/⏳ new thread console:tester:[0-9a-f]+: queued — .* \(about \$0\.\d\d\)\n/);
    const usage = out.slice(out.indexOf("What threadcanvas has spent:"));
    expect(usage).toMatch(/\n• You today: \$0\.\d\d \(no cap\); this month: \$0\.\d\d\n/);
    expect(usage).toMatch(
      /\n• This channel today: \$0\.\d\d \(no cap\)\n• This workspace this month: \$0\.\d\d/,
    );
  });

  it("continues the latest thread after a restart: a plain line edits its head", async () => {
    expect(firstVersionFile).not.toBe("");
    const bot = startBot(env());
    bot.send("add a snowman");
    bot.endInput();
    const { code } = await bot.exited;
    expect(code).toBe(0);
    const [saved] = savedFiles(bot.stdout());
    expect(path.dirname(saved ?? "")).toBe(path.dirname(firstVersionFile));
    expect(saved).toMatch(/v4-1\.png$/);
    // The head after the undo is version 1, so the edit starts from it.
    expect(fake.requests[0]?.images[0]?.equals(await readFile(firstVersionFile))).toBe(true);
  });

  it("branches from an earlier version with /use and the short id /history shows", async () => {
    const bot = startBot(env());
    bot.send("/threads");
    bot.send("/open 1");
    bot.send("/history");
    await bot.waitForOutput(/turn\(s\), \d+ image\(s\)/);
    expect(bot.stdout()).toMatch(/\* {2}1\. console:tester:/);
    expect(bot.stdout()).toMatch(/Now in thread console:tester:/);
    const v2Line = bot.stdout().match(/└ ([0-9a-f]{8}) {2}#2 edit/);
    expect(v2Line).not.toBeNull();
    bot.send(`/use ${v2Line?.[1]}`);
    bot.send("add stars");
    bot.endInput();
    expect((await bot.exited).code).toBe(0);
    expect(bot.stdout()).toMatch(new RegExp(`✔ turn 5 .*next edit starts from image ${v2Line?.[1]}`));
    const v2File = path.join(path.dirname(firstVersionFile), "v2-1.png");
    expect(fake.requests).toHaveLength(1);
    expect(fake.requests[0]?.images[0]?.equals(await readFile(v2File))).toBe(true);
    expect(savedFiles(bot.stdout())[0]).toMatch(/v6-1\.png$/);
  });

  it("answers bad input with a message and sends nothing", async () => {
    const bot = startBot(env());
    bot.send("/imagine a cat --n 11");
    bot.send("/imagine a cat --colour red");
    bot.send("/frobnicate");
    bot.endInput();
    const { code } = await bot.exited;
    expect(code).toBe(0);
    const errors = bot
      .stdout()
      .split("\n")
      .filter((line) => line.startsWith("✖"));
    expect(errors).toHaveLength(3);
    expect(errors[0]).toMatch(/1 to 10/);
    expect(errors[1]).toMatch(/--colour/);
    expect(errors[2]).toMatch(/Unknown command/);
    expect(fake.requests).toHaveLength(0);
  });

  it("refuses to start without OPENAI_API_KEY and says how to fix it", async () => {
    const { OPENAI_API_KEY: _omitted, ...rest } = env();
    const bot = startBot(rest);
    bot.endInput();
    const { code } = await bot.exited;
    expect(code).toBe(1);
    expect(bot.stderr()).toMatch(/OPENAI_API_KEY is required/);
  });
});
