#!/usr/bin/env bash
# Notebook fidelity: each notebook of bench/notebooks runs twice in a real Jupyter kernel
# (nbclient) and once cell by cell through codebox (one --session per notebook); per code
# cell the text, figure count and error kind are compared, then a table and the timings.
# Usage: bash bench/notebook-fidelity.sh [--short] [--codebox PATH] [--json OUT]
#        bash bench/notebook-fidelity.sh --prepare   (only make the reference venv)
#   (needs Docker, the sandbox image and target/debug/codebox; the reference venv, with the
#    image's numpy/pandas/matplotlib/scikit-learn versions, is kept in /var/tmp/codebox-fidelity)
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${FIDELITY_VENV:-/var/tmp/codebox-fidelity}"
image="${SANDBOX_IMAGE:-codebox-sandbox:latest}"

# images/sandbox/requirements.txt names the stack without versions: the built image has the
# ones to match (scipy too, which scikit-learn computes with).
pins="$(docker run --rm --network none "$image" python3 -c '
import numpy, pandas, matplotlib, sklearn, scipy
print(" ".join(f"{n}=={m.__version__}" for n, m in [("numpy", numpy), ("pandas", pandas),
      ("matplotlib", matplotlib), ("scikit-learn", sklearn), ("scipy", scipy)]))')" || {
  echo "notebook-fidelity: cannot read the library versions of $image (is Docker up and the" \
       "image built? bash scripts/setup.sh)" >&2
  exit 1
}

# Jupyter of the image's time: matplotlib 3.6's pyplot needs IPython 8 (9 dropped backend2gui)
# and matplotlib-inline 0.1.7 on needs matplotlib 3.7. Other stacks: FIDELITY_JUPYTER=...
jupyter="${FIDELITY_JUPYTER:-ipykernel<7 ipython<9 matplotlib-inline<0.1.7}"
want="$(python3 --version) $pins nbclient nbformat $jupyter"
if [ "$(cat "$venv/.fidelity-stamp" 2>/dev/null)" != "$want" ]; then
  echo "==> reference venv $venv: $pins" >&2
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    nbclient nbformat $jupyter $pins
  # The kernel spec lives in the venv; JUPYTER_PATH below puts it before any user's own.
  "$venv/bin/python" -m ipykernel install --prefix "$venv" --name python3 >/dev/null
  printf '%s' "$want" >"$venv/.fidelity-stamp"
fi

[ "${1:-}" = "--prepare" ] && exit 0

export JUPYTER_PATH="$venv/share/jupyter" JUPYTER_PLATFORM_DIRS=1 MPLBACKEND=Agg
exec "$venv/bin/python" bench/notebook_fidelity.py "$@"
