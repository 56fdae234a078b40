# Sourced by .ci/run: a virtualenv with the Python parts the tests drive (see
# .ci/requirements.txt), exported to the tests as EAS_PYTHON, and the ONNX Runtime library
# that its onnxruntime wheel ships, exported as ORT_DYLIB_PATH.
EAS_VENV="${EAS_VENV:-$PWD/target/eas-venv}"
if [ ! -x "$EAS_VENV/bin/python" ]; then
  python3 -m venv "$EAS_VENV"
fi
"$EAS_VENV/bin/pip" install --quiet --disable-pip-version-check -r .ci/requirements.txt
export EAS_PYTHON="$EAS_VENV/bin/python"
ORT_DYLIB_PATH="$("$EAS_PYTHON" -c 'import glob, os, onnxruntime; print(sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so*")))[-1])')"
export ORT_DYLIB_PATH
export PATH="$EAS_VENV/bin:$PATH"
echo "python: $EAS_PYTHON; onnxruntime: $ORT_DYLIB_PATH"
