# deploykit on NVIDIA GPUs: TensorRT (NGC TensorRT container), onnxruntime-gpu, PyTorch with CUDA, NVML energy.
#
#   docker build -f docker/gpu.Dockerfile -t deploykit:gpu .          # from the repository root
#   docker run --rm --gpus all -v "$PWD/models:/work/models" -v "$PWD/reports:/work/reports" deploykit:gpu \
#       bench resnet50 -t trt,ort-cuda,torch --device cuda --precision fp32 --min-time 15
#
# The base image brings CUDA, cuDNN and TensorRT (its Python bindings included); pick the tag that matches
# your driver (NGC support matrix). The NVIDIA Container Toolkit (`--gpus all`) mounts the driver and NVML.
ARG TRT_TAG=25.01
FROM nvcr.io/nvidia/tensorrt:${TRT_TAG}-py3

ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
# a CUDA build of torch (it bundles its own CUDA runtime, so it need not match the base image's CUDA, but the
# host driver must support it: cu130 wheels need a CUDA 13 driver (>= 580); on older drivers pass a cu12x index)
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu130
# onnxruntime-gpu built for the CUDA major version of the base image
ARG ORT_GPU=onnxruntime-gpu

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DEPLOYKIT_MODELS=/work/models \
    DEPLOYKIT_REPORTS=/work/reports \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# a virtual environment that still sees the base image's TensorRT Python package (system site-packages),
# so `deploykit[trt]` is satisfied by NVIDIA's build instead of a second copy from PyPI
RUN python3 -m venv --system-site-packages /opt/venv

WORKDIR /opt/deploykit
COPY pyproject.toml README.md ./
COPY deploykit ./deploykit
# onnxruntime (CPU) and onnxruntime-gpu provide the same module: install deploykit, then swap the CPU build out
RUN pip install --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" \
 && pip install ".[trt,nvidia,slurm]" \
 && pip uninstall -y onnxruntime \
 && pip install "${ORT_GPU}" \
 && deploykit --version \
 && python -c "import tensorrt, pynvml; print('tensorrt', tensorrt.__version__)"

RUN mkdir -p /work/models /work/reports
WORKDIR /work
VOLUME ["/work/models", "/work/reports"]

ENTRYPOINT ["deploykit"]
CMD ["targets"]
