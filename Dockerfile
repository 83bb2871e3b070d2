# vipsgate container image.
#
#   docker build -t vipsgate .
#   docker run --rm -p 8080:8080 --read-only --tmpfs /tmp \
#     -e IMGPROXY_KEY=... -e IMGPROXY_SALT=... vipsgate
#
# BASE is any Debian-like image with python3 (3.11+), its venv module, ca-certificates
# and groupadd/useradd: python:3.12-slim by default, or one made from Debian's own
# packages (`make image-check` builds it with mmdebstrap). libvips comes from the
# `pyvips[binary]` wheel, so no apt is needed. Every Python dependency is pinned, with
# hashes, in requirements.lock (`make lock` regenerates it from pyproject.toml), the gcs
# and azure extras included: the image reads gs:// and abs:// sources and keeps its
# shared cache there with the pod's identity (GKE, AKS workload identity).
ARG BASE=python:3.12-slim

############################################################################
# Build stage: install the locked dependencies, then the project, into /opt/venv.
############################################################################
FROM ${BASE} AS build

ENV PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

# .dockerignore is an allowlist: only requirements.lock, pyproject.toml, README.md,
# LICENSE and proxy/ reach the build. The dependencies come first, in their own layer,
# so changing the code does not download them again.
#
# A network that inspects TLS needs its CA certificates for pip: pass them as the
# optional build secret `pip-ca` (`--secret id=pip-ca,src=/etc/ssl/certs/ca-certificates.crt`);
# they are used for this download only and never stored in the image.
COPY requirements.lock ./
RUN --mount=type=secret,id=pip-ca \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
    && python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --require-hashes --no-deps -r requirements.lock

COPY pyproject.toml README.md ./
COPY proxy/ proxy/
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps --no-build-isolation . \
    && /opt/venv/bin/pip uninstall --yes setuptools \
    && /opt/venv/bin/python -c "import pyvips; print('libvips', pyvips.version(0), pyvips.version(1), pyvips.version(2))"

############################################################################
# Runtime stage: non-root, read-only-root-filesystem friendly.
############################################################################
FROM ${BASE} AS runtime

LABEL org.opencontainers.image.title="vipsgate" \
      org.opencontainers.image.description="Fast, imgproxy-compatible image proxy: aiohttp + libvips" \
      org.opencontainers.image.licenses="Apache-2.0"

# Only /tmp is ever written (libvips temp files for very large images), so the
# container runs with --read-only / readOnlyRootFilesystem plus a /tmp tmpfs.
#
# MALLOC_ARENA_MAX=2 caps glibc malloc arenas: libvips allocates from many
# threads and the default (8 x cores) arenas fragment badly, so RSS keeps
# growing under load. Alternative: jemalloc. Add
#   RUN apt-get update && apt-get install -y --no-install-recommends libjemalloc2=<version> \
#       && rm -rf /var/lib/apt/lists/*
#   ENV LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
# (path is .../aarch64-linux-gnu/... on arm64) and drop MALLOC_ARENA_MAX.
#
# VIPS_CONCURRENCY=1: one libvips thread per image. vipsgate parallelises
# across requests (IMGPROXY_WORKERS), which scales better than threads per
# image and keeps per-request memory predictable.
#
# IMGPROXY_BIND: listen on every interface, port 8080. Change the port with
# IMGPROXY_BIND or VIPSGATE_BIND (which wins), not with `serve --port`: the health
# check reads the same settings (`vipsgate health`).
ENV PATH="/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    HOME=/tmp \
    TMPDIR=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MALLOC_ARENA_MAX=2 \
    VIPS_CONCURRENCY=1 \
    IMGPROXY_BIND=0.0.0.0:8080

RUN groupadd --system --gid 10001 vipsgate \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /tmp --shell /usr/sbin/nologin vipsgate

COPY --from=build /opt/venv /opt/venv

# Numeric UID so Kubernetes can verify runAsNonRoot without a runAsUser.
USER 10001:10001

EXPOSE 8080

# `vipsgate health` asks this container's own server for /health, on the port and path
# prefix its settings give (no curl needed).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["vipsgate", "health"]

ENTRYPOINT ["vipsgate"]
CMD ["serve"]
