# syntax=docker/dockerfile:1
#
# Image of nri-netattach for the DaemonSet in deploy/kubernetes.
#   docker build --build-arg VERSION="$(git describe --tags --always --dirty)" -t nri-netattach:dev .
# Multi-arch: docker buildx build --platform linux/amd64,linux/arm64 ...
# (the binary is cross-compiled on the build machine's platform).

ARG GO_IMAGE=golang:1.26
# Static, no shell, no libc. Not the :nonroot variant: the plugin needs uid 0.
ARG BASE_IMAGE=gcr.io/distroless/static-debian12

FROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS build
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
WORKDIR /src
# Modules first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/ ./cmd/nri-netattach ./cmd/nri-netattach-wait

FROM ${BASE_IMAGE}
ARG VERSION=dev
LABEL org.opencontainers.image.title="nri-netattach" \
      org.opencontainers.image.description="NRI plugin for containerd that attaches secondary networks (CNI) to pods" \
      org.opencontainers.image.source="https://github.com/nri-netattach/nri-netattach" \
      org.opencontainers.image.version="${VERSION}"
# nri-netattach-wait beside it is the wait-attached hook: the daemon copies
# it to its state directory on the host, where runc runs it.
COPY --from=build /out/nri-netattach /out/nri-netattach-wait /
# Root: it creates links and enters pod network namespaces, and so do the CNI
# plugins it executes from the node's /opt/cni/bin (mounted by the DaemonSet).
USER 0:0
ENTRYPOINT ["/nri-netattach", "run"]
