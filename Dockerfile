# One image for the API, the worker, the migration and the first run (docker-compose.yml builds it
# once, as recsys:latest).
FROM python:3.11-slim
WORKDIR /app
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
# PyTorch from its CPU wheel index first: the default index serves a CUDA build of several GB that
# this CPU-only service never uses. The project's install below then finds torch satisfied.
# The specifier is pyproject.toml's (tests/test_deployment.py keeps them equal).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install --index-url "$TORCH_INDEX_URL" "torch>=2.5,<2.14"
COPY pyproject.toml README.md alembic.ini ./
COPY recsys recsys
COPY api api
COPY migrations migrations
COPY deploy deploy
RUN pip install -e .
RUN useradd --system recsys && mkdir -p /data && chown recsys /data
USER recsys
ENV RECSYS_DATA_DIR=/data
EXPOSE 8000
CMD ["recsys", "serve", "--host", "0.0.0.0", "--port", "8000"]
