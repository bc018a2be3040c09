# syntax=docker/dockerfile:1
# threadcanvas: one image for every role (ROLE=all|ingress|worker). Debian slim, not Alpine: sharp ships
# prebuilt binaries for linux glibc.
#
#   docker build -t threadcanvas .
#   docker run --rm -e OPENAI_API_KEY -e SLACK_BOT_TOKEN -e SLACK_SIGNING_SECRET -p 3000:3000 threadcanvas

ARG NODE_IMAGE=node:24-bookworm-slim

# Build: every dependency, the sources, and a type check, so a tree that does not type-check never becomes an
# image. Nothing is compiled: the app runs its TypeScript through tsx.
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund
COPY . .
RUN npm run typecheck

# Production dependencies only (tsx, which `npm start` runs the TypeScript with, is one of them).
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --no-audit --no-fund

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    DATA_DIR=/data \
    PORT=3000
WORKDIR /app
# The app files stay root-owned (read-only to the process); only DATA_DIR belongs to the node user.
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/package.json /app/package-lock.json ./
COPY --from=build /app/src ./src
COPY --from=build /app/adapters ./adapters
COPY --from=build /app/migrations ./migrations
RUN mkdir -p /data && chown node:node /data
VOLUME /data
USER node
EXPOSE 3000
# No curl in slim images: node asks the app itself. 200 once the database answers, 503 otherwise.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/healthz', { signal: AbortSignal.timeout(4000) }).then((res) => process.exit(res.ok ? 0 : 1), () => process.exit(1))"]
# What `npm start` runs, without npm in between, so SIGTERM reaches node and stops it gracefully (running turns
# get SHUTDOWN_GRACE_S to finish: give `docker stop` a longer timeout than that).
CMD ["node", "--import", "tsx", "src/main.ts"]
