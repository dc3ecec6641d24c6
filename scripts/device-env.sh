# Sourced on a lent GPU machine, before facegate's commands: installs the wheels that scripts/device-kit.sh
# put in .device/wheels (all of them, or only those a run carried) into /tmp/facegate-site, unless the Python
# in use already has the service's packages, and puts them, and dlib's models in .device/site, ahead on
# PYTHONPATH. The image's own torch, numpy and pillow serve.
#   . scripts/device-env.sh
facegate_python="${PYTHON:-python3}"
if compgen -G ".device/wheels/*.whl" > /dev/null && ! "$facegate_python" -c "import fastapi, dlib" 2>/dev/null; then
    "$facegate_python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/facegate-site .device/wheels/*.whl || return 1
    export PYTHONPATH="/tmp/facegate-site:$PWD/.device/site${PYTHONPATH:+:$PYTHONPATH}"
fi
