import { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from "openai";
import { AppError, asAppError } from "../errors.ts";

/**
 * The one place where OpenAI's failures become AppErrors (STYLE.md: map provider errors once, at the provider).
 * Three shapes arrive here: an SDK `APIError` from an HTTP error status, an `APIError` without a status from an
 * `event: error` in the middle of a stream, and the `error` object of a Responses API response that `failed`.
 * All are classified by the same rules, mostly on OpenAI's `code` and the HTTP status.
 */

export const MODERATION_USER_MESSAGE =
  "OpenAI's safety system blocked this request. Try rewording the prompt.";

/** OpenAI's `{ code, message, type }` error object, from a body, a stream event or a failed response. */
export interface OpenAIErrorInfo {
  status?: number | undefined;
  code?: string | null | undefined;
  type?: string | null | undefined;
  message?: string | null | undefined;
  headers?: Headers | undefined;
  requestId?: string | null | undefined;
}

/** Types OpenAI uses for "your request is at fault"; anything else without a status is treated as transient. */
const USER_ERROR_TYPES = new Set(["invalid_request_error", "image_generation_user_error"]);

/** True when the caller canceled the call: not a provider failure, so it is rethrown untouched. */
export function isAbort(error: unknown, signal?: AbortSignal): boolean {
  return error instanceof APIUserAbortError || (signal?.aborted === true && error === signal.reason);
}

export function toAppError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  if (error instanceof APIConnectionTimeoutError) {
    return new AppError("provider_timeout", `OpenAI request timed out: ${error.message}`, {
      userMessage: "OpenAI took too long to answer. The request will be tried again.",
      retryable: true,
      cause: error,
    });
  }
  if (error instanceof APIConnectionError) {
    return new AppError("provider_unavailable", `could not reach OpenAI: ${error.message}`, {
      userMessage: "OpenAI could not be reached. The request will be tried again.",
      retryable: true,
      cause: error,
    });
  }
  if (error instanceof APIError) {
    const body = error.error as { message?: unknown } | undefined;
    return classify(
      {
        status: error.status,
        code: error.code,
        type: error.type,
        message: typeof body?.message === "string" ? body.message : error.message,
        headers: error.headers,
        requestId: error.requestID,
      },
      error,
    );
  }
  return asAppError(error);
}

/** Classifies an error object that came without an exception (a `failed` Responses API response). */
export function errorFromInfo(info: OpenAIErrorInfo): AppError {
  return classify(info, undefined);
}

function classify(info: OpenAIErrorInfo, cause: unknown): AppError {
  const { status, code, type } = info;
  const detail = info.message || "no message";
  const logMessage =
    `OpenAI ${status ?? "stream/response"} error${code ? ` ${code}` : ""}: ${detail}` +
    (info.requestId ? ` (request ${info.requestId})` : "");
  const options = { cause: cause ?? info };

  if (code === "moderation_blocked" || code === "content_policy_violation") {
    return new AppError("moderation_blocked", logMessage, {
      ...options,
      userMessage: MODERATION_USER_MESSAGE,
      retryable: false,
    });
  }
  if (code === "insufficient_quota") {
    // Arrives as a 429 but waiting does not help: the account is out of credit or over its spending limit.
    return new AppError("provider_auth", logMessage, {
      ...options,
      userMessage: "The OpenAI account behind this bot is out of credit. Ask an admin to check its billing.",
      retryable: false,
    });
  }
  if (status === 429 || code === "rate_limit_exceeded") {
    return new AppError("rate_limited", logMessage, {
      ...options,
      userMessage: "OpenAI is rate-limiting this bot right now. The request will be tried again shortly.",
      retryable: true,
      retryAfterMs: retryAfterMs(info.headers),
    });
  }
  if (status === 401 || status === 403) {
    return new AppError("provider_auth", logMessage, {
      ...options,
      userMessage: "The bot's OpenAI credentials were refused. Ask an admin to check OPENAI_API_KEY.",
      retryable: false,
    });
  }
  const transient =
    status === undefined
      ? !USER_ERROR_TYPES.has(type ?? "")
      : status >= 500 || status === 408 || status === 409;
  if (transient) {
    return new AppError("provider_unavailable", logMessage, {
      ...options,
      userMessage: "OpenAI had a problem generating the image. The request will be tried again.",
      retryable: true,
    });
  }
  return new AppError("provider_rejected", logMessage, {
    ...options,
    userMessage: `OpenAI rejected the request: ${detail}`,
    retryable: false,
  });
}

/** `retry-after-ms` (milliseconds, OpenAI's own) first, then `retry-after` (seconds or an HTTP date). */
export function retryAfterMs(headers: Headers | undefined): number | undefined {
  const ms = Number.parseFloat(headers?.get("retry-after-ms") ?? "");
  if (Number.isFinite(ms) && ms >= 0) return Math.ceil(ms);
  const value = headers?.get("retry-after");
  if (!value) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return Math.ceil(seconds * 1000);
  const date = Date.parse(value);
  return Number.isFinite(date) ? Math.max(0, date - Date.now()) : undefined;
}
