FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin bridge \
    && mkdir -p /data /etc/partnero-bridge && chown bridge /data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bridge ./bridge
COPY providers ./providers
RUN pip install --no-compile .

# the example as default config: it carries no secret, so until its variables are set (or your own
# config is mounted here) every endpoint refuses every webhook rather than accept one it cannot verify
COPY config.example.yaml /etc/partnero-bridge/config.yaml
ENV BRIDGE_STORE=sqlite:////data/bridge.db
USER bridge
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"
ENTRYPOINT ["partnero-bridge"]
CMD ["serve", "--config", "/etc/partnero-bridge/config.yaml"]
