// Framing of calls on a long-lived bidirectional stream (issue 26).
//
// One gRPC message on a stream carries one or more frames, back to back, so a
// batch that answers many callers at once can reply in a single write. Each
// frame is self-delimiting:
//
//   u8 kind, u64 call id, u32 length of the rest, then by kind:
//     kCall:   i64 timeout_us (-1: none), u32 method length, method, payload (the rest)
//     kCancel: nothing
//     kReply:  i32 status code (gRPC's canonical 0-16), u32 message length,
//              message, body (the rest; only when the code is OK)
//
// Integers are little-endian. Parsing checks every bound and returns an error
// string for anything malformed, never reads past the input and never copies a
// payload: the views point into the message, which must outlive them. Only
// std:: types: the same code serves the op's gRPC side and clients without
// TensorFlow.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace seed_stream {

enum class FrameKind : uint8_t { kCall = 1, kCancel = 2, kReply = 3 };

inline constexpr size_t kHeaderSize = 1 + 8 + 4;
inline constexpr size_t kMaxMethodSize = 1024;
inline constexpr int32_t kMaxStatusCode = 16;  // UNAUTHENTICATED

struct Frame {
  FrameKind kind = FrameKind::kCall;
  uint64_t id = 0;
  int64_t timeout_us = -1;   // kCall
  std::string_view method;   // kCall
  int32_t code = 0;          // kReply
  std::string_view message;  // kReply
  std::string_view payload;  // kCall: the request; kReply: the body
};

void AppendCall(uint64_t id, int64_t timeout_us, std::string_view method, std::string_view payload,
                std::string* out);
void AppendCancel(uint64_t id, std::string* out);
void AppendReply(uint64_t id, int32_t code, std::string_view message, std::string_view body,
                 std::string* out);
// A frame without its payload (`payload_size` bytes the caller sends right
// after it, e.g. as a slice of its own, so a large tensor is never copied).
void AppendCallHeader(uint64_t id, int64_t timeout_us, std::string_view method, size_t payload_size,
                      std::string* out);
void AppendReplyHeader(uint64_t id, int32_t code, std::string_view message, size_t body_size,
                       std::string* out);

// Parses the first frame of *data into *frame and advances *data past it.
// On malformed input returns false with *error saying what is wrong (*data is
// then unspecified: the stream that sent it is broken). With `detached` > 0,
// *data is a message's only frame without its last `detached` bytes (its
// payload, which the caller holds apart: see LonePayloadOffset);
// frame->payload is then empty.
bool NextFrame(std::string_view* data, Frame* frame, std::string* error, size_t detached = 0);

// Where the payload starts when a message of `total` bytes, whose first bytes
// are `head`, is one call or one OK reply and `head` reaches that point; 0
// otherwise (several frames, or anything NextFrame would reject).
size_t LonePayloadOffset(std::string_view head, size_t total);

}  // namespace seed_stream
