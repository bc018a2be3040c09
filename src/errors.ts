/**
 * One error class for everything a user can be told about. `message` is for logs; `userMessage` is what an
 * adapter shows; `retryable` tells the job queue whether another attempt can succeed.
 */
export type ErrorCode =
  | "invalid_flag"
  | "unknown_flag"
  | "invalid_size"
  | "prompt_empty"
  | "prompt_too_long"
  | "no_image_to_edit"
  | "image_not_found"
  | "thread_not_found"
  | "alias_taken"
  | "nothing_to_undo"
  | "unsupported_attachment"
  | "attachment_too_large"
  | "moderation_blocked"
  | "rate_limited"
  | "provider_unavailable"
  | "provider_rejected"
  | "provider_auth"
  | "provider_timeout"
  | "config_invalid"
  | "unauthorized_channel"
  | "crash_loop"
  | "gave_up"
  | "quota_exceeded"
  | "budget_exceeded"
  | "confirmation_needed"
  | "turn_not_found"
  | "cancel_refused"
  | "internal";

export interface AppErrorOptions {
  userMessage?: string;
  retryable?: boolean;
  /** For rate limits: how long the provider asked us to wait. */
  retryAfterMs?: number;
  cause?: unknown;
}

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly userMessage: string;
  readonly retryable: boolean;
  readonly retryAfterMs: number | undefined;

  constructor(code: ErrorCode, message: string, options: AppErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "AppError";
    this.code = code;
    this.userMessage = options.userMessage ?? message;
    this.retryable = options.retryable ?? false;
    this.retryAfterMs = options.retryAfterMs;
  }
}

/** Wraps anything thrown into an AppError; unknown errors are internal and retryable (a crash, a lost connection). */
export function asAppError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new AppError("internal", message, {
    userMessage: "Something went wrong on our side. Please try again.",
    retryable: true,
    cause: error,
  });
}
