# Multi-stage build of every command in cmd/ (worker, enqueue, cpsim, …)
# into one small image; docker-compose.yml runs each from it.
#
# Base images. Alpine 3.20 left support in April 2026; 3.23 is supported
# until November 2027. PIN BOTH BY DIGEST for a production build: no
# digest is written here because none could be looked up when this was
# changed (no access to a container registry from the build machine), and
# an invented one would only fail the pull. Look them up with
#   docker buildx imagetools inspect alpine:3.23
#   docker buildx imagetools inspect golang:1.26-bookworm
# and build with
#   --build-arg ALPINE_IMAGE=alpine:3.23@sha256:<digest>
#   --build-arg GO_IMAGE=golang:1.26-bookworm@sha256:<digest>
# (or write the pinned references below).
ARG GO_IMAGE=golang:1.26-bookworm
ARG ALPINE_IMAGE=alpine:3.23

FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static binaries: the runtime image has no libc to match.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/...

# Alpine for busybox's wget, which the compose health checks use.
FROM ${ALPINE_IMAGE}
RUN addgroup -S app && adduser -S -G app app
COPY --from=build /out/ /usr/local/bin/
USER app
EXPOSE 8080
ENTRYPOINT []
CMD ["worker"]
