# syntax=docker/dockerfile:1
# The recommender service of sessions 14-15 on CPU: `python -m harness serve` in a container.
#
# First write a bundle (the pipeline's serving-bundle stage): .venv/bin/python -m harness pipeline
# Then, from the repository's root, either mount the bundle:
#
#   docker build -t recsys-serve .
#   docker run --rm -p 127.0.0.1:8000:8000 -v "$PWD/runs/bundles/ml-100k-laptop:/bundle:ro" recsys-serve
#
# or copy it into the image (the image then serves it with no mount):
#
#   docker build -t recsys-serve --build-arg BUNDLE=runs/bundles/ml-100k-laptop .
#   docker run --rm -p 127.0.0.1:8000:8000 recsys-serve
#
#   curl -s localhost:8000/recommend -H 'content-type: application/json' -d '{"user_id": 1, "k": 5}'
#
# (BuildKit, Docker's default builder since version 23, runs the `RUN --mount` below; with an older
# Docker, prefix the build with DOCKER_BUILDKIT=1.)
# Options after the image name replace the command's defaults, e.g.
#   docker run ... recsys-serve python -m harness serve --bundle /bundle --host 0.0.0.0 --batching off
# The server listens on 0.0.0.0 *inside* the container (reached through the published port only);
# `-p 127.0.0.1:8000:8000` keeps that port on the host's loopback interface.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OMP_NUM_THREADS=1 \
    PYTHONPATH=/app \
    HARNESS_ROOT=/app \
    HARNESS_UPSTREAM=solutions

# libgomp: the OpenMP runtime of torch and FAISS
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/*

# Dependencies before the code, so that this layer is rebuilt only when they change: torch's CPU-only
# wheel (no CUDA libraries: a ~200 MB wheel instead of gigabytes), FAISS for CPU, the web stack
# (uvicorn[standard]: uvloop and httptools), and what the harness's serving path imports.
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0" \
 && pip install "numpy>=1.26" "pandas>=2.2" "pyarrow>=15" "pyyaml>=6" "tqdm>=4.66" "requests>=2.31" \
        "faiss-cpu>=1.8" "fastapi>=0.110" "uvicorn[standard]>=0.29" "httpx>=0.27"

WORKDIR /app
# The harness and the notebooks the models are rebuilt from (reference solutions; your own notebooks
# in sessions/ serve with --impl sessions). Nothing else of the repository: see .dockerignore.
COPY pyproject.toml README.md ./
COPY harness ./harness
COPY solutions ./solutions
COPY sessions ./sessions

# The bundle: copied from the build context when BUNDLE names its folder, else mounted at run time.
ARG BUNDLE=""
RUN --mount=type=bind,target=/context \
    if [ -n "$BUNDLE" ]; then cp -r "/context/$BUNDLE" /bundle; else mkdir -p /bundle; fi \
 && chmod -R a+rX /bundle

RUN useradd --create-home --uid 10001 serve
USER serve

EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD python -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2).status != 200)"

# Exec form: python is PID 1 and receives `docker stop`'s SIGTERM itself (uvicorn shuts down gracefully).
CMD ["python", "-m", "harness", "serve", "--bundle", "/bundle", "--host", "0.0.0.0", "--port", "8000", \
     "--impl", "solutions", "--batching", "auto", "--log-level", "info"]
