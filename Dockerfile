# Ferry's container image: `ferry` built on Debian 12, shipped on debian:12-slim with only its runtime libraries.
# No image is built or published from these machines (no container engine runs here): see docs/operations.md.
#   docker build -t registry.example.com/ferry:0.1.0 .

FROM debian:12 AS build
WORKDIR /src
# Dependencies first, so the layer is reused while only sources change.
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN bash scripts/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DFERRY_TESTS=OFF \
 && cmake --build build --target ferry -j "$(nproc)" \
 && strip build/operator/ferry

FROM debian:12-slim
# The shared libraries `ferry` links against (Boost.JSON/URL, yaml-cpp, spdlog, fmt, OpenSSL,
# prometheus-cpp core) and the system CA bundle for verifying registries' certificates.
ARG RUNTIME_PACKAGES="ca-certificates libboost-json1.81.0 libboost-url1.81.0 libyaml-cpp0.7 libspdlog1.10 libfmt9 libssl3 libprometheus-cpp-core1.0"
RUN apt-get update \
 && apt-get install -y --no-install-recommends $RUNTIME_PACKAGES \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/build/operator/ferry /usr/local/bin/ferry
# Fail the build, not the pod, when a runtime library is missing.
RUN ! ldd /usr/local/bin/ferry | grep "not found"
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/ferry"]
CMD ["operator"]
