// Where the transport's secrets are read and checked: TLS credentials from
// PEM files, the bearer token (file or environment variable; only its
// SHA-256 is kept on the server), the per-call token check, and the hints
// that name a TLS mismatch in a connection error.
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "transport_grpc.h"

namespace seed_transport {

bool ReadFile(const std::string& path, const std::string& what,
              std::string* out, std::string* error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = "cannot read " + what + " file '" + path + "'";
    return false;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  if (out->empty()) {
    *error = what + " file '" + path + "' is empty";
    return false;
  }
  return true;
}

namespace {

// A bearer token from a file or an environment variable, without the
// surrounding whitespace (files usually end in a newline).
bool ReadToken(const std::string& file, const std::string& env,
               std::string* token, std::string* error) {
  if (!file.empty() && !env.empty()) {
    *error = "give the auth token as a file or an environment variable, not both";
    return false;
  }
  if (!file.empty()) {
    if (!ReadFile(file, "auth token", token, error)) return false;
  } else {
    const char* value = std::getenv(env.c_str());
    if (value == nullptr) {
      *error = "environment variable " + env + " (the auth token) is not set";
      return false;
    }
    *token = value;
  }
  size_t begin = token->find_first_not_of(" \t\r\n");
  size_t end = token->find_last_not_of(" \t\r\n");
  *token = begin == std::string::npos ? "" : token->substr(begin, end - begin + 1);
  if (token->empty()) {
    *error = "the auth token " + (file.empty() ? "in $" + env : "file '" + file + "'") + " is empty";
    return false;
  }
  return true;
}

std::string Sha256(const char* data, size_t size) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(data, size, digest, &n, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<char*>(digest), n);
}

}  // namespace

bool LoadServerSecurity(const ServerSecurity& sec, std::shared_ptr<grpc::ServerCredentials>* tcp_credentials,
                        std::string* token_digest, std::string* error) {
  *tcp_credentials = grpc::InsecureServerCredentials();
  if (!sec.cert_file.empty() || !sec.key_file.empty()) {
    if (sec.cert_file.empty() || sec.key_file.empty()) {
      *error = "TLS needs both a certificate and a private key file";
      return false;
    }
    grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
    if (!ReadFile(sec.cert_file, "TLS certificate", &pair.cert_chain, error) ||
        !ReadFile(sec.key_file, "TLS private key", &pair.private_key, error)) {
      return false;
    }
    grpc::SslServerCredentialsOptions ssl(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    if (!sec.client_ca_file.empty()) {
      if (!ReadFile(sec.client_ca_file, "client CA", &ssl.pem_root_certs, error)) return false;
      ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
    }
    ssl.pem_key_cert_pairs.push_back(std::move(pair));
    *tcp_credentials = grpc::SslServerCredentials(ssl);
  } else if (!sec.client_ca_file.empty()) {
    *error = "a client CA (mutual TLS) needs the server's own certificate and key";
    return false;
  }
  if (!sec.token_file.empty() || !sec.token_env.empty()) {
    std::string token;
    if (!ReadToken(sec.token_file, sec.token_env, &token, error)) return false;
    *token_digest = Sha256(token.data(), token.size());
  }
  return true;
}

bool TokenAccepted(const std::string& token_digest, const grpc::GenericServerContext& ctx, const char** reason) {
  if (token_digest.empty() || ctx.peer().rfind("unix:", 0) == 0) return true;
  const auto& md = ctx.client_metadata();
  auto it = md.find("authorization");
  std::string presented = it == md.end() ? "" : std::string(it->second.data(), it->second.size());
  constexpr char kBearer[] = "Bearer ";
  bool ok = presented.rfind(kBearer, 0) == 0;
  // Both sides hashed first, so neither the content nor the length leaks.
  std::string digest = Sha256(presented.data() + (ok ? strlen(kBearer) : 0),
                              presented.size() - (ok ? strlen(kBearer) : 0));
  ok = CRYPTO_memcmp(digest.data(), token_digest.data(), digest.size()) == 0 && ok;
  if (!ok) *reason = it == md.end() ? "no auth token" : "wrong auth token";
  return ok;
}

bool LoadChannelSecurity(const ChannelSecurity& sec, std::shared_ptr<grpc::ChannelCredentials>* credentials,
                         grpc::ChannelArguments* args, std::string* authorization, std::string* error) {
  *credentials = grpc::InsecureChannelCredentials();
  if (sec.tls) {
    grpc::SslCredentialsOptions ssl;
    if (!sec.ca_file.empty() && !ReadFile(sec.ca_file, "CA certificate", &ssl.pem_root_certs, error)) return false;
    if (!sec.cert_file.empty() || !sec.key_file.empty()) {
      if (sec.cert_file.empty() || sec.key_file.empty()) {
        *error = "a client certificate (mutual TLS) needs both the certificate and the key file";
        return false;
      }
      if (!ReadFile(sec.cert_file, "client certificate", &ssl.pem_cert_chain, error) ||
          !ReadFile(sec.key_file, "client private key", &ssl.pem_private_key, error)) {
        return false;
      }
    }
    *credentials = grpc::SslCredentials(ssl);
    if (!sec.server_name.empty()) args->SetSslTargetNameOverride(sec.server_name);
  } else if (!sec.ca_file.empty() || !sec.cert_file.empty() || !sec.key_file.empty()) {
    *error = "certificate files given for a channel without TLS";
    return false;
  }
  if (!sec.token_file.empty() || !sec.token_env.empty()) {
    std::string token;
    if (!ReadToken(sec.token_file, sec.token_env, &token, error)) return false;
    *authorization = "Bearer " + token;
  }
  return true;
}

// Why a call found no usable connection, in words naming TLS, appended to
// gRPC's own message (which names the OpenSSL error at best).
std::string ConnectHint(bool tls, const std::string& m) {
  auto has = [&m](const char* s) { return m.find(s) != std::string::npos; };
  if (!tls && (has("Socket closed") || has("Connection reset"))) {
    return " (plaintext connection closed by the server: it probably requires TLS; give the client TLS credentials)";
  }
  if (!tls) return "";
  if (has("wrong version number")) return " (TLS handshake failed: the server does not use TLS)";
  if (has("certificate verify failed")) {
    return " (TLS: the server's certificate is not trusted: not signed by the given CA, expired or not yet valid)";
  }
  if (has("Peer name")) return " (TLS: the server's certificate is not issued for this host name)";
  if (has("Socket closed") || has("Connection reset") || has("handshake")) {
    return " (TLS handshake refused by the server: it may require a client certificate (mutual TLS) it trusts)";
  }
  return "";
}

}  // namespace seed_transport
