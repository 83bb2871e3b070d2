# syntax=docker/dockerfile:1
#
# vipsgate container image.
#
#   docker build -t vipsgate .
#   docker run --rm -p 8080:8080 --read-only --tmpfs /tmp \
#     -e IMGPROXY_KEY=... -e IMGPROXY_SALT=... vipsgate
#
# libvips comes from the `pyvips[binary]` wheel (pyvips-binary), so neither
# stage needs apt: the runtime image is python:3.12-slim plus one virtualenv.

############################################################################
# Build stage: install the project and its dependencies into /opt/venv.
############################################################################
FROM python:3.12-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

# .dockerignore is an allowlist: only pyproject.toml, README.md, LICENSE and
# proxy/ reach this COPY, so tests, charts and docs never bust the layer cache.
COPY . .

# The gcs and azure extras: gs:// and abs:// sources and shared-cache adapters (their
# credentials come from the pod's identity on GKE and AKS).
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir '.[gcs,azure]' \
    && /opt/venv/bin/python -c "import pyvips; print('libvips', pyvips.version(0), pyvips.version(1), pyvips.version(2))"

############################################################################
# Runtime stage: non-root, read-only-root-filesystem friendly.
############################################################################
FROM python:3.12-slim AS runtime

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
ENV PATH="/opt/venv/bin:${PATH}" \
    HOME=/tmp \
    TMPDIR=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MALLOC_ARENA_MAX=2 \
    VIPS_CONCURRENCY=1

RUN groupadd --system --gid 10001 vipsgate \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /tmp --shell /usr/sbin/nologin vipsgate

COPY --from=build /opt/venv /opt/venv

# Numeric UID so Kubernetes can verify runAsNonRoot without a runAsUser.
USER 10001:10001

EXPOSE 8080

# No curl in slim images: probe /health with the standard library.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=3)"]

ENTRYPOINT ["vipsgate"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
