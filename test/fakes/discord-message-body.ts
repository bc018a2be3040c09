import { hostAttachment } from "./discord-objects.ts";
import { Errors, FormErrors, type Json, type RestRequest } from "./discord-rest.ts";
import { type DiscordState, MessageFlag, type StoredAttachment } from "./discord-state.ts";

/**
 * Message bodies, as Create/Edit Message and the interaction routes read them: content ≤ 2000 characters, ≤ 10
 * embeds within Discord's embed limits, component rules (action rows, buttons, selects, unique custom_ids), the
 * settable flags, and attachments from `files[n]` parts referenced by `attachments[].id`, each within the guild's
 * upload limit (413 / 40005). Field errors come back as one 50035 Invalid Form Body, as Discord sends them.
 */

// ---------------------------------------------------------------------------------------------------------
// Message bodies
// ---------------------------------------------------------------------------------------------------------

export interface MessageContent {
  content: string;
  embeds: unknown[];
  components: unknown[];
  flags: number;
  attachments: StoredAttachment[];
}

const MAX_CONTENT = 2000;
const MAX_ATTACHMENTS = 10;
/** Flags a sender may set (Create Message: SUPPRESS_EMBEDS, SUPPRESS_NOTIFICATIONS, IS_VOICE_MESSAGE, IS_COMPONENTS_V2). */
const SETTABLE_FLAGS = (1 << 2) | (1 << 12) | (1 << 13) | MessageFlag.IsComponentsV2;

const maxLength = (n: number) => ["BASE_TYPE_MAX_LENGTH", `Must be ${n} or fewer in length.`] as const;

/**
 * Reads the message fields of a create or edit body and merges them over `existing` (for edits). Attachments come
 * from `files[n]` parts referenced by `attachments[].id`; on an edit, the `attachments` array lists everything to
 * keep (API v10), existing ones by their id. Throws Discord's errors; hosts the new files only once it is valid.
 */
export function readMessageBody(
  state: DiscordState,
  req: RestRequest,
  body: Json,
  options: { channelId: string; existing?: MessageContent; allowEphemeral: boolean; path?: string[] },
): MessageContent {
  const prefix = options.path ?? [];
  const errors = new FormErrors();
  const existing = options.existing;

  for (const file of req.files) if (file.bytes.length > state.attachmentSizeLimit) throw Errors.tooLarge();

  let content = existing?.content ?? "";
  if ("content" in body) {
    if (body.content === null) content = "";
    else if (typeof body.content !== "string")
      errors.add([...prefix, "content"], "BASE_TYPE_STRING", "Must be a string.");
    else if ([...body.content].length > MAX_CONTENT)
      errors.add([...prefix, "content"], ...maxLength(MAX_CONTENT));
    else content = body.content;
  }

  let flags = existing?.flags ?? 0;
  if (body.flags !== undefined && body.flags !== null) {
    if (!Number.isInteger(body.flags))
      errors.add([...prefix, "flags"], "NUMBER_TYPE_COERCE", "Value is not int.");
    else {
      const requested = body.flags as number;
      const settable = SETTABLE_FLAGS | (options.allowEphemeral ? MessageFlag.Ephemeral : 0);
      // On an edit the ephemeral and loading states stay as they were; other flags are replaced.
      const kept = existing ? existing.flags & (MessageFlag.Ephemeral | MessageFlag.HasThread) : 0;
      flags = (requested & settable & (existing ? ~MessageFlag.Ephemeral : ~0)) | kept;
    }
  }

  let embeds = existing?.embeds ?? [];
  if ("embeds" in body) {
    if (body.embeds === null) embeds = [];
    else if (!Array.isArray(body.embeds))
      errors.add([...prefix, "embeds"], "BASE_TYPE_ARRAY", "Must be an array.");
    else {
      validateEmbeds(body.embeds, errors, [...prefix, "embeds"]);
      embeds = body.embeds;
    }
  }

  let components = existing?.components ?? [];
  if ("components" in body) {
    if (body.components === null) components = [];
    else if (!Array.isArray(body.components))
      errors.add([...prefix, "components"], "BASE_TYPE_ARRAY", "Must be an array.");
    else {
      validateComponents(
        body.components,
        errors,
        [...prefix, "components"],
        (flags & MessageFlag.IsComponentsV2) !== 0,
      );
      components = body.components;
    }
  }
  if (flags & MessageFlag.IsComponentsV2 && (content !== "" || embeds.length > 0))
    errors.add(
      [...prefix, "content"],
      "MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2",
      "The 'content' and 'embeds' fields cannot be used when using MessageFlags.IS_COMPONENTS_V2",
    );

  const plan = planAttachments(req, body, existing?.attachments, errors, prefix);
  errors.throwIfAny();
  const ephemeral = (flags & MessageFlag.Ephemeral) !== 0;
  const attachments = plan.map((item) =>
    "keep" in item
      ? item.keep
      : hostAttachment(
          state,
          {
            bytes: item.file.bytes,
            filename: item.filename,
            contentType: item.file.contentType || undefined,
            ...(item.description !== undefined ? { description: item.description } : {}),
            ...(item.title !== undefined ? { title: item.title } : {}),
            ephemeral,
          },
          { channelId: options.channelId },
        ),
  );
  return { content, embeds, components, flags, attachments };
}

type AttachmentPlan = Array<
  | { keep: StoredAttachment }
  | { file: RestRequest["files"][number]; filename: string; description?: string; title?: string }
>;

function planAttachments(
  req: RestRequest,
  body: Json,
  existing: StoredAttachment[] | undefined,
  errors: FormErrors,
  prefix: string[],
): AttachmentPlan {
  const entries = body.attachments;
  const files = [...req.files].sort((a, b) => Number(a.index) - Number(b.index));
  let plan: AttachmentPlan;
  if (entries === undefined || entries === null) {
    // No `attachments` array: new files are added to whatever the message already has.
    plan = [
      ...(existing ?? []).map((keep) => ({ keep })),
      ...files.map((file) => ({ file, filename: file.filename })),
    ];
  } else if (!Array.isArray(entries)) {
    errors.add([...prefix, "attachments"], "BASE_TYPE_ARRAY", "Must be an array.");
    return [];
  } else {
    plan = [];
    const used = new Set<string>();
    entries.forEach((entry: unknown, i) => {
      const path = [...prefix, "attachments", i];
      const id = typeof entry === "object" && entry !== null ? (entry as Json).id : undefined;
      if (id === undefined || id === null) {
        errors.add([...path, "id"], "BASE_TYPE_REQUIRED", "This field is required");
        return;
      }
      const e = entry as Json;
      const description = typeof e.description === "string" ? e.description : undefined;
      if (description !== undefined && description.length > 1024)
        errors.add([...path, "description"], ...maxLength(1024));
      const file = files.find((f) => f.index === String(id));
      const kept = existing?.find((a) => a.id === String(id));
      if (file && !used.has(file.index)) {
        used.add(file.index);
        plan.push({
          file,
          filename: typeof e.filename === "string" && e.filename ? e.filename : file.filename,
          ...(description !== undefined ? { description } : {}),
          ...(typeof e.title === "string" ? { title: e.title } : {}),
        });
      } else if (kept) plan.push({ keep: kept });
      else errors.add([...path, "id"], "ATTACHMENT_NOT_FOUND", `Unknown attachment id ${String(id)}.`);
    });
    // On create, files without an entry are still attached; on an edit the array is the full list (API v10).
    if (!existing)
      for (const file of files) if (!used.has(file.index)) plan.push({ file, filename: file.filename });
  }
  if (plan.length > MAX_ATTACHMENTS) errors.add([...prefix, "attachments"], ...maxLength(MAX_ATTACHMENTS));
  for (const item of plan)
    if ("file" in item && item.file.bytes.length === 0)
      errors.add([...prefix, "attachments"], "BASE_TYPE_REQUIRED", "Attachments cannot be empty.");
  return plan;
}

export function isEmpty(message: MessageContent): boolean {
  return (
    message.content === "" &&
    message.embeds.length === 0 &&
    message.components.length === 0 &&
    message.attachments.length === 0
  );
}

function validateEmbeds(embeds: unknown[], errors: FormErrors, path: Array<string | number>): void {
  if (embeds.length > 10) errors.add(path, ...maxLength(10));
  let total = 0;
  embeds.forEach((raw, i) => {
    const embed = (raw ?? {}) as Json;
    const check = (value: unknown, limit: number, at: Array<string | number>) => {
      if (typeof value !== "string") return;
      total += value.length;
      if (value.length > limit) errors.add([...path, i, ...at], ...maxLength(limit));
    };
    check(embed.title, 256, ["title"]);
    check(embed.description, 4096, ["description"]);
    check((embed.footer as Json | undefined)?.text, 2048, ["footer", "text"]);
    check((embed.author as Json | undefined)?.name, 256, ["author", "name"]);
    const fields = Array.isArray(embed.fields) ? (embed.fields as Json[]) : [];
    if (fields.length > 25) errors.add([...path, i, "fields"], ...maxLength(25));
    fields.forEach((field, j) => {
      check(field?.name, 256, ["fields", j, "name"]);
      check(field?.value, 1024, ["fields", j, "value"]);
    });
  });
  if (total > 6000) errors.add(path, "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000");
}

const SELECT_TYPES = new Set([3, 5, 6, 7, 8]);

/** Legacy action rows (≤ 5 rows of ≤ 5 buttons or one select), button and select rules, unique custom_ids. */
function validateComponents(
  components: unknown[],
  errors: FormErrors,
  path: Array<string | number>,
  v2: boolean,
): void {
  const ids = new Set<string>();
  const customId = (value: unknown, at: Array<string | number>, required: boolean) => {
    if (value === undefined || value === null) {
      if (required) errors.add([...at, "custom_id"], "BASE_TYPE_REQUIRED", "This field is required");
      return;
    }
    if (typeof value !== "string" || value.length < 1 || value.length > 100)
      return errors.add([...at, "custom_id"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.");
    if (ids.has(value))
      errors.add(
        [...at, "custom_id"],
        "COMPONENT_CUSTOM_ID_DUPLICATED",
        "Component custom id cannot be duplicated",
      );
    ids.add(value);
  };
  const interactive = (component: Json, at: Array<string | number>) => {
    if (component.type === 2) {
      const style = component.style;
      if (typeof style !== "number" || style < 1 || style > 6)
        return errors.add([...at, "style"], "BASE_TYPE_CHOICES", `Value must be one of {1, 2, 3, 4, 5, 6}.`);
      if (typeof component.label === "string" && component.label.length > 80)
        errors.add([...at, "label"], ...maxLength(80));
      if (style === 5) {
        if (typeof component.url !== "string")
          errors.add([...at, "url"], "BASE_TYPE_REQUIRED", "This field is required");
        if (component.custom_id !== undefined)
          errors.add(
            [...at, "custom_id"],
            "BUTTON_COMPONENT_CUSTOM_ID_NOT_ALLOWED",
            "A link button cannot have a custom id",
          );
      } else if (style !== 6) customId(component.custom_id, at, true);
      if (component.label === undefined && component.emoji === undefined && style !== 6)
        errors.add([...at], "BUTTON_COMPONENT_LABEL_OR_EMOJI_REQUIRED", "A button needs a label or an emoji");
    } else if (SELECT_TYPES.has(component.type as number)) {
      customId(component.custom_id, at, true);
      if (component.type === 3) {
        const options = Array.isArray(component.options) ? component.options : [];
        if (options.length < 1 || options.length > 25)
          errors.add([...at, "options"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 25 in length.");
      }
    }
  };
  const walk = (component: Json, at: Array<string | number>) => {
    interactive(component, at);
    for (const key of ["components", "accessory"] as const) {
      const child = component[key];
      if (Array.isArray(child))
        child.forEach((c, i) => {
          walk((c ?? {}) as Json, [...at, key, i]);
        });
      else if (child && typeof child === "object") walk(child as Json, [...at, key]);
    }
  };
  if (v2) {
    components.forEach((c, i) => {
      walk((c ?? {}) as Json, [...path, i]);
    });
    return;
  }
  if (components.length > 5) errors.add(path, ...maxLength(5));
  components.forEach((raw, i) => {
    const row = (raw ?? {}) as Json;
    const at = [...path, i];
    if (row.type !== 1) {
      errors.add(
        [...at, "type"],
        "UNION_TYPE_CHOICES",
        "Top-level components must be action rows without IS_COMPONENTS_V2",
      );
      return;
    }
    const children = Array.isArray(row.components) ? (row.components as Json[]) : [];
    if (children.length < 1 || children.length > 5)
      errors.add([...at, "components"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length.");
    const selects = children.filter((c) => SELECT_TYPES.has(c?.type as number)).length;
    if (selects > 0 && children.length > 1)
      errors.add(
        [...at, "components"],
        "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
        "The specified component exceeds the maximum width",
      );
    children.forEach((c, j) => {
      walk((c ?? {}) as Json, [...at, "components", j]);
    });
  });
}
