// libFuzzer target: the stream framing (grpc/stream_frame.h) on arbitrary bytes.
//
// Built by seed.rpc.build_op.fuzz_stream_path() with clang (ASan + UBSan); run by scripts/fuzz.sh
// and, briefly, by tests/test_fuzz.py. Every message is parsed frame by frame until it ends or a
// frame is rejected; each parsed frame's views must lie inside the input, and re-encoding it must
// parse back to the same fields. The input is also read as the receiver of a large single frame
// does (LonePayloadOffset, then NextFrame with the payload detached): that must agree with the
// whole-message parse.
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
  // As ReadMessage (transport_streams.cc) reads a message: the head, the payload apart.
  std::string_view all(reinterpret_cast<const char*>(data), size);
  size_t split = seed_stream::LonePayloadOffset(all.substr(0, 1100), size);
  if (split > 0) {
    Check(split <= size, "the payload starts inside the message");
    std::string_view whole = all, head = all.substr(0, split);
    seed_stream::Frame a, b;
    bool whole_ok = seed_stream::NextFrame(&whole, &a, &error) && whole.empty();
    bool head_ok = seed_stream::NextFrame(&head, &b, &error, size - split) && head.empty();
    if (split < size) Check(whole_ok == head_ok, "a detached parse agrees with the whole one");
    if (whole_ok && head_ok) {
      Check(a.kind == b.kind && a.id == b.id && a.method == b.method && a.code == b.code, "same frame");
      Check(a.payload == all.substr(split), "the payload is what follows the head");
    }
  }
  return 0;
}
