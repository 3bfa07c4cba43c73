# ClickHouse server with encode_text() and encode_image() (plugins/laion_ingest/clip_udf.py): the
# official image plus a Python environment that runs OpenAI's CLIP ViT-B/32 on ONNX Runtime.
# Built by docker-compose.yaml from the repo root (context: .), tagged laion-ingest-clickhouse:26.9.
#
# The model is downloaded at build time (about 600 MB, the ONNX exports of the Hugging Face
# repositories Qdrant/clip-ViT-B-32-text and -vision). Without internet at build time, put the two
# directories in docker/clip-model/{text,vision}/ and build with --build-arg CLIP_MODEL=local.
FROM clickhouse/clickhouse-server:26.9

ARG CLIP_MODEL=hub
COPY docker/clickhouse-requirements.txt /opt/laion/requirements.txt
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/laion/venv \
    && /opt/laion/venv/bin/pip install --no-cache-dir -r /opt/laion/requirements.txt

COPY plugins/laion_ingest /opt/laion/plugins/laion_ingest
COPY include /opt/laion/include
# docker/clip-model/ if it exists (the udf XML only makes the pattern match something)
COPY docker/clickhouse-udf.xml docker/clip-model* /opt/laion/clip-local/
ENV LAION_CLIP_MODEL_DIR=/opt/laion/clip
RUN if [ "$CLIP_MODEL" = local ]; then mv /opt/laion/clip-local /opt/laion/clip; else \
        /opt/laion/venv/bin/python -c "from huggingface_hub import snapshot_download as get; \
get('Qdrant/clip-ViT-B-32-text', local_dir='/opt/laion/clip/text'); \
get('Qdrant/clip-ViT-B-32-vision', local_dir='/opt/laion/clip/vision')"; fi \
    && cd /opt/laion/plugins && /opt/laion/venv/bin/python -m laion_ingest clip-udf /opt/laion/user_scripts \
    && chmod -R a+rX /opt/laion
COPY docker/clickhouse-udf.xml /etc/clickhouse-server/config.d/clip-udf.xml
