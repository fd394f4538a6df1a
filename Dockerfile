# drplane's service images for those who build with Docker (BuildKit): one
# image per service, one target each, with the same files, user, entrypoint
# and labels as `make images` (cmd/drimage; a test keeps the two in step).
#
#   docker build --target coordinator -t ghcr.io/drplane/coordinator:0.1.0-dev \
#     --build-arg VERSION=0.1.0-dev --build-arg REVISION=$(git rev-parse HEAD) \
#     --build-arg CREATED=$(date -u -d @$(git log -1 --format=%ct) +%Y-%m-%dT%H:%M:%SZ) .
#
# Targets: coordinator, haagent, reship, collector.
ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
ARG VERSION=0.1.0-dev
# The binaries as make images builds them: static, -trimpath, version stamped.
RUN make static VERSION=${VERSION} STATIC_DIR=/out

FROM scratch AS base
ARG VERSION=0.1.0-dev
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
COPY deploy/image/passwd deploy/image/group /etc/
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV PATH=/usr/local/bin
WORKDIR /
USER 65532:65532
LABEL org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="https://github.com/drplane/drplane" \
      org.opencontainers.image.url="https://github.com/drplane/drplane"

FROM base AS coordinator
COPY --from=build /out/coordinator /usr/local/bin/coordinator
LABEL org.opencontainers.image.title="coordinator" \
      org.opencontainers.image.description="drplane coordinator: topology, shard map and failover API, one global leader applying mutations"
ENTRYPOINT ["/usr/local/bin/coordinator"]

FROM base AS haagent
COPY --from=build /out/haagent /usr/local/bin/haagent
LABEL org.opencontainers.image.title="haagent" \
      org.opencontainers.image.description="drplane HA agent: in-DC MariaDB failure analysis, fencing and failover"
ENTRYPOINT ["/usr/local/bin/haagent"]

FROM base AS reship
COPY --from=build /out/reship /usr/local/bin/reship
LABEL org.opencontainers.image.title="reship" \
      org.opencontainers.image.description="drplane reship: binlog capture of a DC's master, shipped to NATS JetStream"
ENTRYPOINT ["/usr/local/bin/reship"]

FROM base AS collector
COPY --from=build /out/collector /usr/local/bin/collector
LABEL org.opencontainers.image.title="collector" \
      org.opencontainers.image.description="drplane collector: exactly-once apply of other DCs' changes to the DC's master"
ENTRYPOINT ["/usr/local/bin/collector"]
