"""seed.serving.rest_api: predict in the row and columnar formats, and its errors."""

import base64

# --- REST ---------------------------------------------------------------------------------------------


def test_rest_predict_row_and_columnar_formats(server):
  code, body = server.rest("POST", "/v1/models/half:predict", {"instances": [1.0, 2.0, 5.0]})
  assert (code, body) == (200, {"predictions": [2.5, 3.0, 4.5]})
  code, body = server.rest("POST", "/v1/models/half/versions/1:predict", {"inputs": [1, 2]})
  assert (code, body) == (200, {"outputs": [1.5, 2.0]})
  code, body = server.rest("POST", "/v1/models/half/labels/stable:predict", {"inputs": {"x": [0.1]}})
  assert (code, body) == (200, {"outputs": [1.05]})  # float32 printed at float32 precision
  code, body = server.rest(
    "POST", "/v1/models/half:predict", {"signature_name": "times_two", "instances": [{"x": 1.0}, {"x": 4.0}]}
  )
  assert (code, body) == (200, {"predictions": [{"z": 2.0, "b": 2.0}, {"z": 8.0, "b": 2.0}]})

  # Several inputs: objects per instance (row) or per input (columnar).
  code, body = server.rest(
    "POST", "/v1/models/multi:predict", {"instances": [{"a": [1, 2], "n": 3}, {"a": [0.5, 0.25], "n": 0}]}
  )
  assert (code, body) == (200, {"predictions": [{"sum": 6.0, "a2": [2.0, 4.0]}, {"sum": 0.75, "a2": [1.0, 0.5]}]})
  code, body = server.rest("POST", "/v1/models/multi:predict", {"inputs": {"a": [[1, 2], [3, 4]], "n": [1, 2]}})
  assert (code, body) == (200, {"outputs": {"sum": [4.0, 9.0], "a2": [[2.0, 4.0], [6.0, 8.0]]}})

  # Strings, plain or base64.
  code, body = server.rest(
    "POST",
    "/v1/models/multi:predict",
    {"signature_name": "echo", "instances": ["ab", {"b64": base64.b64encode(b"xyz").decode()}]},
  )
  assert (code, body) == (200, {"predictions": [{"length": 2, "upper": "AB"}, {"length": 3, "upper": "XYZ"}]})

  # A recurrent policy: the state is just more named inputs.
  code, body = server.rest(
    "POST",
    "/v1/models/cartpole_lstm:predict",
    {"instances": [{"observation": [0.0, 0.1, 0.0, -0.1], "state_0": [0.0] * 8, "state_1": [0.0] * 8}]},
  )
  assert code == 200, body
  prediction = body["predictions"][0]
  assert set(prediction) == {"action", "greedy_action", "logits", "value", "state_0", "state_1"}
  assert len(prediction["state_0"]) == 8 and prediction["greedy_action"] in (0, 1)


def test_rest_errors(server):
  cases = [
    ("/v1/models/nope:predict", {"instances": [1.0]}, 404, "Servable not found for request: Latest(nope)"),
    ("/v1/models/half/versions/9:predict", {"instances": [1.0]}, 404, "Specific(half, 9)"),
    ("/v1/models/half/labels/nightly:predict", {"instances": [1.0]}, 400, "Unrecognized servable version label"),
    ("/v1/models/half/versions/x1:predict", {"instances": [1.0]}, 400, "Failed to convert version"),
    ("/v1/models/half:predict", {"instances": ["a"]}, 400, "not of expected type: float32"),
    ("/v1/models/half:predict", {"instances": [1.5, "a"]}, 400, 'value "a" is not of expected type: float32'),
    ("/v1/models/multi:predict", {"instances": [{"a": [1, 2], "n": 2**40}]}, 400, "out of range for int32"),
    ("/v1/models/half:predict", {"instances": [[1.0], [2.0]]}, 400, "input 'x' has shape [2, 1]"),
    ("/v1/models/half:predict", {"inputs": {"x": [1.0], "w": [2.0]}}, 400, "Send extra: {w}"),
    ("/v1/models/half:predict", {"instances": [1.0], "inputs": [1.0]}, 400, "Both 'inputs' and 'instances'"),
    ("/v1/models/half:predict", {"signature_name": 3, "inputs": [1.0]}, 400, "'signature_name' key must be a string"),
    ("/v1/models/half:predict", {"x": [1.0]}, 400, "Missing 'inputs' or 'instances' key"),
    (
      "/v1/models/multi:predict",
      {"instances": [{"a": [1, 2], "n": 1}, {"a": [1, 2]}]},
      400,
      "Failed to process element: 1",
    ),
    ("/v1/models/multi:predict", {"instances": [{"a": [1, 2, 3], "n": 1}]}, 400, "input 'a' has shape [1, 3]"),
    ("/v1/models/multi:predict", {"instances": [{"a": [1, 2], "n": 1.5}]}, 400, "not of expected type: int32"),
    ("/v1/models/multi:predict", {"instances": [[1, 2]]}, 400, "objects keyed by input name"),
    ("/v1/models/multi:predict", {"inputs": {"a": [[1, 2], [3]], "n": [1, 1]}}, 400, "input 'a'"),
    ("/v1/models/half:predict", {"signature_name": "checked", "inputs": [-2.0]}, 400, "x must be >= 0"),
    ("/v1/models/half:classify", {"examples": []}, 501, "not implemented"),
    ("/v1/models/half:regress", {"examples": []}, 501, "not implemented"),
  ]
  for path, body, want_code, message in cases:
    code, answer = server.rest("POST", path, body)
    assert code == want_code and message in answer["error"], (path, body, code, answer)
  for raw, message in [
    (b"instances = [1, 2]", "JSON Parse error"),
    (b"", "JSON Parse error: The document is empty"),
    (b'{"instances": [1.0', "JSON Parse error"),
    (b"[1, 2]", "JSON object"),
    (b"\xff\xfe", "JSON Parse error"),
  ]:
    code, answer = server.rest("POST", "/v1/models/half:predict", raw=raw)
    assert code == 400 and message in answer["error"], (raw, answer)
  code, answer = server.rest("GET", "/v1/models/half:predict")
  assert code == 400 and "Malformed request" in answer["error"]
  code, answer = server.rest("GET", "/index.html")
  assert code == 404 and "error" in answer
  # Still serving.
  assert server.rest("POST", "/v1/models/half:predict", {"instances": [0.0]}) == (200, {"predictions": [2.0]})
