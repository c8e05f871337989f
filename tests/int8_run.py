"""Run int8 files with onnxruntime and save what they give, for a test that runs this under another CPU model.

    python int8_run.py INPUTS.npz OUT.npz NAME=FILE.onnx ...

INPUTS.npz holds the graphs' inputs by name (x, z); each file is fed the one its graph takes, and OUT.npz holds
its output under NAME. Only numpy and onnxruntime: under an emulated CPU, torch would take far too long.
"""
import sys

import numpy as np
import onnxruntime as ort


def main(inputs: str, out: str, *files: str) -> None:
    feed, got = np.load(inputs), {}
    for spec in files:
        name, path = spec.split("=", 1)
        so = ort.SessionOptions()
        so.log_severity_level = 3
        session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        inp = session.get_inputs()[0].name
        got[name] = session.run([session.get_outputs()[0].name], {inp: feed[inp]})[0]
    np.savez(out, **got)


if __name__ == "__main__":
    main(*sys.argv[1:])
