# streamwise's container image: docs/deploy.md (build, run, settings by environment).
#
#   docker build -t streamwise:latest .
#   docker run -p 8080:8080 -p 8081:8081 -v "$PWD/models:/mnt/models:ro" streamwise:latest
#
# The model repository is /mnt/models, where KServe's storage initializer puts a model.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# The package, with the extras EXTRAS names (none by default; never test or docs tools):
# the model-file runtimes (docs/runtimes.md), e.g.
#   docker build --build-arg EXTRAS=sklearn,xgboost -t streamwise:sklearn .
# LightGBM's wheel needs the system's OpenMP (libgomp1), which the slim image lacks.
ARG EXTRAS=""
WORKDIR /tmp/streamwise-build
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
RUN case ",${EXTRAS}," in *,lightgbm,*) \
        apt-get update && apt-get install -y --no-install-recommends libgomp1 \
        && rm -rf /var/lib/apt/lists/* ;; \
    esac \
    && pip install ".${EXTRAS:+[$EXTRAS]}" \
    && cd / && rm -rf /tmp/streamwise-build

# A user of its own, by number, so that Kubernetes' runAsNonRoot can check it.
RUN useradd --uid 1000 --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin streamwise \
    && mkdir -p /mnt/models
USER 1000:1000
WORKDIR /mnt/models

# A container must listen on every interface (the server's own default is 127.0.0.1).
# STREAMWISE_ wins over MLSERVER_: set STREAMWISE_HOST to change it. Ports stay the
# defaults (8080 REST, 8081 gRPC) unless the environment says otherwise
# (MLSERVER_HTTP_PORT / STREAMWISE_HTTP_PORT, ...), so an orchestrator's MLSERVER_* apply.
ENV STREAMWISE_HOST=0.0.0.0
EXPOSE 8080 8081 8082

# Ready: at least one model loaded (docs/running.md, "Readiness"). slim has no curl.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('STREAMWISE_HTTP_PORT') or os.environ.get('MLSERVER_HTTP_PORT') or '8080'; urllib.request.urlopen(f'http://127.0.0.1:{port}/v2/health/ready', timeout=4)"]

# KServe's and Seldon's `args` replace CMD (another model folder); ENTRYPOINT stays.
ENTRYPOINT ["streamwise"]
CMD ["serve", "/mnt/models"]
