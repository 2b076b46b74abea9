# deploykit on the CPU: ONNX Runtime + OpenVINO (+ NNCF), ready to `deploykit bench`.
#
#   docker build -f docker/cpu.Dockerfile -t deploykit:cpu .          # from the repository root
#   docker run --rm -v "$PWD/models:/work/models" -v "$PWD/reports:/work/reports" deploykit:cpu \
#       bench resnet50 -t ort,openvino --precision fp32
#
# Build context = the repository root; docker/cpu.Dockerfile.dockerignore keeps .venv, models/ and reports/ out.
FROM python:3.11-slim

ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
# CPU-only torch wheels: no CUDA libraries in this image
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DEPLOYKIT_MODELS=/work/models \
    DEPLOYKIT_REPORTS=/work/reports

WORKDIR /opt/deploykit
COPY pyproject.toml README.md ./
COPY deploykit ./deploykit
RUN pip install --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" \
 && pip install ".[openvino,slurm]" \
 && deploykit --version \
 && deploykit targets

# artifacts and reports live on the host (mount them); compiled OpenVINO blobs go to models/.cache/openvino
RUN mkdir -p /work/models /work/reports
WORKDIR /work
VOLUME ["/work/models", "/work/reports"]

ENTRYPOINT ["deploykit"]
CMD ["targets"]
