CREATE TABLE "thread_aliases" (
	"alias" text PRIMARY KEY NOT NULL,
	"thread_key" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "thread_aliases" ADD CONSTRAINT "thread_aliases_thread_key_threads_key_fk" FOREIGN KEY ("thread_key") REFERENCES "public"."threads"("key") ON DELETE cascade ON UPDATE no action;