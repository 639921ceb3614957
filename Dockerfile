# ecr-auth-proxy container image, under the tag the docs and docker-compose.yml use:
#
#   docker build -t ecr-auth-proxy:local .
#
# The classic builder (a docker CLI without buildx, or DOCKER_BUILDKIT=0) keeps the last image of
# each build stage, untagged (<none>); every stage is labelled ecr-auth-proxy.stage, so
#
#   docker image prune -f --filter label=ecr-auth-proxy.stage
#
# removes those and the image a rebuild replaced, and nothing in use or tagged.
#
# Base images are build arguments. BASE_IMAGE is the runtime (the final stage runs no command in
# it, so it needs nothing but node); BUILD_IMAGE must also have npm and /bin/sh, and reach the npm
# registry, or carry an offline npm cache. Without Docker Hub, scripts/build-base-image.sh makes
# both from this host's node; see docs/deployment.md:
#
#   docker build --build-arg BASE_IMAGE=ecr-auth-proxy-base:local \
#                --build-arg BUILD_IMAGE=ecr-auth-proxy-build:local -t ecr-auth-proxy:local .
#
# Inside the container the proxy listens on 0.0.0.0:5000, and so it refuses to start unless client
# authentication is configured (ECR_PROXY_HTPASSWD / --htpasswd) or the risk is accepted explicitly
# (ECR_PROXY_ALLOW_UNAUTHENTICATED=true). Keep such a container private by publishing the port on
# loopback only: `docker run -p 127.0.0.1:5000:5000 …` (docker-compose.yml does that).

ARG BASE_IMAGE=node:24-slim
ARG BUILD_IMAGE=${BASE_IMAGE}

# --- compile TypeScript -------------------------------------------------------------------------
FROM ${BUILD_IMAGE} AS build
LABEL ecr-auth-proxy.stage=build
WORKDIR /src
COPY package.json package-lock.json .npmrc ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# --- production dependencies only ---------------------------------------------------------------
FROM ${BUILD_IMAGE} AS deps
LABEL ecr-auth-proxy.stage=deps
WORKDIR /src
COPY package.json package-lock.json .npmrc ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

# --- runtime --------------------------------------------------------------------------------------
FROM ${BASE_IMAGE}
LABEL ecr-auth-proxy.stage=runtime
ENV NODE_ENV=production \
    HOME=/home/node \
    ECR_PROXY_HOST=0.0.0.0 \
    ECR_PROXY_PORT=5000
WORKDIR /app
# Root-owned and so read-only for the process; package.json gives dist/ its "type": "module".
COPY package.json ./
COPY --from=deps /src/node_modules ./node_modules
COPY --from=build /src/dist/src ./dist/src
# The official node images' unprivileged user; numeric so that runAsNonRoot can verify it.
USER 1000:1000
EXPOSE 5000
# No curl in slim images: node asks /healthz on the configured port, over HTTPS when the proxy
# serves TLS (ECR_PROXY_TLS_CERT; liveness only, so the certificate is not verified). A wildcard
# host means loopback.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "const e=process.env,h=(e.ECR_PROXY_HOST||'127.0.0.1').replace(/^\\[|\\]$/g,''),tls=!!e.ECR_PROXY_TLS_CERT;require(tls?'https':'http').get({host:h==='0.0.0.0'||h==='::'?'127.0.0.1':h,port:e.ECR_PROXY_PORT||5000,path:'/healthz',timeout:4000,rejectUnauthorized:false},r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1)).on('timeout',()=>process.exit(1))"]
# SIGTERM starts the graceful shutdown (shutdownGraceSeconds, default 30): give `docker stop -t`
# or the orchestrator's grace period a little more than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "dist/src/cli.js"]
