# One image for the API, the worker and the migration job (docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md alembic.ini ./
COPY recsys recsys
COPY api api
COPY migrations migrations
# Point TORCH_INDEX_URL at PyTorch's CPU wheel index to keep the image small; the default index
# serves a multi-GB CUDA build, which works too.
ARG TORCH_INDEX_URL=""
RUN if [ -n "$TORCH_INDEX_URL" ]; then pip install --index-url "$TORCH_INDEX_URL" "torch>=2.5,<2.14"; fi \
    && pip install -e .
RUN useradd --system recsys && mkdir -p /data && chown recsys /data
USER recsys
ENV RECSYS_DATA_DIR=/data
CMD ["recsys", "serve", "--host", "0.0.0.0", "--port", "8000"]
