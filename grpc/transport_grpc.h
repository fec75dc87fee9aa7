// What the transport's gRPC translation units share (transport*.cc,
// stream_session.cc, stream_pool.cc): gRPC types appear here, so no
// TensorFlow code may include it (see transport.h).
#pragma once

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/support/byte_buffer.h>

#include <memory>
#include <string>

#include "transport.h"

namespace seed_transport {

// A slice (or a one-slice ByteBuffer) owning `s`: its bytes are never copied.
grpc::Slice OwnedSlice(std::string&& s);
grpc::ByteBuffer ToByteBuffer(std::string&& s);
std::string FromByteBuffer(const grpc::ByteBuffer& buffer);

// ---- security (transport_security.cc)

// TLS credentials for the server's TCP addresses and the SHA-256 of its
// token (empty: none required), read from the files in `sec`.
bool LoadServerSecurity(const ServerSecurity& sec, std::shared_ptr<grpc::ServerCredentials>* tcp_credentials,
                        std::string* token_digest, std::string* error);
// Whether a call or stream may go on: unix peers always (owner-only socket),
// TCP peers when no token is required or they carry it. Constant time. On
// false, *reason says why (never the token).
bool TokenAccepted(const std::string& token_digest, const grpc::GenericServerContext& ctx, const char** reason);
// A channel's credentials, TLS arguments and "Bearer <token>" (or empty).
bool LoadChannelSecurity(const ChannelSecurity& sec, std::shared_ptr<grpc::ChannelCredentials>* credentials,
                         grpc::ChannelArguments* args, std::string* authorization, std::string* error);
// What to add to an UNAVAILABLE message from a TCP peer (TLS mismatch hints).
std::string ConnectHint(bool tls, const std::string& message);

}  // namespace seed_transport
