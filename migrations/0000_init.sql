CREATE TABLE "images" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"thread_key" text NOT NULL,
	"turn_id" uuid NOT NULL,
	"parent_id" uuid,
	"idx" integer NOT NULL,
	"sha256" text NOT NULL,
	"byte_size" integer NOT NULL,
	"format" text NOT NULL,
	"width" integer NOT NULL,
	"height" integer NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "images_turn_idx_unique" UNIQUE("turn_id","idx"),
	CONSTRAINT "images_format_check" CHECK ("images"."format" in ('png', 'jpeg', 'webp')),
	CONSTRAINT "images_sha256_check" CHECK ("images"."sha256" ~ '^[0-9a-f]{64}$')
);
--> statement-breakpoint
CREATE TABLE "threads" (
	"key" text PRIMARY KEY NOT NULL,
	"platform" text NOT NULL,
	"head_image_id" uuid,
	"title" text DEFAULT '' NOT NULL,
	"created_by" text NOT NULL,
	"meta" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "threads_platform_check" CHECK ("threads"."platform" in ('console', 'slack', 'discord'))
);
--> statement-breakpoint
CREATE TABLE "turns" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"thread_key" text NOT NULL,
	"seq" integer NOT NULL,
	"kind" text NOT NULL,
	"status" text DEFAULT 'queued' NOT NULL,
	"prompt" text NOT NULL,
	"params" jsonb NOT NULL,
	"user_id" text NOT NULL,
	"source_message_id" text,
	"idempotency_key" text,
	"target_image_id" uuid,
	"reference_images" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"base_image_id" uuid,
	"provider_request_id" text,
	"error_code" text,
	"error_message" text,
	"attempts" integer DEFAULT 0 NOT NULL,
	"cost_usd" numeric,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"started_at" timestamp with time zone,
	"finished_at" timestamp with time zone,
	"delivered_at" timestamp with time zone,
	CONSTRAINT "turns_idempotency_key_unique" UNIQUE("idempotency_key"),
	CONSTRAINT "turns_thread_seq_unique" UNIQUE("thread_key","seq"),
	CONSTRAINT "turns_kind_check" CHECK ("turns"."kind" in ('generate', 'edit', 'variation', 'undo', 'select')),
	CONSTRAINT "turns_status_check" CHECK ("turns"."status" in ('queued', 'running', 'succeeded', 'failed', 'canceled')),
	CONSTRAINT "turns_attempts_check" CHECK ("turns"."attempts" >= 0)
);
--> statement-breakpoint
CREATE TABLE "usage" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"turn_id" uuid NOT NULL,
	"model" text NOT NULL,
	"input_tokens" integer DEFAULT 0 NOT NULL,
	"input_text_tokens" integer DEFAULT 0 NOT NULL,
	"input_image_tokens" integer DEFAULT 0 NOT NULL,
	"output_tokens" integer DEFAULT 0 NOT NULL,
	"output_image_tokens" integer DEFAULT 0 NOT NULL,
	"reasoning_tokens" integer DEFAULT 0 NOT NULL,
	"total_tokens" integer DEFAULT 0 NOT NULL,
	"cost_usd" numeric NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "images" ADD CONSTRAINT "images_thread_key_threads_key_fk" FOREIGN KEY ("thread_key") REFERENCES "public"."threads"("key") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "images" ADD CONSTRAINT "images_turn_id_turns_id_fk" FOREIGN KEY ("turn_id") REFERENCES "public"."turns"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "images" ADD CONSTRAINT "images_parent_id_images_id_fk" FOREIGN KEY ("parent_id") REFERENCES "public"."images"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "threads" ADD CONSTRAINT "threads_head_image_id_images_id_fk" FOREIGN KEY ("head_image_id") REFERENCES "public"."images"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "turns" ADD CONSTRAINT "turns_thread_key_threads_key_fk" FOREIGN KEY ("thread_key") REFERENCES "public"."threads"("key") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "turns" ADD CONSTRAINT "turns_target_image_id_images_id_fk" FOREIGN KEY ("target_image_id") REFERENCES "public"."images"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "turns" ADD CONSTRAINT "turns_base_image_id_images_id_fk" FOREIGN KEY ("base_image_id") REFERENCES "public"."images"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "usage" ADD CONSTRAINT "usage_turn_id_turns_id_fk" FOREIGN KEY ("turn_id") REFERENCES "public"."turns"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "images_thread_idx" ON "images" USING btree ("thread_key","created_at");--> statement-breakpoint
CREATE INDEX "images_parent_idx" ON "images" USING btree ("parent_id");--> statement-breakpoint
CREATE INDEX "images_sha256_idx" ON "images" USING btree ("sha256");--> statement-breakpoint
CREATE INDEX "threads_platform_updated_idx" ON "threads" USING btree ("platform","updated_at" DESC NULLS LAST);--> statement-breakpoint
CREATE INDEX "turns_unfinished_idx" ON "turns" USING btree ("status","created_at") WHERE "turns"."status" in ('queued', 'running');--> statement-breakpoint
CREATE INDEX "usage_turn_idx" ON "usage" USING btree ("turn_id");