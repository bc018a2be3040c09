CREATE TABLE "provider_results" (
	"turn_id" uuid PRIMARY KEY NOT NULL,
	"images" jsonb NOT NULL,
	"usage" jsonb NOT NULL,
	"request_id" text,
	"revised_prompt" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "provider_results" ADD CONSTRAINT "provider_results_turn_id_turns_id_fk" FOREIGN KEY ("turn_id") REFERENCES "public"."turns"("id") ON DELETE cascade ON UPDATE no action;