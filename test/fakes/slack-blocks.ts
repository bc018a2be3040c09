/**
 * Block Kit checks the fake applies before accepting `blocks`, with Slack's documented limits. Slack answers a
 * bad layout with `invalid_blocks` and one `[ERROR] … [json-pointer:/blocks/…]` line per problem in
 * `response_metadata.messages`, which the Web API client logs; `validateBlocks` returns those lines.
 */

const KNOWN_BLOCKS = new Set([
  "section",
  "divider",
  "image",
  "actions",
  "context",
  "header",
  "input",
  "file",
  "rich_text",
  "video",
  "markdown",
]);
const INTERACTIVE = new Set([
  "button",
  "static_select",
  "external_select",
  "users_select",
  "conversations_select",
  "channels_select",
  "overflow",
  "datepicker",
  "timepicker",
  "checkboxes",
  "radio_buttons",
  "multi_static_select",
]);

type Obj = Record<string, unknown>;
const isObj = (value: unknown): value is Obj =>
  typeof value === "object" && value !== null && !Array.isArray(value);

export function validateBlocks(blocks: unknown): string[] {
  const errors: string[] = [];
  const fail = (message: string, pointer: string) =>
    errors.push(`[ERROR] ${message} [json-pointer:${pointer}]`);
  if (!Array.isArray(blocks)) {
    fail("must provide an array", "/blocks");
    return errors;
  }
  if (blocks.length > 50) fail("no more than 50 items allowed", "/blocks");
  const blockIds = new Set<string>();
  blocks.forEach((block, i) => {
    const at = `/blocks/${i}`;
    if (!isObj(block) || typeof block.type !== "string") {
      fail("must provide an object with a type", at);
      return;
    }
    if (!KNOWN_BLOCKS.has(block.type)) {
      fail(`unsupported type: ${block.type}`, `${at}/type`);
      return;
    }
    if (block.block_id !== undefined) {
      if (typeof block.block_id !== "string" || block.block_id.length > 255)
        fail("must be a string of at most 255 characters", `${at}/block_id`);
      else if (blockIds.has(block.block_id)) fail("duplicate block_id", `${at}/block_id`);
      else blockIds.add(block.block_id);
    }
    switch (block.type) {
      case "section":
        if (block.text === undefined && block.fields === undefined)
          fail("must provide either text or fields", at);
        if (block.text !== undefined) checkText(block.text, 3000, `${at}/text`, fail);
        if (block.fields !== undefined) {
          if (!Array.isArray(block.fields) || block.fields.length > 10)
            fail("must be an array of at most 10 items", `${at}/fields`);
          else
            block.fields.forEach((field, j) => {
              checkText(field, 2000, `${at}/fields/${j}`, fail);
            });
        }
        if (block.accessory !== undefined) checkElement(block.accessory, `${at}/accessory`, new Set(), fail);
        break;
      case "header":
        checkText(block.text, 150, `${at}/text`, fail, "plain_text");
        break;
      case "image":
        if (typeof block.image_url !== "string" && !isObj(block.slack_file))
          fail("must provide image_url or slack_file", at);
        if (typeof block.alt_text !== "string" || block.alt_text.length > 2000)
          fail("alt_text is required, at most 2000 characters", `${at}/alt_text`);
        break;
      case "actions": {
        const elements = block.elements;
        if (!Array.isArray(elements) || elements.length === 0 || elements.length > 25) {
          fail("must provide 1 to 25 elements", `${at}/elements`);
          break;
        }
        const actionIds = new Set<string>();
        elements.forEach((element, j) => {
          checkElement(element, `${at}/elements/${j}`, actionIds, fail);
        });
        break;
      }
      case "context":
        if (!Array.isArray(block.elements) || block.elements.length === 0 || block.elements.length > 10)
          fail("must provide 1 to 10 elements", `${at}/elements`);
        break;
    }
  });
  return errors;
}

function checkText(
  value: unknown,
  max: number,
  at: string,
  fail: (message: string, pointer: string) => void,
  only?: "plain_text",
): void {
  if (!isObj(value) || (value.type !== "plain_text" && value.type !== "mrkdwn")) {
    fail("must be a text object (plain_text or mrkdwn)", at);
    return;
  }
  if (only && value.type !== only) {
    fail(`must be ${only}`, `${at}/type`);
    return;
  }
  if (typeof value.text !== "string" || value.text.length === 0) {
    fail("text must not be empty", `${at}/text`);
    return;
  }
  if (value.text.length > max) fail(`must be less than ${max + 1} characters`, `${at}/text`);
}

function checkElement(
  element: unknown,
  at: string,
  actionIds: Set<string>,
  fail: (message: string, pointer: string) => void,
): void {
  if (!isObj(element) || typeof element.type !== "string") {
    fail("must provide an element with a type", at);
    return;
  }
  if (!INTERACTIVE.has(element.type) && element.type !== "image") {
    fail(`unsupported type: ${element.type}`, `${at}/type`);
    return;
  }
  if (element.action_id !== undefined) {
    if (typeof element.action_id !== "string" || element.action_id.length > 255)
      fail("must be a string of at most 255 characters", `${at}/action_id`);
    else if (actionIds.has(element.action_id)) fail("duplicate action_id", `${at}/action_id`);
    else actionIds.add(element.action_id);
  }
  if (element.type !== "button") return;
  checkText(element.text, 75, `${at}/text`, fail, "plain_text");
  if (element.value !== undefined && (typeof element.value !== "string" || element.value.length > 2000))
    fail("must be a string of at most 2000 characters", `${at}/value`);
  if (element.url !== undefined && (typeof element.url !== "string" || element.url.length > 3000))
    fail("must be a string of at most 3000 characters", `${at}/url`);
  if (element.style !== undefined && element.style !== "primary" && element.style !== "danger")
    fail("must be primary or danger", `${at}/style`);
}
