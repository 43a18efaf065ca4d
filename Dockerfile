FROM python:3.11-slim
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends build-essential && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY flows flows
COPY operators operators
COPY models models
COPY infra infra
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu -e .
ENV METRICS_PORT=9108
ENTRYPOINT ["fraudstream"]
CMD ["run", "--processes", "2"]
