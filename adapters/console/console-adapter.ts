import { randomBytes } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { createInterface } from "node:readline";
import type { Readable, Writable } from "node:stream";
import { imageFileName, type Thread, type ThreadKey, type Turn } from "../../src/domain.ts";
import { AppError, asAppError } from "../../src/errors.ts";
import type { ConversationEngine, Intent, TurnEvent } from "../../src/ports.ts";
import { describeParams, FLAG_HELP, parseImagineText } from "../../src/request/flags.ts";
import { usd } from "../../src/words.ts";
import { usageText } from "../shared/usage.ts";
import { renderHistory, renderThreadList, shortId } from "./render.ts";

export interface ConsoleAdapterOptions {
  engine: ConversationEngine;
  input: Readable;
  output: Writable;
  /** Images are written under `<outDir>/<thread>/`. */
  outDir: string;
  /** Who is typing; recorded on every turn. */
  userId: string;
  /** Whether a person is at a terminal (prompts and a banner) or a script is piping commands. */
  interactive: boolean;
}

const HELP = `Commands:
  /imagine <prompt> [flags]   start a new thread with a new image
  <any text>                  edit the latest image of the current thread
  /variation [flags]          new variations of the latest image
  /undo                       go back to the previous version
  /use <image id>             continue from an earlier version (ids are in /history)
  /history                    this thread's versions as a tree
  /threads                    recent threads
  /usage                      what has been spent, against the budgets
  /open <thread | number>     switch to another thread
  /help                       this help
  /quit                       wait for running work, then leave
${FLAG_HELP}`;

/**
 * The terminal as a chat platform: one reader, many threads, results written to files. It keeps nothing that
 * matters in memory: threads, heads and pending turns live in the store, so it continues after a restart.
 */
export class ConsoleAdapter {
  readonly #options: ConsoleAdapterOptions;
  #current: ThreadKey | null = null;
  /** Piped scripts wait for each turn before the next line, so output follows the script's order. */
  readonly #waiting = new Map<string, () => void>();
  #lastListing: Thread[] = [];
  #closing = false;

  constructor(options: ConsoleAdapterOptions) {
    this.#options = options;
    options.engine.observe("console", {
      progress: (event) => this.#onProgress(event),
      deliver: (event) => this.#onFinished(event),
    });
  }

  /** Reads commands until /quit or end of input, then waits for every console turn to finish. */
  async run(): Promise<void> {
    const { engine, input, output, interactive } = this.#options;
    const recent = await engine.listThreads("console", 1);
    this.#current = recent[0]?.key ?? null;
    if (interactive) {
      this.#say("threadcanvas — make and edit images from your terminal. /help for commands.");
      if (this.#current) this.#say(`Continuing thread ${this.#current} (“${recent[0]?.title}”).`);
    }
    const reader = createInterface({ input, output, terminal: false, crlfDelay: Number.POSITIVE_INFINITY });
    for await (const line of reader) {
      const keepGoing = await this.#handleLine(line);
      if (!keepGoing) break;
    }
    reader.close();
    await this.#drain();
  }

  async #handleLine(raw: string): Promise<boolean> {
    const line = raw.trim();
    if (line === "") return true;
    try {
      if (!line.startsWith("/")) {
        await this.#submit({ kind: "edit", text: line });
        return true;
      }
      const [command = "", ...rest] = line.split(/\s+/);
      const argument = line.slice(command.length).trim();
      switch (command.toLowerCase()) {
        case "/imagine":
          await this.#submit({ kind: "generate", text: argument });
          return true;
        case "/variation":
        case "/variations":
          await this.#submit({ kind: "variation", text: argument });
          return true;
        case "/undo":
          await this.#submit({ kind: "undo", text: "" });
          return true;
        case "/use":
          await this.#submit({
            kind: "select",
            text: "",
            targetImageId: await this.#resolveImage(rest[0] ?? ""),
          });
          return true;
        case "/history":
          await this.#history();
          return true;
        case "/usage": {
          const answer = await this.#options.engine.usage({
            platform: "console",
            userId: this.#options.userId,
            workspaceId: "console",
            channelId: "console",
          });
          this.#say(usageText(answer, { plainIds: true }));
          return true;
        }
        case "/threads":
          this.#lastListing = await this.#options.engine.listThreads("console", 20);
          this.#say(renderThreadList(this.#lastListing, this.#current));
          return true;
        case "/open":
          await this.#open(argument);
          return true;
        case "/help":
          this.#say(HELP);
          return true;
        case "/quit":
        case "/exit":
          return false;
        default:
          this.#say(`✖ Unknown command ${command}. Type /help for the list.`);
          return true;
      }
    } catch (error) {
      const appError = asAppError(error);
      this.#say(`✖ ${appError.userMessage}`);
      return true;
    }
  }

  async #submit(request: { kind: Intent["kind"]; text: string; targetImageId?: string }): Promise<void> {
    const { engine, userId } = this.#options;
    const allowEmptyPrompt = request.kind !== "generate" && request.kind !== "edit";
    const { prompt, params } =
      request.kind === "undo" || request.kind === "select"
        ? { prompt: "", params: {} }
        : parseImagineText(request.text, { allowEmptyPrompt });

    let threadKey: ThreadKey;
    if (request.kind === "generate") {
      threadKey = `console:${userId}:${randomBytes(4).toString("hex")}`;
    } else if (this.#current) {
      threadKey = this.#current;
    } else {
      throw new AppError("no_image_to_edit", "no current thread", {
        userMessage: "There is no thread yet. Start one with /imagine <prompt>.",
      });
    }
    const { turn, position } = await engine.submit({
      threadKey,
      kind: request.kind,
      prompt,
      params,
      userId,
      targetImageId: request.targetImageId ?? null,
      newThread: { title: prompt.slice(0, 80) },
      // The terminal is one workspace and one channel: budgets count its spend there.
      place: { workspaceId: "console", channelId: "console" },
      // Whoever types at the terminal is the operator, who sees the estimate below: nothing to ask.
      confirmed: true,
    });
    this.#current = threadKey;
    const what = request.kind === "generate" ? `new thread ${threadKey}` : `turn ${turn.seq}`;
    const waiting = position > 0 ? `queued behind ${position}` : "queued";
    const described = describeParams(turn.params);
    const cost = turn.estimateUsd > 0 ? ` (about ${usd(turn.estimateUsd)})` : "";
    this.#say(`⏳ ${what}: ${waiting}${described ? ` — ${described}` : ""}${cost}`);
    if (!this.#options.interactive) {
      await new Promise<void>((resolve) => this.#waiting.set(turn.id, resolve));
    }
  }

  /** `/use 5b30` → the image of the current thread whose id starts with that (ids print short in /history). */
  async #resolveImage(prefix: string): Promise<string> {
    const history = this.#current ? await this.#options.engine.history(this.#current) : null;
    const matches = prefix
      ? (history?.images ?? []).filter((image) => image.id.startsWith(prefix.toLowerCase()))
      : [];
    if (matches.length === 1 && matches[0]) return matches[0].id;
    throw new AppError("image_not_found", `no single image matches ${prefix}`, {
      userMessage:
        matches.length > 1
          ? `“${prefix}” matches ${matches.length} images; give more of the id.`
          : "Give the id of an image in this thread, as /history shows it: /use <id>.",
    });
  }

  async #history(): Promise<void> {
    if (!this.#current) {
      this.#say("No thread yet. Start one with /imagine <prompt>.");
      return;
    }
    const history = await this.#options.engine.history(this.#current);
    this.#say(history ? renderHistory(history) : `Thread ${this.#current} is empty.`);
  }

  async #open(argument: string): Promise<void> {
    const index = /^\d+$/.test(argument) ? Number(argument) - 1 : -1;
    const listed = index >= 0 ? this.#lastListing[index] : undefined;
    const candidates = listed ? [listed] : await this.#options.engine.listThreads("console", 200);
    const match = listed ?? candidates.find((t) => t.key === argument || t.key.endsWith(`:${argument}`));
    if (!match) {
      this.#say(`✖ No thread matches “${argument}”. /threads lists them.`);
      return;
    }
    this.#current = match.key;
    this.#say(`Now in thread ${match.key} (“${match.title}”).`);
  }

  #onProgress(event: Exclude<TurnEvent, { type: "finished" }>): void {
    const label = `turn ${event.turn.seq} of ${event.turn.threadKey}`;
    if (event.type === "running") this.#say(`🎨 ${label}: drawing…`);
    if (event.type === "partial") this.#say(`🎨 ${label}: preview ${event.partial.index + 1} arrived`);
    if (event.type === "retrying") {
      const wait = event.retryInMs ? ` in ${Math.ceil(event.retryInMs / 1000)} s` : "";
      this.#say(`↻ ${label}: ${event.reason} Retrying${wait}.`);
    }
  }

  async #onFinished(event: Extract<TurnEvent, { type: "finished" }>): Promise<void> {
    try {
      await this.#report(event);
    } finally {
      this.#waiting.get(event.turn.id)?.();
      this.#waiting.delete(event.turn.id);
    }
  }

  async #report(event: Extract<TurnEvent, { type: "finished" }>): Promise<void> {
    const { turn, thread, images } = event;
    const label = `turn ${turn.seq} of ${thread.key}`;
    if (turn.status !== "succeeded") {
      this.#say(`✖ ${label} failed: ${turn.errorMessage ?? "unknown error"}`);
      return;
    }
    if (images.length === 0) {
      this.#say(`✔ ${label}: ${describeHeadMove(turn, thread)}`);
      return;
    }
    const dir = path.join(this.#options.outDir, threadDirName(thread.key));
    await mkdir(dir, { recursive: true });
    for (const image of images) {
      const file = path.join(dir, imageFileName(turn.seq, image.index, image.format));
      // Same name for the same image: delivering twice (after a crash) rewrites one file, never adds a second.
      await writeFile(file, await this.#options.engine.imageBytes(image));
      this.#say(`✔ ${label}: ${file} (${image.width}x${image.height}, image ${shortId(image.id)})`);
    }
    const cost = turn.costUsd === null ? "" : ` ≈ $${turn.costUsd.toFixed(3)}`;
    if (cost) this.#say(`  cost${cost}`);
  }

  /** Waits until no console turn is queued or running, so piped scripts see every result before exiting. */
  async #drain(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    let announced = false;
    for (;;) {
      const pending = await this.#options.engine.unfinishedTurns("console");
      if (pending.length === 0) return;
      if (!announced && this.#options.interactive)
        this.#say(`Waiting for ${pending.length} turn(s) to finish…`);
      announced = true;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  #say(text: string): void {
    this.#options.output.write(`${text}\n`);
  }
}

function describeHeadMove(turn: Turn, thread: Thread): string {
  const head = shortId(thread.headImageId ?? "");
  if (turn.kind === "undo") return `undone; the next edit starts from image ${head}`;
  return `the next edit starts from image ${head}`;
}

/** `console:me:ab12cd34` → `console-me-ab12cd34`: one folder per thread, safe on every file system. */
export function threadDirName(key: ThreadKey): string {
  return key.replace(/[^A-Za-z0-9._-]+/g, "-");
}
