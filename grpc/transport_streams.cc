// Calls on long-lived bidirectional streams, what both sides share: the
// frame buffer that writes large payloads without copying them and the
// reader that copies each received byte once (transport_streams.h). The
// server's session is stream_session.cc, the client's pool stream_pool.cc.
// Compiled like transport.cc: gRPC headers only, hidden visibility.
#include "transport_streams.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "stream_frame.h"

namespace seed_transport {

int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void FrameBuffer::CloseBytes() {
  if (bytes_.empty()) return;
  slices_.push_back(OwnedSlice(std::move(bytes_)));
  bytes_.clear();
}

void FrameBuffer::AppendOwned(std::string&& payload) {
  CloseBytes();
  slices_.push_back(OwnedSlice(std::move(payload)));
}

void FrameBuffer::AppendPayload(std::string&& payload) {
  if (payload.size() >= kOwnSlice) {
    AppendOwned(std::move(payload));
  } else {
    bytes_.append(payload);
  }
}

void FrameBuffer::Clear() {
  bytes_.clear();
  slices_.clear();
}

grpc::ByteBuffer FrameBuffer::Take() {
  CloseBytes();
  grpc::ByteBuffer out(slices_.data(), slices_.size());
  slices_.clear();
  return out;
}

ReadMessage::ReadMessage(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) return;
  const size_t total = buffer.Length();
  // The first bytes say whether the message is one frame with a large payload.
  constexpr size_t kPeek = seed_stream::kHeaderSize + 16 + seed_stream::kMaxMethodSize;
  std::string peek;
  for (const auto& s : slices) {
    if (peek.size() >= kPeek) break;
    peek.append(reinterpret_cast<const char*>(s.begin()), std::min(s.size(), kPeek - peek.size()));
  }
  size_t split = seed_stream::LonePayloadOffset(peek, total);
  if (split == 0 || total - split < FrameBuffer::kOwnSlice) split = total;
  head.reserve(split);
  payload.reserve(total - split);
  size_t at = 0;
  for (const auto& s : slices) {
    const char* p = reinterpret_cast<const char*>(s.begin());
    size_t n = s.size(), in_head = at < split ? std::min(n, split - at) : 0;
    head.append(p, in_head);
    payload.append(p + in_head, n - in_head);
    at += n;
  }
}

}  // namespace seed_transport
