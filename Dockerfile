# syntax=docker/dockerfile:1
# avatar-gateway as a container: built in a Rust image, run from debian:trixie-slim as an unprivileged user with
# the store on a volume.
#
#   docker build -t avatar-gateway .
#   docker run -d --name avatar-gateway -v avatar-gateway:/var/lib/avatar-gateway \
#     -v /etc/avatar-gateway/config.toml:/etc/avatar-gateway/config.toml:ro \
#     -v /etc/avatar-gateway/secret:/run/secrets/avatar-gateway-secret:ro avatar-gateway
#
# The secret file must be readable by UID 10001 (chown it, or use compose/swarm secrets, which mount it so).
#
# Any config key can also come from the environment (-e AVATAR_GATEWAY_SERVER_ADDRESS=prosody:5347).
# (Written without a container runtime at hand: scripts/package-check covers the .deb, nothing builds this yet.)

FROM rust:1.95-trixie AS build
WORKDIR /src
# The manifest and lock first, so the dependencies are a cached layer of their own.
COPY Cargo.toml Cargo.lock ./
COPY benches benches
COPY examples examples
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked --bin avatar-gateway && rm -rf src
COPY src src
# cargo compares mtimes: make sure the real sources are newer than the placeholder build.
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin avatar-gateway \
    && strip target/release/avatar-gateway

FROM debian:trixie-slim
# A fixed UID, so the volume's owner is the same in every container made from this image.
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/avatar-gateway --shell /usr/sbin/nologin \
        avatar-gateway \
    && install -d -o avatar-gateway -g avatar-gateway -m 0700 /var/lib/avatar-gateway \
    && install -d -m 0755 /etc/avatar-gateway
COPY --from=build /src/target/release/avatar-gateway /usr/bin/avatar-gateway
# The same example config the Debian package installs; its store path is the volume below.
COPY avatar-gateway.example.toml /etc/avatar-gateway/config.toml
# In its own network namespace the ops endpoint must listen beyond loopback to be scraped at all; publish the port
# to the scraper's network only.
ENV AVATAR_GATEWAY_CONFIG=/etc/avatar-gateway/config.toml \
    AVATAR_GATEWAY_SERVER_SECRET_FILE=/run/secrets/avatar-gateway-secret \
    AVATAR_GATEWAY_OPS_LISTEN=0.0.0.0:9877
VOLUME /var/lib/avatar-gateway
EXPOSE 9877
USER avatar-gateway:avatar-gateway
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9877 && printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
# docker stop sends SIGTERM: the gateway drains running image jobs ([ops] drain_secs) and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/avatar-gateway"]
# JSON lines for `docker logs` collectors; `docker run … avatar-gateway run` gives human lines.
CMD ["--log-format", "json", "run"]
