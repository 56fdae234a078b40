# Sourced by scripts/test-env.sh and .ci/run (and by hand before building the `torch` feature:
# `source scripts/libtorch.sh && cargo build --features torch`). The one home of libtorch for
# builds and tests: a CPU-only libtorch 2.13.0 (what tch 0.26 expects) in target/libtorch (or
# $EAS_LIBTORCH_DIR), made from PyPI wheels as ../shared/DEPENDENCIES.md describes:
# - `pip download --no-deps` of torch 2.13.0 (the CUDA build, ~530 MB) and the two small CUDA
#   runtime wheels its CPU library links against (libcudart, libcupti: ~13 MB);
# - unpack torch/lib and torch/include, copy libcudart.so.13 and libcupti.so.13 beside them,
#   drop the CUDA kernels (libtorch_cuda*, ~510 MB) and the Python bindings, write
#   build-version; the wheels are deleted (about 490 MB stays, no pip cache).
# Then it exports LIBTORCH, LIBTORCH_CXX11_ABI=1 and LD_LIBRARY_PATH. When build-version
# already says 2.13.0 it only exports (no network). Needs python3 with its venv module.
# Set LIBTORCH yourself (a full or CUDA libtorch 2.13.0) and this script leaves it alone.

eas_libtorch_export() { # eas_libtorch_export DIR: the variables tch's build and binaries read
  export LIBTORCH="$1"
  export LIBTORCH_CXX11_ABI="${LIBTORCH_CXX11_ABI:-1}"
  case ":${LD_LIBRARY_PATH:-}:" in
    *":$1/lib:"*) ;;
    *) export LD_LIBRARY_PATH="$1/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;;
  esac
}

eas_libtorch() {
  local version=2.13.0 root dir tmp
  if [ -n "${LIBTORCH:-}" ] && [ -z "${EAS_LIBTORCH_DIR:-}" ]; then
    echo "libtorch: LIBTORCH=$LIBTORCH (set by you)"
    eas_libtorch_export "$LIBTORCH"
    return 0
  fi
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" || return
  dir="${EAS_LIBTORCH_DIR:-$root/target/libtorch}"
  if [ "$(cat "$dir/build-version" 2>/dev/null)" != "$version" ]; then
    echo "libtorch: provisioning CPU-only libtorch $version in $dir" \
      "(downloads ~545 MB from PyPI, keeps ~490 MB)"
    rm -rf "$dir" "$dir.tmp" || return
    tmp="$dir.tmp"
    mkdir -p "$tmp" || return
    # pip from the system or from a throwaway virtualenv (Debian's python3 may lack pip).
    local pip=(python3 -m pip)
    if ! python3 -m pip --version >/dev/null 2>&1; then
      python3 -m venv "$tmp/venv" || return
      pip=("$tmp/venv/bin/python" -m pip)
    fi
    "${pip[@]}" download --quiet --disable-pip-version-check --no-cache-dir --no-deps \
      --only-binary=:all: --python-version 3.11 -d "$tmp/wheels" \
      "torch==$version" nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85 || return
    python3 - "$tmp/wheels" "$tmp/libtorch" <<'EOF' || return
import os, shutil, sys, zipfile
from pathlib import Path
wheels, out = Path(sys.argv[1]), Path(sys.argv[2])
(out / "lib").mkdir(parents=True)
# What a CPU-only libtorch needs; the CUDA kernels and the Python bindings stay out.
skip = ("libtorch_cuda", "libtorch_python", "libtorch_nvshmem")
for wheel in sorted(wheels.glob("*.whl")):
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            name = info.filename
            if info.is_dir():
                continue
            if name.startswith("torch/include/"):
                target = out / name[len("torch/"):]
            elif name.startswith("torch/lib/") and name.count("/") == 2:
                if Path(name).name.startswith(skip):
                    continue
                target = out / "lib" / Path(name).name
            elif name.endswith(("/libcudart.so.13", "/libcupti.so.13")):
                target = out / "lib" / Path(name).name
            else:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with z.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            os.chmod(target, 0o755 if ".so" in target.name else 0o644)
EOF
    echo "$version" >"$tmp/libtorch/build-version" || return
    mv "$tmp/libtorch" "$dir" && rm -rf "$tmp" || return
    echo "libtorch: $(du -sh "$dir" | cut -f1) in $dir"
  fi
  eas_libtorch_export "$dir"
  echo "libtorch: LIBTORCH=$LIBTORCH"
}

eas_libtorch
