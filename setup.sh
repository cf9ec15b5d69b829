#!/usr/bin/env bash
# One-time set-up of a machine for hw3: TeX Live from Debian/Ubuntu packages (for the PDF), then this
# package and its Python dependencies. Safe to run again: it installs only what is missing.
#   bash setup.sh            # TeX + Python packages
#   HW3_SKIP_TEX=1 bash setup.sh   # Python packages only
#   HW3_SKIP_BROWSER=1 bash setup.sh   # without chromium (the grading page's browser test then skips)
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}

TEX_PACKAGES="texlive-xetex texlive-latex-extra texlive-fonts-recommended texlive-plain-generic lmodern latexmk pandoc poppler-utils fonts-dejavu-core fonts-droid-fallback"

tex_missing() {
  for tool in xelatex latexmk pandoc pdftoppm; do command -v "$tool" >/dev/null || return 0; done
  # (no grep -q: under pipefail its early exit would fail the pipeline with SIGPIPE)
  fc-list 2>/dev/null | grep "DejaVuSansMono.ttf" >/dev/null || return 0
  fc-list 2>/dev/null | grep "DroidSansFallback" >/dev/null || return 0
  return 1
}

if [ -z "${HW3_SKIP_TEX:-}" ] && tex_missing; then
  if command -v apt-get >/dev/null; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "== installing TeX Live (about 400 MB, a few minutes; once per machine)"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $TEX_PACKAGES
  else
    echo "!! no apt-get: install TeX Live with xelatex, latexmk, pandoc, poppler-utils and the DejaVu fonts yourself" >&2
  fi
fi

# Debian's chromium for the test of the grading page (tests/test_grade_page.py drives it with Playwright;
# Playwright's own browser download is not needed). Skipped with HW3_SKIP_BROWSER=1.
if [ -z "${HW3_SKIP_BROWSER:-}" ] && ! command -v chromium >/dev/null && command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "== installing chromium (for the grading page's browser test)"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends chromium
fi

echo "== installing the hw3 package and its Python dependencies"
if "$PYTHON" -c "import torch" 2>/dev/null; then
  # Keep the torch the user already has (a CUDA build on a GPU box, Colab's own).
  "$PYTHON" -m pip install -q -e ".[dev]"
else
  # constraints.txt pins torch 2.13.0: the CPU wheel on our machines, not a multi-GB CUDA build.
  "$PYTHON" -m pip install -q -c constraints.txt -e ".[dev]"
fi
"$PYTHON" -c "import torch, papermill, nbconvert; print('torch', torch.__version__, '| papermill', papermill.__version__, '| nbconvert', nbconvert.__version__)"
