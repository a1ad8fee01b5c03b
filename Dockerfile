# One image for every part (service, trainer, runner, emulator); the install is the README's.
FROM python:3.11-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends make libegl1 libgl1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . .
# The same bootstrap as the README's quick start. On a GPU box, pass
# --build-arg TORCH_SPEC='torch==2.13.0' with the index of your CUDA build.
ARG TORCH_SPEC=torch==2.13.0
RUN make install VENV=/opt/venv TORCH_SPEC="${TORCH_SPEC}"
ENV PATH=/opt/venv/bin:$PATH MUJOCO_GL=egl
CMD ["dclaw", "--help"]
