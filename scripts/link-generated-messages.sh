#!/usr/bin/env bash
# After `cmake --install` into the venv, site-packages/importance_sampler_ros holds only what rosidl
# generated (msg/ and the type-support modules) plus an __init__.py of its own. Removing that
# __init__.py turns the directory into a namespace portion: `import importance_sampler_ros` then
# resolves to the source tree (linked by the editable install), whose __init__ extends its
# __path__ to this directory, so `importance_sampler_ros.msg` imports without copying sources.
# rosidl also installs an importance_sampler_ros-*.egg-info listing those files; pip would take it
# for an older install of this package and delete the generated files when `pip install -e .`
# runs, so it goes too (the editable install's dist-info describes the package).
set -euo pipefail
venv=$1
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
rm -f "$site/importance_sampler_ros/__init__.py"
rm -rf "$site/importance_sampler_ros/__pycache__" "$site"/importance_sampler_ros-*.egg-info
