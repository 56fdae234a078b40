"""The KServe baseline of benches/oip_load.rs: an ONNX model served by onnxruntime behind KServe's
own Python model server (`kserve.ModelServer`), Open Inference Protocol v2 over REST and gRPC.

    python kserve_onnx.py MODEL NAME HTTP_PORT GRPC_PORT [--threads T]

The model class is the one KServe's docs show for a custom V2 predictor: `predict` takes an
`InferRequest` (JSON, binary tensor data or gRPC, decoded by KServe), runs the session on the
first input and answers an `InferResponse` with output `y` (binary when the request asked for
it, raw contents over gRPC when the request sent raw contents, as KServe decides). No batching
across requests (KServe's Python server has none); one uvicorn worker, its event loop runs
`predict` inline. Latency logging and access logs are off, so the server does only the work.
GET /v2/health/ready answers 200 once the model is loaded.
"""

import argparse
import logging
import sys
import uuid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("name")
    parser.add_argument("http_port", type=int)
    parser.add_argument("grpc_port", type=int)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    args = parser.parse_args()
    # kserve parses sys.argv when imported: leave it nothing of ours to read.
    sys.argv = sys.argv[:1]

    import onnxruntime as ort
    from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer

    class OnnxModel(Model):
        def __init__(self, name: str, path: str, threads: int):
            super().__init__(name)
            self.path = path
            self.threads = threads
            self.session = None
            self.load()

        def load(self) -> bool:
            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            self.session = ort.InferenceSession(
                self.path, options, providers=["CPUExecutionProvider"]
            )
            self.input_name = self.session.get_inputs()[0].name
            self.output_name = self.session.get_outputs()[0].name
            self.ready = True
            return self.ready

        def predict(self, payload: InferRequest, headers=None) -> InferResponse:
            x = payload.inputs[0].as_numpy()
            (y,) = self.session.run([self.output_name], {self.input_name: x})
            binary = payload.use_binary_outputs
            output = InferOutput(name=self.output_name, shape=list(y.shape), datatype="FP32")
            output.set_data_from_numpy(y, binary_data=binary)
            return InferResponse(
                response_id=payload.id or str(uuid.uuid4()),
                model_name=self.name,
                infer_outputs=[output],
                use_binary_outputs=binary,
            )

    model = OnnxModel(args.name, args.model, args.threads)
    server = ModelServer(
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        workers=1,
        enable_grpc=True,
        enable_docs_url=False,
        enable_latency_logging=False,
    )
    # After the server configured logging: no line per request.
    for name in ("uvicorn.access", "kserve.trace"):
        logging.getLogger(name).disabled = True
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("kserve").setLevel(logging.WARNING)
    server.start([model])


if __name__ == "__main__":
    sys.exit(main())
