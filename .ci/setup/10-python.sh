# Sourced by .ci/run. Two virtualenvs, because the EAS client SDK pins protobuf 3.20 and the
# onnx package needs protobuf 6:
# - tools (.ci/requirements.txt): onnxruntime, onnx, numpy, moto; exported as EAS_PYTHON, and
#   the ONNX Runtime library its onnxruntime wheel ships as ORT_DYLIB_PATH;
# - the client SDK (.ci/requirements-sdk.txt): exported as EAS_SDK_PYTHON.
make_venv() { # make_venv DIR REQUIREMENTS
  if [ ! -x "$1/bin/python" ]; then python3 -m venv "$1"; fi
  "$1/bin/pip" install --quiet --disable-pip-version-check -r "$2"
}
make_venv "${EAS_VENV:-$PWD/target/eas-venv}" .ci/requirements.txt
make_venv "${EAS_SDK_VENV:-$PWD/target/eas-sdk-venv}" .ci/requirements-sdk.txt
export EAS_PYTHON="${EAS_VENV:-$PWD/target/eas-venv}/bin/python"
export EAS_SDK_PYTHON="${EAS_SDK_VENV:-$PWD/target/eas-sdk-venv}/bin/python"
ORT_DYLIB_PATH="$("$EAS_PYTHON" -c 'import glob, os, onnxruntime; print(sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so*")))[-1])')"
export ORT_DYLIB_PATH
echo "tools: $EAS_PYTHON; SDK: $EAS_SDK_PYTHON; onnxruntime: $ORT_DYLIB_PATH"
