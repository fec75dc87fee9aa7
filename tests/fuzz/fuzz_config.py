"""atheris target: seed.serve's TF Serving model config parser (ModelServerConfig text proto).

    .venv/bin/python tests/fuzz/fuzz_config.py [libFuzzer flags] WORK_CORPUS_DIR tests/fuzz/corpus/config

Each input is a config file's text. parse_config_text must return configs or raise
ValueError with a message (seed.serve then refuses the file); any other exception is a finding.
"""

import sys

import atheris

with atheris.instrument_imports(include=["seed"]):
  from seed.serving.config import parse_config_text


def test_one_input(data: bytes) -> None:
  try:
    text = data.decode("utf-8")
  except UnicodeDecodeError:
    return  # seed.serve reads the file as UTF-8 and reports the decode error
  try:
    parse_config_text(text)
  except ValueError:
    return


def main() -> None:
  atheris.Setup(sys.argv, test_one_input)
  atheris.Fuzz()


if __name__ == "__main__":
  main()
