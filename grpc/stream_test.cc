// Unit test of the stream framing and the client's in-flight table: plain C++,
// no gRPC, no TensorFlow. Prints "PASS <case>" or "FAIL <case>" per case and
// exits non-zero if any failed. Built by build_op.stream_test_path().
#include <atomic>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cc_test.h"
#include "stream_calls.h"
#include "stream_frame.h"

using namespace seed_stream;  // NOLINT

namespace {

bool Parses(std::string_view data, Frame* frame, std::string* error = nullptr) {
  std::string ignored;
  return NextFrame(&data, frame, error ? error : &ignored) && data.empty();
}

bool Rejected(const std::string& data, const std::string& needle) {
  std::string_view view(data);
  Frame frame;
  std::string error;
  bool ok = NextFrame(&view, &frame, &error);
  if (ok || error.find(needle) == std::string::npos) {
    std::printf("  wanted an error with '%s', got ok=%d '%s'\n", needle.c_str(), ok, error.c_str());
    return false;
  }
  return true;
}

void RoundTrip() {
  std::string big(3 << 20, 'x');  // a payload larger than a default gRPC message
  big[12345] = '\0';
  std::string message;
  AppendCall(7, 2500, "inference", big, &message);
  AppendCancel(9, &message);
  AppendReply(7, 0, "", "answer\0bytes", &message);
  AppendReply(8, 4, "the call's deadline passed", "ignored: a failed reply carries no body", &message);
  AppendCall(10, -1, "m", "", &message);
  std::string_view data(message);
  Frame f;
  std::string error;
  EXPECT(NextFrame(&data, &f, &error));
  EXPECT(f.kind == FrameKind::kCall && f.id == 7 && f.timeout_us == 2500 && f.method == "inference");
  EXPECT(f.payload == big);
  EXPECT(NextFrame(&data, &f, &error));
  EXPECT(f.kind == FrameKind::kCancel && f.id == 9 && f.payload.empty());
  EXPECT(NextFrame(&data, &f, &error));
  EXPECT(f.kind == FrameKind::kReply && f.id == 7 && f.code == 0 && f.message.empty() && f.payload == "answer");
  EXPECT(NextFrame(&data, &f, &error));
  EXPECT(f.kind == FrameKind::kReply && f.id == 8 && f.code == 4 && f.message == "the call's deadline passed");
  EXPECT(f.payload.empty());
  EXPECT(NextFrame(&data, &f, &error));
  EXPECT(f.kind == FrameKind::kCall && f.id == 10 && f.timeout_us == -1 && f.method == "m" && f.payload.empty());
  EXPECT(data.empty());
  // The views point into the message: nothing was copied.
  std::string one;
  AppendCall(1, -1, "x", "payload", &one);
  EXPECT(Parses(one, &f) && f.payload.data() >= one.data() && f.payload.data() < one.data() + one.size());
}

// A frame whose payload travels apart (a slice of its own): the header says the
// whole length, LonePayloadOffset finds where the payload starts, and NextFrame
// parses the rest with the payload detached; several frames, or a payload that
// does not end the message, are refused.
void DetachedPayload() {
  const std::string payload(10000, 'p');
  std::string call_head, reply_head, failed_head;
  AppendCallHeader(3, 100, "method", payload.size(), &call_head);
  AppendReplyHeader(4, 0, "", payload.size(), &reply_head);
  AppendReplyHeader(5, 13, "boom", payload.size(), &failed_head);  // a failed reply has no body
  std::string whole;
  AppendCall(3, 100, "method", payload, &whole);
  EXPECT(call_head + payload == whole);
  EXPECT_EQ(LonePayloadOffset(call_head, call_head.size() + payload.size()), call_head.size());
  EXPECT_EQ(LonePayloadOffset(reply_head, reply_head.size() + payload.size()), reply_head.size());
  EXPECT_EQ(LonePayloadOffset(call_head, call_head.size() + payload.size() + 1), 0u);  // more than one frame
  EXPECT_EQ(LonePayloadOffset(failed_head, failed_head.size()), 0u);
  EXPECT_EQ(LonePayloadOffset(call_head.substr(0, 5), 100), 0u);  // too short to tell
  Frame f;
  std::string error;
  std::string_view data(call_head);
  EXPECT(NextFrame(&data, &f, &error, payload.size()) && data.empty());
  EXPECT(f.kind == FrameKind::kCall && f.id == 3 && f.timeout_us == 100 && f.method == "method" && f.payload.empty());
  data = reply_head;
  EXPECT(NextFrame(&data, &f, &error, payload.size()) && f.kind == FrameKind::kReply && f.id == 4 && f.code == 0);
  data = call_head;
  EXPECT(!NextFrame(&data, &f, &error, payload.size() + 1));  // the lengths disagree
  std::string cancel;
  AppendCancel(6, &cancel);
  data = cancel;
  EXPECT(!NextFrame(&data, &f, &error, 10));
  data = failed_head;
  EXPECT(!NextFrame(&data, &f, &error, 10));
}

void Malformed() {
  std::string call;
  AppendCall(1, 100, "method", "payload", &call);
  EXPECT(Rejected("", "truncated header"));
  EXPECT(Rejected(call.substr(0, 12), "truncated header"));
  EXPECT(Rejected(call.substr(0, call.size() - 1), "runs past the message"));
  std::string bad_kind = call;
  bad_kind[0] = 9;
  EXPECT(Rejected(bad_kind, "unknown kind 9"));
  std::string no_method;
  AppendCall(1, 100, "", "payload", &no_method);
  EXPECT(Rejected(no_method, "method length 0"));
  std::string long_method;
  AppendCall(1, 100, std::string(kMaxMethodSize + 1, 'm'), "", &long_method);
  EXPECT(Rejected(long_method, "method length 1025"));
  std::string negative;
  AppendCall(1, -2, "m", "", &negative);
  EXPECT(Rejected(negative, "negative timeout"));
  std::string cancel;
  AppendCancel(3, &cancel);
  cancel[9] = 1;  // claims a one-byte body
  cancel.push_back('x');
  EXPECT(Rejected(cancel, "cancel with a body"));
  std::string bad_code;
  AppendReply(1, 17, "", "", &bad_code);
  EXPECT(Rejected(bad_code, "status code 17"));
  std::string failed_with_body;
  AppendReply(1, 0, "oops", "body", &failed_with_body);
  failed_with_body[13] = 3;  // code OK -> INVALID_ARGUMENT, the body left in
  EXPECT(Rejected(failed_with_body, "a failed reply with a body"));
  std::string long_message;
  AppendReply(1, 3, "msg", "", &long_message);
  long_message[17] = 100;  // message length beyond the frame
  EXPECT(Rejected(long_message, "message length 100"));
}

void GarbageNeverReadsPastTheInput() {
  // Random bytes and random corruptions of valid messages: each either parses
  // to views inside the input or is rejected (ASan in the fuzz build checks reads).
  std::mt19937 rng(1);
  std::string valid;
  AppendCall(5, 10, "inference", "0123456789", &valid);
  AppendReply(5, 0, "", "abc", &valid);
  int parsed = 0, rejected = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string data = valid;
    if (i % 2) {
      data.assign(rng() % 64, '\0');
      for (char& c : data) c = static_cast<char>(rng());
    } else {
      data[rng() % data.size()] = static_cast<char>(rng());
    }
    std::string_view view(data);
    Frame f;
    std::string error;
    while (!view.empty()) {
      if (!NextFrame(&view, &f, &error)) {
        ++rejected;
        break;
      }
      ++parsed;
      const char* end = data.data() + data.size();
      for (std::string_view v : {f.method, f.message, f.payload}) {
        EXPECT(v.empty() || (v.data() >= data.data() && v.data() + v.size() <= end));
      }
    }
  }
  EXPECT(parsed > 0 && rejected > 0);
}

struct Result {
  std::atomic<int> calls{0};
  std::atomic<int> code{-1};
  std::string body;
  InFlight::Done Done() {
    return [this](int c, std::string, std::string b) {
      body = std::move(b);
      code = c;
      ++calls;
    };
  }
};

void EachCallEndsOnce() {
  InFlight table(8);
  Result a, b, c, d;
  int code;
  std::string message;
  uint64_t ia = table.Add(a.Done(), -1, &code, &message);
  uint64_t ib = table.Add(b.Done(), 1000, &code, &message);
  uint64_t ic = table.Add(c.Done(), 500, &code, &message);
  uint64_t id = table.Add(d.Done(), -1, &code, &message);
  EXPECT(ia && ib && ic && id && table.size() == 4 && table.NextDeadline() == 500);
  EXPECT(table.Complete(ia, 0, "", "reply"));
  EXPECT(a.calls == 1 && a.code == 0 && a.body == "reply");
  EXPECT(!table.Complete(ia, 0, "", "a second reply"));  // dropped
  EXPECT(table.Expire(499).empty());
  std::vector<uint64_t> expired = table.Expire(1000);
  EXPECT(expired.size() == 2 && expired[0] == ic && expired[1] == ib);
  EXPECT(c.code == kDeadlineExceeded && b.code == kDeadlineExceeded && table.NextDeadline() == -1);
  EXPECT(!table.Complete(ib, 0, "", "late"));  // a reply after the deadline is dropped
  EXPECT(table.Cancel(id) && d.code == kCancelled && !table.Cancel(id));
  EXPECT(a.calls == 1 && b.calls == 1 && c.calls == 1 && d.calls == 1 && table.size() == 0);
}

void BoundAndClose() {
  InFlight table(2);
  Result a, b, refused, after;
  int code = 0;
  std::string message;
  EXPECT(table.Add(a.Done(), -1, &code, &message) && table.Add(b.Done(), 10, &code, &message));
  EXPECT(table.Add(refused.Done(), -1, &code, &message) == 0);
  EXPECT(code == kResourceExhausted && message.find("2 calls in flight") != std::string::npos);
  EXPECT(refused.calls == 0);  // a refused call's callback is not kept or run
  table.Close(kUnavailable, "the stream broke");
  EXPECT(a.code == kUnavailable && b.code == kUnavailable && table.size() == 0 && table.closed());
  EXPECT(table.NextDeadline() == -1);
  EXPECT(table.Add(after.Done(), -1, &code, &message) == 0);
  EXPECT(code == kUnavailable && message == "the stream broke" && after.calls == 0);
  table.Close(kCancelled, "again");  // idempotent: nothing left to end
  EXPECT(a.calls == 1 && b.calls == 1);
}

void RacesEndEachCallOnce() {
  // Replies, cancels, expiry and a close race on the same calls from 4 threads.
  constexpr int kCalls = 20000;
  InFlight table(kCalls);
  std::vector<Result> results(kCalls);
  std::vector<uint64_t> ids(kCalls);
  int code;
  std::string message;
  for (int i = 0; i < kCalls; ++i) ids[i] = table.Add(results[i].Done(), i % 3 ? -1 : i, &code, &message);
  std::atomic<int> ended{0};
  std::vector<std::thread> threads;
  threads.emplace_back([&] {
    for (int i = 0; i < kCalls; ++i) ended += table.Complete(ids[i], 0, "", "r");
  });
  threads.emplace_back([&] {
    for (int i = kCalls - 1; i >= 0; --i) ended += table.Cancel(ids[i]);
  });
  threads.emplace_back([&] {
    for (int t = 0; t <= kCalls; t += 97) ended += static_cast<int>(table.Expire(t).size());
  });
  for (auto& t : threads) t.join();
  size_t left = table.size();
  table.Close(kUnavailable, "closed");
  EXPECT(ended + static_cast<int>(left) == kCalls);
  for (const Result& r : results) EXPECT(r.calls == 1);
}

}  // namespace

int main() {
  const std::vector<std::pair<const char*, void (*)()>> cases = {
      {"round_trip", RoundTrip},
      {"detached_payload", DetachedPayload},
      {"malformed", Malformed},
      {"garbage", GarbageNeverReadsPastTheInput},
      {"each_call_ends_once", EachCallEndsOnce},
      {"bound_and_close", BoundAndClose},
      {"races", RacesEndEachCallOnce},
  };
  return seed_cc_test::RunCases(cases);
}
