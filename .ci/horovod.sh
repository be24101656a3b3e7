#!/usr/bin/env bash
# CI, second environment: TensorFlow 2.18.1 (CPU) + Horovod 0.28.1 built from source, then the
# Horovod tests (tests/training/test_horovod.py). Horovod 0.28.1 does not compile against
# TensorFlow >= 2.19, so this cannot be the main environment.
#
# Cache (reused between runs): ${TFSEG_CI_CACHE:-$HOME/.cache/tfseg-ci}
#   wheels/horovod-0.28.1-*.whl   built once (a few minutes on 2 cores), then only pip-installed
#   venv-tf2.18.1-hvd0.28.1/      the virtual environment
#
# Exit status: that of pytest. When the environment itself cannot be built (no compiler or
# cmake, no network, a failed build), it prints "HOROVOD ENVIRONMENT UNAVAILABLE: <reason>" and
# exits 0, or 1 when TFSEG_CI_REQUIRE_HOROVOD=1.
set -uo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=2
TF_VERSION=2.18.1
HVD_VERSION=0.28.1
CACHE="${TFSEG_CI_CACHE:-$HOME/.cache/tfseg-ci}"
WHEELS="$CACHE/wheels"
VENV="$CACHE/venv-tf$TF_VERSION-hvd$HVD_VERSION"
PYTHON_BIN="${PYTHON:-python3}"
start=$(date +%s)
mark=$start

elapsed() {  # print the time of the part that just finished
    local now
    now=$(date +%s)
    echo "[horovod ci] $1: $(( now - mark )) s (total $(( now - start )) s)"
    mark=$now
}

unavailable() {
    echo "=================================================================="
    echo "HOROVOD ENVIRONMENT UNAVAILABLE: $1"
    echo "The Horovod tests did not run (the main suite covers everything else)."
    echo "=================================================================="
    if [ "${TFSEG_CI_REQUIRE_HOROVOD:-0}" = "1" ]; then
        exit 1
    fi
    exit 0
}

mkdir -p "$WHEELS" || unavailable "cannot create the cache folder $CACHE"
wheel=$(ls "$WHEELS"/horovod-"$HVD_VERSION"-*.whl 2>/dev/null | head -n 1)
if [ -z "$wheel" ]; then
    for tool in cmake g++ make; do
        command -v "$tool" >/dev/null || unavailable "building Horovod needs '$tool', which is not installed"
    done
fi

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import tensorflow" >/dev/null 2>&1; then
    rm -rf "$VENV"
    "$PYTHON_BIN" -m venv "$VENV" || unavailable "cannot create a virtual environment with $PYTHON_BIN"
    "$VENV/bin/pip" install -q -U pip setuptools wheel cloudpickle psutil pyyaml packaging \
        || unavailable "pip cannot install the build tools (no network?)"
    "$VENV/bin/pip" install -q "tensorflow-cpu==$TF_VERSION" \
        || unavailable "pip cannot install tensorflow-cpu==$TF_VERSION (no network?)"
    elapsed "virtual environment with tensorflow-cpu $TF_VERSION"
else
    elapsed "virtual environment reused"
fi
PY="$VENV/bin/python"

if [ -z "$wheel" ]; then
    echo "[horovod ci] building the horovod $HVD_VERSION wheel once (cached in $WHEELS)"
    MAKEFLAGS="${MAKEFLAGS:--j2}" HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
        HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 \
        "$PY" -m pip wheel -q --no-cache-dir --no-build-isolation --no-deps -w "$WHEELS" "horovod==$HVD_VERSION" \
        || unavailable "building horovod==$HVD_VERSION against tensorflow-cpu $TF_VERSION failed (see above)"
    wheel=$(ls "$WHEELS"/horovod-"$HVD_VERSION"-*.whl | head -n 1)
    elapsed "horovod wheel built"
fi

if ! "$PY" -c "import horovod.tensorflow" >/dev/null 2>&1; then
    "$PY" -m pip install -q --force-reinstall --no-deps "$wheel" \
        || unavailable "cannot install the cached wheel $wheel"
    "$PY" -c "import horovod.tensorflow" || unavailable "horovod.tensorflow does not import (see above)"
fi
elapsed "horovod installed from the cached wheel"

# tfseg without its dependencies (setup.cfg asks for `tensorflow`, which would pull the full wheel
# next to tensorflow-cpu), then what it needs, with tensorflow-cpu pinned so numpy stays compatible.
"$PY" -m pip install -q "tensorflow-cpu==$TF_VERSION" keras numpy scipy nibabel pydicom scikit-image h5py \
    matplotlib tqdm pytest || unavailable "pip cannot install tfseg's dependencies (no network?)"
"$PY" -m pip install -q --no-deps --no-build-isolation -e . || unavailable "cannot install tfseg into $VENV"
elapsed "tfseg and its dependencies installed"

"$PY" -m pytest -q -ra -p no:cacheprovider tests/training/test_horovod.py
status=$?
elapsed "horovod tests"
if [ "$status" -eq 5 ]; then
    echo "[horovod ci] pytest collected no Horovod tests: failing" >&2
    exit 1
fi
exit "$status"
