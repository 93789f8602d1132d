# One image for the four services; the command picks the service (python -m services.<name>).
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml ./
COPY shared ./shared
COPY services ./services
COPY mptf_cli ./mptf_cli
RUN pip install --no-cache-dir . && python -m compileall -q shared services mptf_cli
USER 10001
ENV MPTF_HTTP_HOST=0.0.0.0
