#!/usr/bin/env bash
# Build the offline GPU-node kit (see scripts/offline_kit.py and TRAINING.md, "On an offline
# GPU node"): scripts/offline_kit.sh KIT [--dry-run] [--python-version 3.12] [--cpu]
set -euo pipefail
exec "${PYTHON:-python}" "$(dirname "$0")/offline_kit.py" "$@"
