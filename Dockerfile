# The opencode-dispatch image: the CLI (worker, dashboard, enqueue, …) with the opencode binary,
# which npm installs from the opencode-ai package (its platform build for this image's CPU).
#   docker build -t opencode-dispatch .
#   docker run --rm -e REDIS_URL=redis://redis:6379 opencode-dispatch worker --metrics-port 9464
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY bin ./bin
# npm ci runs `prepare` (builds dist/) and installs opencode-ai's platform binary.
RUN npm ci && npm prune --omit=dev

FROM node:20-bookworm-slim
# git and ripgrep: opencode's tools use them in the job's working directory.
RUN apt-get update && apt-get install -y --no-install-recommends git ripgrep ca-certificates tini \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production \
    DISPATCH_DATA_DIR=/var/lib/opencode-dispatch \
    OPENCODE_DISABLE_AUTOUPDATE=1 \
    OPENCODE_DISABLE_SHARE=1
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/bin ./bin
# Jobs run as an unprivileged user, in /work unless a job names another directory.
RUN useradd --create-home --uid 10001 dispatch \
    && mkdir -p /var/lib/opencode-dispatch /work && chown dispatch /var/lib/opencode-dispatch /work
USER dispatch
WORKDIR /work
EXPOSE 9464 3000
ENTRYPOINT ["tini", "--", "node", "/app/bin/opencode-dispatch.js"]
CMD ["worker", "--metrics-port", "9464"]
