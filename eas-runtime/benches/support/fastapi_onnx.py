"""The FastAPI baseline of benches/http_load.rs: an ONNX model served by onnxruntime behind
FastAPI under uvicorn (uvloop + httptools when installed, as `uvicorn[standard]` brings).

    python fastapi_onnx.py MODEL PORT [--workers N] [--threads T]

POST /predict takes the fastest honest body: the input `x` as raw little-endian float32 bytes
(rows of the model's feature count, any number of rows), and answers the output `y` the same
way. No batching across requests (the usual FastAPI deployment); inference runs inline in the
async handler, which for a short CPU-bound call is faster than FastAPI's thread pool.
GET /healthz answers "ok" once the model is loaded.
"""

import argparse
import os
import sys

MODEL_ENV = "EAS_BENCH_FASTAPI_MODEL"
THREADS_ENV = "EAS_BENCH_FASTAPI_THREADS"


def make_app():
    import numpy as np
    import onnxruntime as ort
    from fastapi import FastAPI, Request, Response

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(os.environ.get(THREADS_ENV, "1"))
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        os.environ[MODEL_ENV], options, providers=["CPUExecutionProvider"]
    )
    model_input = session.get_inputs()[0]
    features = int(model_input.shape[1])
    output_name = session.get_outputs()[0].name

    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        body = await request.body()
        x = np.frombuffer(body, dtype="<f4").reshape(-1, features)
        (y,) = session.run([output_name], {model_input.name: x})
        return Response(content=y.astype("<f4").tobytes(), media_type="application/octet-stream")

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(content=b"ok", media_type="text/plain")

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("port", type=int)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    args = parser.parse_args()
    os.environ[MODEL_ENV] = os.path.abspath(args.model)
    os.environ[THREADS_ENV] = str(args.threads)

    import uvicorn

    uvicorn.run(
        "fastapi_onnx:make_app",
        factory=True,
        app_dir=os.path.dirname(os.path.abspath(__file__)),
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    sys.exit(main())
