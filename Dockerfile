FROM python:3.11-slim
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
# CPU wheels by default; docker-compose.gpu.yml passes a CUDA index instead.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY flows flows
COPY operators operators
COPY models models
COPY infra infra
RUN pip install --no-cache-dir --extra-index-url "${TORCH_INDEX}" -e .
RUN useradd --uid 10001 --create-home fraudstream \
    && mkdir -p /var/fraudstream/recovery /var/fraudstream/models \
    && chown -R fraudstream /var/fraudstream
USER fraudstream
ENV METRICS_PORT=9108
EXPOSE 9108 2101
ENTRYPOINT ["fraudstream"]
CMD ["run", "--processes", "2"]
