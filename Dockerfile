# tessera in a container: Debian 12, built with scripts/build.sh (which installs the Debian
# packages and assembles the ONNX Runtime SDK), installed with cmake --install into /opt/tessera,
# then copied into a slim Debian 12 image with the runtime libraries only.
#
#   docker build -t tessera .
#   docker run --rm tessera --version
#   docker run --rm -v "$PWD/work:/work" tessera infer /work/tiles/grid_0.05_51.55 -o /work/out
#
# `tessera import` also needs PyTorch (apt-get install python3-torch in an image built on this
# one). This recipe is not built by the test suite.

FROM debian:12 AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates openssl \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN bash scripts/build.sh -DTESSERA_BUILD_TESTS=OFF \
 && cmake --install build --prefix /opt/tessera

FROM debian:12-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libdnnl2 libfmt9 libgomp1 libhwloc15 libonnx1 libopenmpi3 libprotobuf32 libssl3 \
      libgdal32 libblosc1 \
      python3 python3-numpy \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/tessera /opt/tessera
ENV PATH=/opt/tessera/bin:$PATH
ENTRYPOINT ["tessera"]
