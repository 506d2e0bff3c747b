# procos: build the release binary, then run it on a slim image with python3 for `python` endpoints.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked && strip target/release/procos

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /app procos
WORKDIR /app
COPY --from=build /src/target/release/procos /usr/local/bin/procos
COPY config ./config
COPY bpmn ./bpmn
COPY scripts ./scripts
# The order ledger example writes its receipts here (the `receipts` files endpoint's root).
COPY --chown=procos receipts ./receipts
USER procos
# tini forwards SIGTERM so procos can drain running tasks on `docker compose stop`.
ENTRYPOINT ["/usr/bin/tini", "--", "procos"]
CMD ["--config", "config/pde.yaml"]
