# Multi-stage build of every command in cmd/ (worker, enqueue, cpsim, …)
# into one small image; docker-compose.yml runs each from it.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static binaries: the runtime image has no libc to match.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/...

# Alpine for busybox's wget, which the compose health checks use.
FROM alpine:3.20
RUN addgroup -S app && adduser -S -G app app
COPY --from=build /out/ /usr/local/bin/
USER app
EXPOSE 8080
ENTRYPOINT []
CMD ["worker"]
