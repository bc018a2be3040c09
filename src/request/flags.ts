import type { ImageParams, OutputFormat, Quality } from "../domain.ts";
import { AppError } from "../errors.ts";
import { checkPrompt } from "./checks.ts";
import { COMMON_ASPECT_SIZES, sizeForAspect, validateSize } from "./image-size.ts";

/**
 * The `/imagine` text parser every adapter shares: `<prompt> [--flag value | --flag=value | --switch] …`.
 *
 * - Flags follow the prompt. The prompt is everything before the first flag, trimmed and otherwise kept
 *   byte-for-byte (CJK, RTL, emoji, ZWJ sequences, combining marks, inner spaces and newlines untouched).
 * - A flag starts at a word boundary with `--` and a letter. `--` followed by anything else (`a -- b`,
 *   `--- divider`) is prompt text.
 * - Phones and macOS turn a typed `--` into an em dash (`—ar`), sometimes an en dash (`–ar`), so those start a
 *   flag too — but only when the name is a flag or close to one: a dash before an ordinary word ("a cat —fluffy
 *   and small") stays prompt text. Once flags have started, every dash token is read as a flag.
 * - Flag names and enum values are case-insensitive (`--AR`, `--quality HIGH`).
 * - Everything invalid throws an AppError whose message can be shown to the user as is.
 */

export interface ParsedImagine {
  prompt: string;
  /** Only what the text set; the engine fills in the rest (defaults, or what an edit inherits). */
  params: Partial<ImageParams>;
  /** The `--ar` value as typed (e.g. `16:9`), for status lines; its size is in `params.size`. */
  aspect?: string;
}

export interface ParseImagineOptions {
  /** Variation requests may have no prompt: they reuse the original image's prompt. */
  allowEmptyPrompt?: boolean;
}

type FlagName = "ar" | "size" | "quality" | "n" | "format" | "transparent" | "think";

interface FlagSpec {
  name: FlagName;
  /** What the value looks like, for help and error messages; absent for switches. */
  value?: string;
  example?: string;
  help: string;
}

const FLAGS: readonly FlagSpec[] = [
  {
    name: "ar",
    value: "W:H",
    example: "--ar 16:9",
    help: "aspect ratio from 1:3 to 3:1, e.g. 16:9 → 1536x864",
  },
  {
    name: "size",
    value: "WxH|auto",
    example: "--size 1536x1024",
    help: "exact size: sides multiples of 16, up to 3840x2160",
  },
  {
    name: "quality",
    value: "low|medium|high|auto",
    example: "--quality high",
    help: "more detail costs more and takes longer",
  },
  { name: "n", value: "1..10", example: "--n 4", help: "how many images" },
  { name: "format", value: "png|jpeg|webp", example: "--format webp", help: "file format (default png)" },
  { name: "transparent", help: "transparent background (png or webp)" },
  { name: "think", help: "let a reasoning model plan the image first (slower)" },
];

const FLAG_BY_NAME = new Map<string, FlagSpec>(FLAGS.map((spec) => [spec.name, spec]));

/** Other spellings that mean the same flag. `--aspect` is Midjourney's long form of `--ar`. */
const ALIASES: Readonly<Record<string, FlagName>> = { aspect: "ar" };

const VALID_FLAGS = FLAGS.map((spec) => `--${spec.name}`).join(", ");

/**
 * Names people type from habit (Midjourney, other tools) that are not flags here, with what to do instead.
 * Checked before the edit-distance hint, which would give poor advice for them (`--no` is not `--n`).
 */
const HABITUAL_NAMES: Readonly<Record<string, string>> = {
  no: "--no is a Midjourney flag; here, say what to leave out in the prompt itself.",
  q: "Did you mean --quality (low, medium, high or auto)?",
  hd: "Did you mean --quality high?",
  r: "Did you mean --n (how many images)?",
  repeat: "Did you mean --n (how many images)?",
  num: "Did you mean --n (how many images)?",
  number: "Did you mean --n (how many images)?",
  count: "Did you mean --n (how many images)?",
  images: "Did you mean --n (how many images)?",
  ratio: "Did you mean --ar (aspect ratio, e.g. --ar 16:9)?",
  "aspect-ratio": "Did you mean --ar (aspect ratio, e.g. --ar 16:9)?",
  fmt: "Did you mean --format (png, jpeg or webp)?",
  transparency: "Did you mean --transparent?",
  alpha: "Did you mean --transparent?",
  ...Object.fromEntries(
    "s stylize c chaos v version niji seed style tile w weird iw raw"
      .split(" ")
      .map((name) => [name, `--${name} is a Midjourney flag that gpt-image-2 has no equivalent for.`]),
  ),
};

/** A flag token: `--name`, `--name=value`, `—name`, `–name=value`. The name must start with a letter. */
const FLAG_TOKEN = /^(?:--|[\u2013\u2014])(\p{L}[^=]*)(?:=(.*))?$/su;

/** Where a flag token may start: after whitespace or at the very beginning. */
const FLAG_START = /(?<=^|\s)(--|[\u2013\u2014])(\p{L}[^\s=]*)/gu;

const QUALITIES: readonly Quality[] = ["low", "medium", "high", "auto"];
const FORMATS: Readonly<Record<string, OutputFormat>> = {
  png: "png",
  jpeg: "jpeg",
  jpg: "jpeg",
  webp: "webp",
};

/** Parses `/imagine` text. Throws AppError (invalid_flag, unknown_flag, invalid_size, prompt_empty, prompt_too_long). */
export function parseImagineText(text: string, options: ParseImagineOptions = {}): ParsedImagine {
  const start = findFlagStart(text);
  const prompt = (start === -1 ? text : text.slice(0, start)).trim();
  const values = start === -1 ? new Map<FlagName, string | true>() : readFlags(text.slice(start));
  const result = applyFlags(values);
  if (prompt !== "" || !options.allowEmptyPrompt) checkPrompt(prompt);
  return { prompt, ...result };
}

/** Index of the first flag token, or -1 when the whole text is prompt. */
function findFlagStart(text: string): number {
  for (const match of text.matchAll(FLAG_START)) {
    const [, dash, name = ""] = match;
    // `--name` is always meant as a flag; an autocorrected dash only when it names a flag, or is a typo of one
    // long enough not to be an ordinary word ("—at", "—art" and "—an" are all one edit from --ar).
    if (dash === "--" || lookupFlag(name) || (name.length >= 4 && nearestFlag(name))) return match.index;
  }
  return -1;
}

/** Reads the flag section into canonical name → value (`true` for switches), rejecting anything malformed. */
function readFlags(section: string): Map<FlagName, string | true> {
  const tokens = section.split(/\s+/u).filter((token) => token !== "");
  const values = new Map<FlagName, string | true>();
  let previous: { spec: FlagSpec; value: string | true } | undefined;
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i] as string;
    const flag = FLAG_TOKEN.exec(token);
    if (!flag) throw strayText(tokens.slice(i), previous);
    const typed = `--${flag[1]}`;
    const spec = lookupFlag(flag[1] ?? "");
    if (!spec) throw unknownFlag(typed);
    let value: string | true = true;
    if (spec.value) {
      let given = flag[2];
      if (given === undefined) {
        const next = tokens[i + 1];
        if (next !== undefined && !FLAG_TOKEN.test(next)) {
          given = next;
          i++;
        }
      }
      if (given === undefined || given === "") {
        throw invalidFlag(`--${spec.name} needs a value (${spec.value}), e.g. ${spec.example}.`);
      }
      value = given;
    } else if (flag[2] !== undefined) {
      throw invalidFlag(`--${spec.name} is a switch and takes no value: write just --${spec.name}.`);
    }
    const earlier = values.get(spec.name);
    if (earlier !== undefined) {
      const both = earlier === true || value === true ? "" : ` (${earlier} and ${value})`;
      throw invalidFlag(`--${spec.name} is given twice${both}; give each flag once.`);
    }
    values.set(spec.name, value);
    previous = { spec, value };
  }
  return values;
}

/** Turns raw flag values into image parameters, checking each value and the rules between flags. */
function applyFlags(values: Map<FlagName, string | true>): Pick<ParsedImagine, "params" | "aspect"> {
  const text = (name: FlagName) => {
    const value = values.get(name);
    return typeof value === "string" ? value : undefined;
  };
  const params: Partial<ImageParams> = {};
  let aspect: string | undefined;

  const ar = text("ar");
  const size = text("size");
  if (ar !== undefined && size !== undefined) {
    throw invalidFlag(
      "Use --ar or --size, not both: --ar picks a shape and its size, --size sets exact pixels.",
    );
  }
  if (ar !== undefined) {
    params.size = sizeForAspect(ar);
    aspect = ar;
  }
  if (size !== undefined) params.size = validateSize(size);

  const quality = text("quality");
  if (quality !== undefined) {
    const wanted = quality.toLowerCase();
    const found = QUALITIES.find((candidate) => candidate === wanted);
    if (!found) throw invalidFlag(`--quality must be low, medium, high or auto (got "${quality}").`);
    params.quality = found;
  }

  const n = text("n");
  if (n !== undefined) {
    const count = /^\d+$/.test(n) ? Number(n) : Number.NaN;
    if (!(count >= 1 && count <= 10))
      throw invalidFlag(`--n must be a whole number from 1 to 10 (got "${n}").`);
    params.n = count;
  }

  const format = text("format");
  if (format !== undefined) {
    const found = FORMATS[format.toLowerCase()];
    if (!found) throw invalidFlag(`--format must be png, jpeg or webp (got "${format}").`);
    params.format = found;
  }

  if (values.has("transparent")) {
    if (params.format === "jpeg") {
      throw invalidFlag("--transparent needs --format png or webp: JPEG has no transparency.");
    }
    params.background = "transparent";
  }
  if (values.has("think")) params.think = true;

  return aspect === undefined ? { params } : { params, aspect };
}

function lookupFlag(name: string): FlagSpec | undefined {
  const lower = name.toLowerCase();
  return FLAG_BY_NAME.get(ALIASES[lower] ?? lower);
}

/**
 * The flag a misspelt name most likely meant: a flag it abbreviates (`--qual`) or extends (`--thinking`), else
 * the closest flag within edit distance 2 (transpositions count 1). The distance may be at most half the flag's
 * length, so that every short word is not "near" `--n` or `--ar`.
 */
function nearestFlag(name: string): FlagName | undefined {
  const lower = name.toLowerCase();
  if (lower.length >= 2) {
    const abbreviated = FLAGS.find((spec) => spec.name.startsWith(lower));
    if (abbreviated) return abbreviated.name;
  }
  const extended = FLAGS.find((spec) => spec.name.length >= 4 && lower.startsWith(spec.name));
  if (extended) return extended.name;
  let best: { name: FlagName; distance: number } | undefined;
  for (const spec of FLAGS) {
    const distance = editDistance(lower, spec.name);
    if (distance <= Math.min(2, Math.floor(spec.name.length / 2)) && (!best || distance < best.distance)) {
      best = { name: spec.name, distance };
    }
  }
  return best?.name;
}

function unknownFlag(typed: string): AppError {
  const name = typed.slice(2).toLowerCase();
  const habitual = HABITUAL_NAMES[name];
  const near = nearestFlag(name);
  const hint = habitual ?? (near ? `Did you mean --${near}?` : "");
  const message = `Unknown flag ${typed}. ${hint ? `${hint} ` : ""}Valid flags: ${VALID_FLAGS}.`;
  return new AppError("unknown_flag", message);
}

/** Text where a flag should be: usually a prompt written after the flags, or a value given to a switch. */
function strayText(
  rest: readonly string[],
  previous: { spec: FlagSpec; value: string | true } | undefined,
): AppError {
  const upToNextFlag = rest.findIndex((token) => FLAG_TOKEN.test(token));
  let stray = (upToNextFlag === -1 ? rest : rest.slice(0, upToNextFlag)).join(" ");
  if (stray.length > 60) stray = `${stray.slice(0, 57)}…`;
  const why =
    previous === undefined
      ? ""
      : previous.value === true
        ? `--${previous.spec.name} takes no value, so "${stray}" was not understood. `
        : `--${previous.spec.name} takes one value (${previous.value}), so "${stray}" was not understood. `;
  return invalidFlag(
    `${why}Put the whole prompt first and the flags after it, e.g. /imagine a red fox in snow --ar 16:9.`,
  );
}

function invalidFlag(message: string): AppError {
  return new AppError("invalid_flag", message);
}

/** Optimal string alignment distance: insertions, deletions, substitutions and adjacent swaps cost 1. */
function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[][] = Array.from({ length: rows }, (_, i) =>
    Array.from({ length: cols }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  const at = (i: number, j: number) => d[i]?.[j] ?? Number.POSITIVE_INFINITY;
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        best = Math.min(best, at(i - 2, j - 2) + 1);
      (d[i] as number[])[j] = best;
    }
  }
  return at(a.length, b.length);
}

/**
 * A short status-line summary such as `16:9 · 1536x864 · high · 4 images · webp · transparent · think`.
 * Shows only what differs from the defaults (auto size and quality, 1 image, png, auto background, no think),
 * so it reads the same for a Partial from the parser and for a turn's full parameters; "" when nothing does.
 * The ratio is `aspect` when given, else looked up for the common sizes (1536x864 → 16:9).
 */
export function describeParams(params: Partial<ImageParams>, aspect?: string): string {
  const parts: string[] = [];
  const ratio = aspect ?? COMMON_ASPECT_SIZES.find((entry) => entry.size === params.size)?.aspect;
  if (ratio) parts.push(ratio);
  if (params.size && params.size !== "auto") parts.push(params.size);
  if (params.quality && params.quality !== "auto") parts.push(params.quality);
  if (params.n !== undefined && params.n !== 1) parts.push(`${params.n} images`);
  if (params.format && params.format !== "png") parts.push(params.format);
  if (params.background && params.background !== "auto") parts.push(params.background);
  if (params.think) parts.push("think");
  return parts.join(" · ");
}

/** Help text for `/imagine help` and for error replies; plain text that reads the same on every platform. */
export const FLAG_HELP: string = helpText();

function helpText(): string {
  const usages = FLAGS.map((spec) => `--${spec.name}${spec.value ? ` ${spec.value}` : ""}`);
  const width = Math.max(...usages.map((usage) => usage.length)) + 2;
  return [
    "/imagine <prompt> [flags] — the prompt first, then any flags:",
    ...FLAGS.map((spec, i) => `  ${(usages[i] ?? "").padEnd(width)}${spec.help}`),
    `Shapes for --ar: ${COMMON_ASPECT_SIZES.slice(0, 9)
      .map((entry) => `${entry.aspect} ${entry.size}`)
      .join(", ")}.`,
    "Also --flag=value. Example: /imagine a poster for our launch --ar 16:9 --quality high --n 2",
  ].join("\n");
}
