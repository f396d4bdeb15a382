# syntax=docker/dockerfile:1
# One image for every role: `docker run eddy <role>` with role all (default), features, samples, trainer or serve.

# Build: native modules compile here, against the same Debian release and Node ABI as the runtime stage.
FROM node:20-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential python3 libssl-dev zlib1g-dev libzstd-dev liblz4-dev libsasl2-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# The confluent client is built from source (--build-from-source below), its bundled librdkafka as a shared library
# next to its binding, linked against the image's OpenSSL, SASL, zstd, lz4 and zlib.
ENV CKJS_LINKING=dynamic
COPY package.json package-lock.json .npmrc ./
# Scripts are skipped here because the package's `prepare` would compile sources not copied yet; the native modules
# are then built explicitly, in a layer that only changes with the lock file. onnxruntime-node ships its CPU binary.
RUN npm ci --no-audit --no-fund --ignore-scripts \
 && npm rebuild --foreground-scripts hnswlib-node \
 && (npm rebuild --foreground-scripts --build-from-source @confluentinc/kafka-javascript \
     && node -e "require('@confluentinc/kafka-javascript')" \
     || echo "optional @confluentinc/kafka-javascript did not build; KAFKA_CLIENT=confluent will be unavailable" >&2)
# The sources (.dockerignore keeps node_modules, dist, tests and deploy out).
COPY . .
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

# Runtime: the compiled app, production dependencies and the shared libraries the native modules load.
FROM node:20-bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 libsasl2-2 libzstd1 liblz4-1 zlib1g \
 && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production
# One V8 thread for garbage collection instead of four: the pods are limited to one or two cores, which the serving,
# scoring and samples threads already keep busy, and collector threads competing with them set the latency tail (the
# serve bench on 2 cores: p99 at 1,500/s median 24 ms over nine runs, against 45.5 ms with four, run for run).
ENV NODE_OPTIONS=--v8-pool-size=1
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/bin ./bin
# The dashboard's page, script and styles are read at runtime from the source tree.
COPY --from=build /app/connectors/dashboard/static ./connectors/dashboard/static
# The embedded default (`eddy all`) snapshots to EDDY_DATA_DIR=.eddy; everything else in /app stays root-owned.
RUN mkdir -p /app/.eddy && chown node:node /app/.eddy
USER node
EXPOSE 8080
ENTRYPOINT ["node", "bin/eddy.js"]
CMD ["all"]
