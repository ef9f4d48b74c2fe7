#!/usr/bin/env bash
# The ROS 2 PyPI wheels export *__rosidl_generator_py CMake targets whose include paths point at
# the machine that built them (/opt/python/cp311-cp311/...). Rewrite them to this venv's Python and
# numpy headers so rosidl can build msg/ against the wheels. Idempotent.
set -euo pipefail
venv=$1
py="$venv/bin/python"
py_inc=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
np_inc=$("$py" -c 'import numpy; print(numpy.get_include())')
{ grep -rlE '/opt/python/cp3[0-9]+-cp3[0-9]+' "$venv/share" --include='*.cmake' || true; } |
while read -r f; do
  sed -i -E \
    -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/_?core/include#${np_inc}#g" \
    -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+#${py_inc}#g" \
    "$f"
done
