# Fluent Bit with the in_msgraph input plugin.
#   docker build -t in-msgraph .
#   docker run --rm -e MSGRAPH_TENANT_ID=... -e MSGRAPH_CLIENT_ID=... \
#     -v "$PWD/client-secret:/etc/fluent-bit/msgraph-client-secret:ro" \
#     -v msgraph-state:/var/lib/fluent-bit -p 2021:2021 in-msgraph
# Targets: the default (last) stage is the ready-to-run image; `--target
# plugin` builds a tiny image holding only the shared object, for a
# Kubernetes init container that copies it into the official image.
# docs/deploy.md has the details.

# Fluent Bit's official image is distroless Debian (glibc 2.41 in 5.1.1);
# built on bookworm (glibc 2.36), the plugin needs no newer glibc than that.
ARG GO_IMAGE=golang:1.26.8-bookworm
ARG FLUENT_BIT_IMAGE=fluent/fluent-bit:5.1.1
ARG BUSYBOX_IMAGE=busybox:1.37.0

FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY plugin/ plugin/
COPY internal/ internal/
# -trimpath and -buildvcs=false: the object depends on the sources alone,
# not on where or from which checkout it was built.
RUN CGO_ENABLED=1 go build -trimpath -buildvcs=false -buildmode=c-shared \
        -o /out/in_msgraph.so ./plugin \
    && rm /out/in_msgraph.h \
    && mkdir -p /out/state

# The shared object alone, for an init container (it has `cp`).
FROM ${BUSYBOX_IMAGE} AS plugin
COPY --from=build /out/in_msgraph.so /plugins/in_msgraph.so
CMD ["cp", "/plugins/in_msgraph.so", "/fluent-bit/plugins/in_msgraph.so"]

FROM ${FLUENT_BIT_IMAGE}
COPY --from=build /out/in_msgraph.so /fluent-bit/plugins/in_msgraph.so
COPY examples/container/fluent-bit.yaml /fluent-bit/etc/fluent-bit.yaml
# The distroless image has no shell to make directories: copy an empty one
# for the state files and the filesystem buffer.
COPY --from=build /out/state /var/lib/fluent-bit
VOLUME ["/var/lib/fluent-bit"]
# 2020: Fluent Bit's HTTP server (health, its own metrics); 2021: the
# plugin's Prometheus metrics (metrics_listen).
EXPOSE 2020 2021
ENTRYPOINT ["/fluent-bit/bin/fluent-bit"]
CMD ["-c", "/fluent-bit/etc/fluent-bit.yaml"]
