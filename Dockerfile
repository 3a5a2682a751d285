FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY coachgraph ./coachgraph
RUN pip install --no-cache-dir .
# run unprivileged; with DATABASE_URL set the embedded server is not used
RUN useradd --create-home coachgraph
USER coachgraph
EXPOSE 8000
CMD ["coachgraph", "serve", "--host", "0.0.0.0", "--port", "8000"]
