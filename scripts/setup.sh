#!/usr/bin/env bash
# Idempotent set-up shared by `make book` and `make test`:
#   1. Debian packages: offline data (Fashion-MNIST), handwriting fonts (offline Letters),
#      Chromium + driver (browser test). Skipped when present or when not on Debian/Ubuntu.
#   2. A virtualenv (.venv, or $TDML_VENV) with the pinned packages and this library (-e).
#   3. The Jupyter kernel `python3`, pointing at that virtualenv.
#   4. Datasets prepared under data/ (or $TDML_DATA): from the offline sources of step 1,
#      else downloaded from their publishers and checked against their checksums.
# Quick when already done: each step checks before it works.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${TDML_VENV:-.venv}"
PY="$VENV/bin/python"
APT_PACKAGES=(dataset-fashion-mnist fonts-dkg-handwriting fonts-breip fonts-humor-sans
              fonts-rufscript fonts-bwht chromium chromium-driver)

if command -v dpkg-query >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "setup: installing Debian packages: ${missing[*]}"
    $sudo apt-get update -q >/dev/null || true
    # One package at a time: a package missing on this distribution (Ubuntu has no
    # `chromium` .deb) must not stop the others.
    for p in "${missing[@]}"; do
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "$p" >/dev/null \
        || echo "setup: warning: could not install $p (Fashion and Letters are then downloaded" \
                "from their publishers; the browser test is skipped without chromium)." >&2
    done
  fi
fi

[ -x "$PY" ] || python3 -m venv "$VENV"
stamp="$VENV/.tdml-installed"
if [ ! -f "$stamp" ] || [ requirements.txt -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing Python packages into $VENV"
  "$PY" -m pip install -q --upgrade pip
  # PyPI's torch for Linux is a multi-GB CUDA build: where PyTorch's CPU index is
  # reachable, take the CPU wheel from it (machines without it use their local wheel/cap).
  extra=()
  if curl -s -m 5 -o /dev/null https://download.pytorch.org/whl/cpu/ 2>/dev/null; then
    extra=(--extra-index-url https://download.pytorch.org/whl/cpu)
  fi
  "$PY" -m pip install -q "${extra[@]}" -r requirements.txt
  "$PY" -m pip install -q --no-deps -e .
  touch "$stamp"
fi
"$PY" -m ipykernel install --user --name python3 --display-name "Python 3 (tdml)" >/dev/null 2>&1
"$PY" -m tdml_lib data --prepare
