# syntax=docker/dockerfile:1
# One image for both the operator and the sidecar/relay: the entrypoint is the `peertunnel` CLI
# (`peertunnel operator ...`, `peertunnel node --config ...`), bundled by esbuild into
# dist/bundle/ (subcommands, the operator's Kubernetes client among them, in chunks loaded when
# they run). Its first line runs Node with the flags of sidecar/node/flags.ts. Checked by
# test/integration/dockerfile.test.ts; the built image's layers by test/integration/image.test.ts.

# --- build: all dependencies (TypeScript, the pinned Node), compile to dist/ -----------------------
FROM node:24-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY bin/ bin/
COPY contracts/ contracts/
COPY sidecar/ sidecar/
COPY operator/ operator/
COPY crds/ crds/
RUN npm run build

# --- runtime: the bundle alone, no npm at run time, nothing written outside /tmp --------------------
FROM node:24-slim
ENV NODE_ENV=production \
    HOME=/tmp
WORKDIR /app
# The whole application: the bundle, its compile cache and, in dist/bundle/node_modules/, the one
# native addon it keeps external (sodium-native, this architecture's binary only, and its loader).
COPY --from=build /src/dist/bundle/ dist/bundle/
# Non-root, numeric (so runAsNonRoot can verify it); the chart runs it with a read-only root filesystem.
USER 65532:65532
# `#!/usr/bin/env -S node <flags>`: the flags are chosen once, in sidecar/node/flags.ts.
ENTRYPOINT ["/app/dist/bundle/peertunnel.mjs"]
CMD ["--help"]
