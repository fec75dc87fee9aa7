"""atheris target: seed.serve's REST body decoding (JSON -> named arrays, row and columnar formats).

    .venv/bin/python tests/fuzz/fuzz_rest.py [libFuzzer flags] WORK_CORPUS_DIR tests/fuzz/corpus/rest

Each input is a request body, decoded as the REST handler does: json.loads, then
rest_inputs() against one of two signatures (the first byte picks it), then the core's
validation of the arrays. Half the inputs are taken as JSON text; the other half drive a
generator of JSON values over the API's own keys (instances, inputs, b64, the signatures'
input names), which reaches the decoding far more often than mutated text does. A
ServingError (INVALID_ARGUMENT and the like: HTTP 4xx) or a JSON error is an answer; any
other exception would be a 500 and is a finding. So is RecursionError outside json.loads:
the handler maps it to 400, but only as a last resort.
"""

import json
import sys

import atheris
import tensorflow as tf  # not instrumented: coverage of seed's code is what guides the fuzzer

with atheris.instrument_imports(include=["seed"]):
  from seed.serving.core import Core
  from seed.serving.errors import ServingError
  from seed.serving.models import Signature
  from seed.serving.rest_api import rest_inputs


def _signature(name: str, inputs: dict) -> Signature:
  return Signature(name=name, fn=None, inputs=inputs, outputs={}, batchable=True)


SIGNATURES = [
  _signature("single", {"x": tf.TensorSpec([None, 3], tf.float32, name="x")}),
  _signature(
    "multi",
    {
      "a": tf.TensorSpec([None, 2], tf.float32, name="a"),
      "n": tf.TensorSpec([None], tf.int32, name="n"),
      "s": tf.TensorSpec([None], tf.string, name="s"),
      "b": tf.TensorSpec([None], tf.bool, name="b"),
    },
  ),
]


KEYS = ["instances", "inputs", "signature_name", "b64", "x", "a", "n", "s", "b", "serving_default"]


def _json_value(fdp: atheris.FuzzedDataProvider, depth: int):
  """A JSON value chosen by the fuzzer's bytes (what json.loads could have returned)."""
  kind = fdp.ConsumeIntInRange(0, 8) if depth < 12 else fdp.ConsumeIntInRange(0, 5)
  if kind == 0:
    return fdp.ConsumeInt(8)
  if kind == 1:
    return fdp.ConsumeRegularFloat() if fdp.ConsumeBool() else fdp.ConsumeFloat()
  if kind == 2:
    return fdp.ConsumeBool()
  if kind == 3:
    return None
  if kind == 4:
    return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 8))
  if kind == 5:
    return {"b64": fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 12))}
  if kind in (6, 7):
    return [_json_value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 4))]
  return {fdp.PickValueInList(KEYS): _json_value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 4))}


def test_one_input(data: bytes) -> None:
  if len(data) < 2:
    return
  sig = SIGNATURES[data[0] % len(SIGNATURES)]
  if data[1] % 2:
    fdp = atheris.FuzzedDataProvider(data[2:])
    body = {fdp.PickValueInList(KEYS[:3]): _json_value(fdp, 1) for _ in range(fdp.ConsumeIntInRange(1, 3))}
  else:
    try:
      body = json.loads(data[2:])
    except (ValueError, UnicodeDecodeError, RecursionError):  # the handler's 400 "JSON Parse error" / too deep
      return
  if not isinstance(body, dict):
    return  # the handler answers 400 before decoding
  try:
    inputs, _ = rest_inputs(body, sig)
    Core.validate(sig, inputs, ())
  except ServingError:
    return


def main() -> None:
  atheris.Setup(sys.argv, test_one_input)
  atheris.Fuzz()


if __name__ == "__main__":
  main()
