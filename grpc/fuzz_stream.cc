// libFuzzer target: the stream framing (grpc/stream_frame.h) on arbitrary bytes.
//
// Built by seed.rpc.build_op.fuzz_stream_path() with clang (ASan + UBSan); run by scripts/fuzz.sh
// and, briefly, by tests/test_fuzz.py. Every message is parsed frame by frame until it ends or a
// frame is rejected; each parsed frame's views must lie inside the input, and re-encoding it must
// parse back to the same fields.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "stream_frame.h"

namespace {

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_stream: invariant broken: %s\n", what);
    std::abort();
  }
}

bool Inside(std::string_view v, const uint8_t* data, size_t size) {
  const char* begin = reinterpret_cast<const char*>(data);
  return v.empty() || (v.data() >= begin && v.data() + v.size() <= begin + size);
}

void Reencode(const seed_stream::Frame& f) {
  std::string out;
  switch (f.kind) {
    case seed_stream::FrameKind::kCall:
      seed_stream::AppendCall(f.id, f.timeout_us, f.method, f.payload, &out);
      break;
    case seed_stream::FrameKind::kCancel:
      seed_stream::AppendCancel(f.id, &out);
      break;
    case seed_stream::FrameKind::kReply:
      seed_stream::AppendReply(f.id, f.code, f.message, f.payload, &out);
      break;
  }
  std::string_view view(out);
  seed_stream::Frame g;
  std::string error;
  Check(seed_stream::NextFrame(&view, &g, &error) && view.empty(), "a parsed frame re-encodes to a valid one");
  Check(g.kind == f.kind && g.id == f.id && g.timeout_us == f.timeout_us && g.code == f.code, "same header");
  Check(g.method == f.method && g.message == f.message && g.payload == f.payload, "same fields");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view view(reinterpret_cast<const char*>(data), size);
  seed_stream::Frame frame;
  std::string error;
  while (!view.empty()) {
    size_t before = view.size();
    if (!seed_stream::NextFrame(&view, &frame, &error)) {
      Check(!error.empty(), "a rejection says why");
      break;
    }
    Check(view.size() < before, "every frame consumes bytes");
    Check(Inside(frame.method, data, size) && Inside(frame.message, data, size) && Inside(frame.payload, data, size),
          "views inside the input");
    Reencode(frame);
  }
  return 0;
}
