# Sourced by scripts/test (and by hand, to run one test target with every part:
# `source scripts/test-env.sh && cargo test -p eas-runtime --test onnx`). The one home of the
# user-space parts the tests need: three virtualenvs under target/, because the EAS client SDK
# pins protobuf 3.20, the onnx package needs protobuf 6 and kserve protobuf < 7:
# - tools (.ci/requirements.txt): onnxruntime, onnx, numpy, moto; exported as EAS_PYTHON, and
#   the ONNX Runtime library its onnxruntime wheel ships as ORT_DYLIB_PATH;
# - the client SDK (.ci/requirements-sdk.txt): exported as EAS_SDK_PYTHON;
# - the OIP clients, tritonclient and kserve (.ci/requirements-oip.txt): EAS_OIP_PYTHON.
# It also sources scripts/libtorch.sh: a CPU-only libtorch in target/libtorch for `torch`.
# EAS_VENV, EAS_SDK_VENV and EAS_OIP_VENV put them elsewhere. pip runs only when a requirements file changed
# since the venv was last filled (a copy of it is kept in the venv), so a second run is quick
# and needs no network.
# Needs python3 with its venv module (scripts/test checks that first).

eas_make_venv() { # eas_make_venv DIR REQUIREMENTS
  if [ ! -x "$1/bin/python" ]; then python3 -m venv "$1" || return; fi
  if ! cmp -s "$2" "$1/eas-requirements.txt"; then
    "$1/bin/pip" install --quiet --disable-pip-version-check -r "$2" || return
    cp "$2" "$1/eas-requirements.txt"
  fi
}

eas_test_env() {
  local root venv sdk_venv oip_venv
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" || return
  venv="${EAS_VENV:-$root/target/eas-venv}"
  sdk_venv="${EAS_SDK_VENV:-$root/target/eas-sdk-venv}"
  eas_make_venv "$venv" "$root/.ci/requirements.txt" || return
  eas_make_venv "$sdk_venv" "$root/.ci/requirements-sdk.txt" || return
  oip_venv="${EAS_OIP_VENV:-$root/target/eas-oip-venv}"
  eas_make_venv "$oip_venv" "$root/.ci/requirements-oip.txt" || return
  export EAS_OIP_PYTHON="$oip_venv/bin/python"
  export EAS_PYTHON="$venv/bin/python"
  export EAS_SDK_PYTHON="$sdk_venv/bin/python"
  ORT_DYLIB_PATH="$("$EAS_PYTHON" -c 'import glob, os, onnxruntime; print(sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so*")))[-1])')" || return
  export ORT_DYLIB_PATH
  # libtorch for the `torch` feature (LIBTORCH, LIBTORCH_CXX11_ABI, LD_LIBRARY_PATH).
  # shellcheck source=scripts/libtorch.sh
  source "$root/scripts/libtorch.sh" || return
  echo "tools: $EAS_PYTHON; SDK: $EAS_SDK_PYTHON; OIP clients: $EAS_OIP_PYTHON; onnxruntime: $ORT_DYLIB_PATH"
}

eas_test_env
