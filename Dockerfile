# The ecopark image: one image, several commands (collect, worker, gateway, wall, simulate).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY park park
COPY rules rules
COPY ingest ingest
COPY streams streams
COPY store store
COPY dashboards dashboards
COPY ecopark ecopark
COPY config config
RUN pip install --no-cache-dir .
ENTRYPOINT ["ecopark"]
CMD ["--help"]
