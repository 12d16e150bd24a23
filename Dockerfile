# baton: zero-downtime hot-restart HTTP server for Node.js.
#
#   docker build -t baton .
#   docker run --rm -p 8080:8080 -v "$PWD/config:/etc/baton:ro" -e ENV_FILE=/etc/baton/.env baton
#   docker kill -s HUP <container>          # rolling reload (re-reads the mounted .env)
#   docker stop -t 40 <container>           # ordered shutdown; -t must exceed DRAIN_TIMEOUT_MS
#
# See docs/deployment.md ("Docker") for bringing your own app into the image.

ARG NODE_VERSION=20

# ---- build: dev dependencies + TypeScript compile -------------------------
FROM node:${NODE_VERSION}-slim AS build
WORKDIR /app
# Manifests first, so the dependency layer is cached until they change.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npm run build

# ---- runtime: production dependencies + compiled output only ---------------
FROM node:${NODE_VERSION}-slim AS runtime
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080 \
    HEALTH_PATH=/healthz \
    CONTROL_SOCKET=/run/baton/baton.sock \
    PID_FILE=/run/baton/baton.pid \
    APP_DIR=/app
# (Docker's exec form sets no $PWD: APP_DIR names the app's directory.)
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY deploy/healthcheck.mjs ./deploy/healthcheck.mjs
# Code and dependencies stay owned by root (read-only to the server); the
# non-root `node` user (uid 1000, shipped with the image) only needs a place
# for the control socket and PID file.
RUN mkdir -p /run/baton /etc/baton && chown node:node /run/baton
USER node

EXPOSE 8080
# The primary (PID 1, exec-form CMD below) turns SIGTERM into an ordered
# shutdown: stop accepting, drain in-flight requests, exit 0. Workers ignore
# terminal signals and are drained by the primary. `docker stop` sends this,
# then SIGKILL after 10 s by default: use `docker stop -t 40` or compose's
# `stop_grace_period: 40s`, above DRAIN_TIMEOUT_MS (+ SHUTDOWN_DELAY_MS).
STOPSIGNAL SIGTERM
# Node itself is the probe: slim/alpine images have no curl. It reads PORT and
# HEALTH_PATH from the container environment (not from baton's .env).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "deploy/healthcheck.mjs"]
# Exec form: node is PID 1 and receives SIGTERM/SIGHUP itself (a shell form
# would put /bin/sh in between, which does not forward them).
CMD ["node", "dist/primary.js"]
