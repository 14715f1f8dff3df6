#!/usr/bin/env bash
# Builds a local Debian bookworm base image with python3 and the scientific stack, for
# machines that cannot pull from any image registry. Operators with a registry use a normal
# base (python:3.12-slim) through Dockerfile.sandbox instead.
#
# Usage: deploy/build-base-image.sh [TAG]   (default codebox-base:bookworm)
# Needs root, debootstrap and a running Docker engine. Idempotent: exits early when TAG exists
# unless FORCE=1.
set -euo pipefail

tag="${1:-codebox-base:bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# pyarrow is not packaged for bookworm; its manylinux wheel is laid in from PyPI. The pin
# keeps numpy 1.x (Debian's) compatible.
pyarrow_version="${PYARROW_VERSION:-17.0.0}"

# Rich display, laid in from PyPI as wheels: plotly (Debian's has its plotly.js stripped,
# which kaleido needs), kaleido 0.2 (plotly to PNG, its own headless Chromium inside; 1.x
# needs a Chrome installed), Vega-Altair 5 and vl-convert (Vega-Lite to PNG, self-contained).
plotly_version="${PLOTLY_VERSION:-5.24.1}"
kaleido_version="${KALEIDO_VERSION:-0.2.1}"
altair_version="${ALTAIR_VERSION:-5.3.0}"
vl_convert_version="${VL_CONVERT_VERSION:-1.9.0.post1}"

# A base built before a module joined the stack (pypdf reads documents' text; cairosvg
# renders SVG) or with other versions of the wheels laid in is rebuilt.
base_complete() {
  docker image inspect "$tag" >/dev/null 2>&1 \
    && docker run --rm --network none "$tag" python3 -c "
import importlib.metadata as m, sys
import pypdf, cairosvg
want = {'pyarrow': '$pyarrow_version', 'plotly': '$plotly_version', 'kaleido': '$kaleido_version',
        'altair': '$altair_version', 'vl-convert-python': '$vl_convert_version'}
sys.exit(any(m.version(name) != version for name, version in want.items()))" >/dev/null 2>&1
}
if [ "${FORCE:-0}" != 1 ] && base_complete; then
  echo "base image $tag already present"
  exit 0
fi

command -v debootstrap >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap
}

work="$(mktemp -d /var/tmp/codebox-base.XXXXXX)"
rootfs="$work/rootfs"
cleanup() {
  umount "$rootfs/proc" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "==> debootstrap bookworm into $rootfs"
debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log"; exit 1; }

echo "==> installing python3 and the scientific stack (Debian packages)"
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
mount -t proc proc "$rootfs/proc"
chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
  sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends \
    python3 python3-pip python3-numpy python3-pandas python3-matplotlib python3-scipy \
    python3-openpyxl python3-yaml python3-pil python3-seaborn python3-sklearn python3-xlrd \
    python3-h5py python3-tables python3-lxml python3-bs4 python3-requests python3-tabulate \
    python3-sympy python3-statsmodels python3-odf python3-pypdf python3-cairosvg python3-tenacity \
    python3-jsonschema python3-jinja2 python3-toolz python3-packaging fonts-dejavu-core ca-certificates \
    >/dev/null && apt-get clean && rm -rf /var/lib/apt/lists/*'
umount "$rootfs/proc"

echo "==> laying in pyarrow $pyarrow_version and the renderers (wheels)"
site="$rootfs/usr/local/lib/python3.11/dist-packages"
mkdir -p "$site"
python3 -m pip install --quiet --no-deps --only-binary=:all: --python-version 3.11 \
  --implementation cp --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  --platform manylinux_2_17_x86_64 --target "$site" \
  "pyarrow==$pyarrow_version" "plotly==$plotly_version" "kaleido==$kaleido_version" \
  "altair==$altair_version" "vl-convert-python==$vl_convert_version"

echo "==> docker import as $tag"
: >"$rootfs/etc/resolv.conf"
tar -C "$rootfs" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' - "$tag"
echo "base image $tag built"
