#include "stream_frame.h"

#include <cstring>

namespace seed_stream {
namespace {

template <typename T>
void Put(T value, std::string* out) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));  // little-endian hosts only (x86-64, aarch64)
  out->append(bytes, sizeof(T));
}

template <typename T>
bool Take(std::string_view* data, T* value) {
  if (data->size() < sizeof(T)) return false;
  std::memcpy(value, data->data(), sizeof(T));
  data->remove_prefix(sizeof(T));
  return true;
}

// The header with a placeholder length; returns where the length goes.
size_t PutHeader(FrameKind kind, uint64_t id, std::string* out) {
  Put(static_cast<uint8_t>(kind), out);
  Put(id, out);
  size_t at = out->size();
  Put(uint32_t{0}, out);
  return at;
}

// `detached`: payload bytes that follow the frame outside `out`.
void PatchLength(size_t at, std::string* out, size_t detached = 0) {
  uint32_t length = static_cast<uint32_t>(out->size() - at - sizeof(uint32_t) + detached);
  std::memcpy(&(*out)[at], &length, sizeof(length));
}

bool Fail(const std::string& what, std::string* error) {
  *error = "malformed stream frame: " + what;
  return false;
}

}  // namespace

void AppendCallHeader(uint64_t id, int64_t timeout_us, std::string_view method, size_t payload_size,
                      std::string* out) {
  size_t at = PutHeader(FrameKind::kCall, id, out);
  Put(timeout_us, out);
  Put(static_cast<uint32_t>(method.size()), out);
  out->append(method);
  PatchLength(at, out, payload_size);
}

void AppendCall(uint64_t id, int64_t timeout_us, std::string_view method, std::string_view payload,
                std::string* out) {
  AppendCallHeader(id, timeout_us, method, payload.size(), out);
  out->append(payload);
}

void AppendCancel(uint64_t id, std::string* out) {
  size_t at = PutHeader(FrameKind::kCancel, id, out);
  PatchLength(at, out);
}

void AppendReplyHeader(uint64_t id, int32_t code, std::string_view message, size_t body_size,
                       std::string* out) {
  size_t at = PutHeader(FrameKind::kReply, id, out);
  Put(code, out);
  Put(static_cast<uint32_t>(message.size()), out);
  out->append(message);
  PatchLength(at, out, code == 0 ? body_size : 0);
}

void AppendReply(uint64_t id, int32_t code, std::string_view message, std::string_view body,
                 std::string* out) {
  AppendReplyHeader(id, code, message, body.size(), out);
  if (code == 0) out->append(body);
}

bool NextFrame(std::string_view* data, Frame* frame, std::string* error, size_t detached) {
  uint8_t kind;
  uint32_t length;
  if (!Take(data, &kind) || !Take(data, &frame->id) || !Take(data, &length)) {
    return Fail("truncated header", error);
  }
  if (detached > 0) {
    if (length != data->size() + detached || (kind != static_cast<uint8_t>(FrameKind::kCall) &&
                                              kind != static_cast<uint8_t>(FrameKind::kReply))) {
      return Fail("a detached payload that does not end the only call or reply of its message", error);
    }
    length = static_cast<uint32_t>(data->size());
  }
  if (length > data->size()) {
    return Fail("length " + std::to_string(length) + " runs past the message (" +
                    std::to_string(data->size()) + " bytes left)",
                error);
  }
  std::string_view rest = data->substr(0, length);
  data->remove_prefix(length);
  frame->method = frame->message = frame->payload = {};
  frame->timeout_us = -1;
  frame->code = 0;
  switch (static_cast<FrameKind>(kind)) {
    case FrameKind::kCall: {
      frame->kind = FrameKind::kCall;
      uint32_t method_size;
      if (!Take(&rest, &frame->timeout_us) || !Take(&rest, &method_size)) {
        return Fail("truncated call", error);
      }
      if (frame->timeout_us < -1) return Fail("negative timeout", error);
      if (method_size == 0 || method_size > kMaxMethodSize || method_size > rest.size()) {
        return Fail("method length " + std::to_string(method_size), error);
      }
      frame->method = rest.substr(0, method_size);
      frame->payload = rest.substr(method_size);
      return true;
    }
    case FrameKind::kCancel:
      frame->kind = FrameKind::kCancel;
      if (!rest.empty()) return Fail("cancel with a body", error);
      return true;
    case FrameKind::kReply: {
      frame->kind = FrameKind::kReply;
      uint32_t message_size;
      if (!Take(&rest, &frame->code) || !Take(&rest, &message_size)) {
        return Fail("truncated reply", error);
      }
      if (frame->code < 0 || frame->code > kMaxStatusCode) {
        return Fail("status code " + std::to_string(frame->code), error);
      }
      if (message_size > rest.size()) return Fail("message length " + std::to_string(message_size), error);
      frame->message = rest.substr(0, message_size);
      frame->payload = rest.substr(message_size);
      if (frame->code != 0 && (!frame->payload.empty() || detached > 0)) {
        return Fail("a failed reply with a body", error);
      }
      return true;
    }
  }
  return Fail("unknown kind " + std::to_string(kind), error);
}

size_t LonePayloadOffset(std::string_view head, size_t total) {
  if (head.size() > total) return 0;
  // The frame parsed with whatever of it lies past `head` detached: its
  // payload view, if any, then starts inside `head`.
  std::string_view data = head;
  Frame frame;
  std::string error;
  const size_t detached = total - head.size();
  if (!NextFrame(&data, &frame, &error, detached) || !data.empty()) return 0;
  if (frame.kind == FrameKind::kCancel || frame.code != 0) return 0;
  return frame.payload.empty() ? head.size() : static_cast<size_t>(frame.payload.data() - head.data());
}

}  // namespace seed_stream
