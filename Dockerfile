# syntax=docker/dockerfile:1
# One image for both components: the webhook, the NRI plugin, nono and the
# profile catalog. The node DaemonSet's init container runs
# `kubefence-nri install` to copy nono and the profiles to the host.
#
# Not built in this repository's CI: the development machines have no
# container engine and no registry (see README, "What is not tested here").

ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# The pinned sandbox CLI (its own lock file; no default features).
RUN cargo install --locked nono-cli --version 0.81.0 --no-default-features --root /out
COPY Cargo.toml Cargo.lock ./
COPY shared shared
COPY webhook webhook
COPY nri-plugin nri-plugin
RUN cargo build --release --locked -p kubefence-webhook -p kubefence-nri \
 && install -D -m 0755 target/release/kubefence-webhook /out/bin/kubefence-webhook \
 && install -D -m 0755 target/release/kubefence-nri /out/bin/kubefence-nri

# glibc, libgcc and nothing else: what nono and the two binaries link.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/bin/kubefence-webhook /out/bin/kubefence-nri /usr/local/bin/
COPY --from=build /out/bin/nono /opt/kubefence/nono
COPY profiles/ /opt/kubefence/profiles/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/kubefence-webhook"]
