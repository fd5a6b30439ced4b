# One image for every kfpd subcommand (serve, agent, scheduler, driver, launcher):
# a statically linked kfpd on an empty base, run as the unprivileged user 65532.
# The binary must be static: workflow pods copy it into the user's image
# (`kfpd launcher --copy`), whatever libc that image has.
#
#   docker build -t kfpd .                       # builds kfpd in the build stage
#   scripts/build-image                          # here: buildah, no daemon, the
#                                                # binary built by the local cargo
#
# glibc with crt-static rather than musl: the toolchain image has the gnu target
# only, and glibc ≥ 2.34 carries the DNS and files resolvers kfpd needs inside
# libc, so name lookups work without NSS modules (checked by scripts/build-image).

ARG RUST_IMAGE=docker.io/library/rust:1.95-bookworm
# `build`: compile in the build stage; `prebuilt`: take image/out/ from the context.
ARG KFPD_BINARY=build

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked -p kfpd --target x86_64-unknown-linux-gnu \
 && install -D -m 0755 target/x86_64-unknown-linux-gnu/release/kfpd /out/usr/local/bin/kfpd \
 && install -D -m 0644 /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/ca-certificates.crt

FROM scratch AS prebuilt
COPY image/out/ /out/

FROM ${KFPD_BINARY} AS binary

FROM scratch
COPY --from=binary /out/ /
COPY image/rootfs/ /
COPY --chown=65532:65532 image/data-README /var/lib/kfpd/README
ENV KFPD_HTTP_ADDR=0.0.0.0:8888 \
    KFPD_GRPC_ADDR=0.0.0.0:8887 \
    KFPD_DATA_DIR=/var/lib/kfpd \
    TMPDIR=/var/lib/kfpd \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
WORKDIR /var/lib/kfpd
USER 65532:65532
EXPOSE 8888 8887
ENTRYPOINT ["/usr/local/bin/kfpd"]
CMD ["serve"]
