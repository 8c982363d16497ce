#!/usr/bin/env bash
# Download what scripts/gpu-run.sh needs on a CUDA machine that has Python 3.12, torch and a
# scientific stack preinstalled but no Java and no network, into an ignored folder carried
# beside the repository (default gpu-kit/):
#   wheels/            the project's runtime dependencies the machine lacks (scripts/gpu_deps.py
#                      says which: TorchServe, the model archiver, FastAPI, uvicorn, pydantic, ...)
#   java-17-jre.tar.xz a Java 17 runtime made from Debian's OpenJDK 17 packages with jlink
#                      (only the modules TorchServe's frontend uses): the packages' own runtime
#                      is 42 MiB compressed and, beside TorchServe's 40 MiB wheel, cannot fit.
#   scripts/gpu-kit.sh [KIT_DIR]
# GPU_KIT_PYTHON=3.12: the Python version the wheels are for (3.11 builds a kit for this machine,
# which is how the script is tested here). Fails when what a device run carries (the kit plus
# the repository's files that git does not ignore) exceeds 64 MiB.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
KIT=$(mkdir -p "${1:-$REPO/gpu-kit}" && cd "${1:-$REPO/gpu-kit}" && pwd)
PY=${PYTHON:-$REPO/.venv/bin/python}
PYVER=${GPU_KIT_PYTHON:-3.12}
LIMIT_MIB=64
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
rm -rf "$KIT/wheels" "$KIT/java-17-jre.tar.xz"
mkdir -p "$KIT/wheels"

# --- Wheels: `gpu_deps.py kit` names only what the machine lacks (contourpy,
# matplotlib, scipy and the rest of its stack are in gpu_deps.PREINSTALLED and used as installed).
# pip matches a --platform tag exactly, so every manylinux level up to 2_28 is named: a compiled
# wheel (pydantic-core, httptools, websockets, ...) is found whichever level it is published at.
# The newest level allowed is 2_28, so a kit may need glibc >= 2.28 on the machine; its Python
# 3.12.3 is Ubuntu 24.04's (glibc 2.39).
"$PY" "$REPO/scripts/gpu_deps.py" kit --python-version "$PYVER" > "$KIT/requirements.txt"
plat=()
for tag in manylinux_2_28 manylinux_2_27 manylinux_2_26 manylinux_2_24 manylinux_2_17 \
  manylinux2014 manylinux_2_12 manylinux2010 manylinux_2_5 manylinux1; do
  plat+=(--platform "${tag}_x86_64")
done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" \
  --implementation cp "${plat[@]}" --platform any -d "$KIT/wheels" -r "$KIT/requirements.txt"

# --- Java 17: Debian's JDK packages unpacked here (apt-get download: no root, nothing
# installed), then jlink keeps the modules TorchServe's frontend loads: log4j needs java.beans
# (java.desktop; its AWT/sound native libraries are left out), JMX, JNDI, JDBC and XML classes.
# Symbols are stripped from the native libraries, and xz over an uncompressed image packs better
# than jlink's own zip: 15 MiB where Debian's runtime package is 42.
JAVA_MODULES=java.base,java.logging,java.management,java.naming,java.sql,java.xml
JAVA_MODULES+=,jdk.unsupported,java.desktop
(cd "$TMP" && apt-get download openjdk-17-jre-headless openjdk-17-jdk-headless >/dev/null) || {
  echo "gpu kit: apt-get download of Debian's OpenJDK 17 failed (apt-get update first?)" >&2
  exit 1
}
for deb in "$TMP"/*.deb; do dpkg-deb -x "$deb" "$TMP/root"; done
# The packages link conf/ and jvm.cfg to /etc/java-17-openjdk (absolute): point them into the
# unpacked tree instead, which has that /etc too.
find "$TMP/root" -type l -lname '/*' | while read -r link; do
  target=$(readlink "$link")
  if [ -e "$TMP/root$target" ]; then ln -sfn "$TMP/root$target" "$link"; fi
done
JDK=$(dirname "$(dirname "$(find "$TMP/root/usr/lib/jvm" -path '*/bin/jlink' | head -1)")")
"$JDK/bin/jlink" --module-path "$JDK/jmods" --add-modules "$JAVA_MODULES" --strip-debug \
  --no-header-files --no-man-pages --compress=0 --exclude-files='glob:/java.desktop/lib/**' \
  --output "$TMP/java-17-jre"
find "$TMP/java-17-jre" -name '*.so' -exec strip --strip-unneeded {} +
"$TMP/java-17-jre/bin/java" -version 2>&1 | head -1
tar -C "$TMP" -cf - java-17-jre | xz -9 -T2 > "$KIT/java-17-jre.tar.xz"

# --- Size: a device run carries the repository's files that git does not ignore and the kit,
# 64 MiB in all. A kit inside the repository that git does not ignore (any DIR but gpu-kit/)
# is among those files: left out of them, so it is counted once.
kit_b=$(du -sb "$KIT" | cut -f1)
not_kit=()
case "$KIT/" in "$REPO"/*) not_kit=(-- ":(exclude)${KIT#"$REPO"/}") ;; esac
repo_b=$(git -C "$REPO" ls-files -z --cached --others --exclude-standard "${not_kit[@]}" |
  (cd "$REPO" && xargs -0 du -cb 2>/dev/null) | tail -1 | cut -f1)
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
echo "gpu kit: $KIT, $(mib "$kit_b") MiB ($(ls "$KIT/wheels" | wc -l) wheels," \
  "java $(mib "$(stat -c %s "$KIT/java-17-jre.tar.xz")") MiB); with the repository" \
  "$(mib $((kit_b + repo_b))) MiB of the ${LIMIT_MIB} MiB a device run carries"
if [ $((kit_b + repo_b)) -gt $((LIMIT_MIB * 1048576)) ]; then
  echo "gpu kit: over the ${LIMIT_MIB} MiB a device run can carry" >&2
  exit 1
fi
