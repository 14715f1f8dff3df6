"""llama.cpp's OpenAI-compatible server (the xllamacpp wheel) for the real-model drill;
started by scripts/real-model.sh, serves until it is sent SIGTERM."""

import argparse
import signal
import sys

import xllamacpp


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--template", required=True)
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--context", type=int, default=16384)
    args = parser.parse_args()

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.n_ctx = args.context
    params.n_parallel = 1
    # A small model can ramble until the context is full (20 minutes on 2 cores): no
    # answer of the drill needs more than this.
    params.n_predict = 1024
    # Greedy and seeded: the drill's figure then moves with what the model reads, not with
    # sampling luck (at llama.cpp's default 0.8 the same subset passed different tasks).
    params.sampling.temp = 0.0
    params.sampling.seed = 42
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.use_jinja = True
    with open(args.template) as f:
        params.chat_template = f.read()
    params.hostnames = ["127.0.0.1"]
    params.port = args.port
    server = xllamacpp.Server(params)
    print("serving on", server.listening_address, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
