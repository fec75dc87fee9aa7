#!/usr/bin/env bash
# Makes what a SEED run across hosts needs for TLS + bearer token (and optionally mutual TLS): a private CA, a
# learner (server) certificate, an actor (client) certificate and a token. Needs only bash and openssl.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: make_certs.sh [--force] OUTDIR [HOSTNAME ...]

Creates in OUTDIR (made with mode 0700):
  ca.crt, ca.key            a private CA (keep ca.key here: no host needs it)
  learner.crt, learner.key  the learner's server certificate, valid for every HOSTNAME
                            (default: localhost) plus localhost and 127.0.0.1; IPv4 addresses become IP SANs
  actor.crt, actor.key      a client certificate for actors, for mutual TLS
  token                     a random bearer token (64 hex digits)
Keys are EC P-256, signatures SHA-256, certificates valid for 825 days; keys and token are mode 0600.

If OUTDIR already holds the full set (covering every HOSTNAME), nothing is done (exit 0); if it holds
only part of it, or the certificate lacks a HOSTNAME, make_certs.sh stops (exit 2) unless --force is given.

Options:
  --force     replace existing files
  -h, --help  show this help
EOF
}

die_usage() {
  echo "make_certs.sh: $*" >&2
  echo "Try 'make_certs.sh --help'." >&2
  exit 2
}

force=0
positional=()
while (($#)); do
  case "$1" in
    --force) force=1 ;;
    -h | --help)
      usage
      exit 0
      ;;
    --)
      shift
      positional+=("$@")
      break
      ;;
    -*) die_usage "unknown option: $1" ;;
    *) positional+=("$1") ;;
  esac
  shift
done
((${#positional[@]} >= 1)) || die_usage "missing OUTDIR"
outdir=${positional[0]}
hostnames=("${positional[@]:1}")
((${#hostnames[@]})) || hostnames=(localhost)

command -v openssl >/dev/null || {
  echo "make_certs.sh: openssl is not installed" >&2
  exit 1
}

is_ipv4() {
  local IFS=. octet
  local -a octets
  [[ $1 =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] || return 1
  read -ra octets <<<"$1"
  for octet in "${octets[@]}"; do
    ((10#$octet <= 255)) || return 1
  done
}
is_dns() { [[ $1 =~ ^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$ ]]; }

# Subject alternative names, deduplicated, in the order given; localhost and 127.0.0.1 always.
sans=()
add_san() {
  local san
  for san in "${sans[@]}"; do
    [[ $san == "$1" ]] && return 0
  done
  sans+=("$1")
}
for h in "${hostnames[@]}"; do
  if is_ipv4 "$h"; then
    add_san "IP:$h"
  elif [[ $h == *:* ]]; then
    die_usage "IPv6 addresses are not supported: '$h'"
  elif [[ $h =~ ^[0-9.]+$ ]]; then
    die_usage "not an IPv4 address: '$h'"
  elif is_dns "$h"; then
    add_san "DNS:$h"
  else
    die_usage "not a host name or IP address: '$h'"
  fi
done
add_san "DNS:localhost"
add_san "IP:127.0.0.1"

files=(ca.crt ca.key learner.crt learner.key actor.crt actor.key token)
present=()
for f in "${files[@]}"; do
  [[ -e $outdir/$f ]] && present+=("$f")
done
if ((${#present[@]} && !force)); then
  if ((${#present[@]} < ${#files[@]})); then
    missing=()
    for f in "${files[@]}"; do
      [[ -e $outdir/$f ]] || missing+=("$f")
    done
    echo "make_certs.sh: $outdir holds part of a set (missing: ${missing[*]}); use --force to replace it" >&2
    exit 2
  fi
  # A complete set is fine as long as it is valid for the names asked for now.
  have=$(openssl x509 -in "$outdir/learner.crt" -noout -ext subjectAltName 2>/dev/null | tail -n +2 | tr -d ' ')
  missing=()
  for san in "${sans[@]}"; do
    [[ ,$have, == *,"${san/#IP:/IPAddress:}",* ]] || missing+=("${san#*:}")
  done
  if ((${#missing[@]})); then
    echo "make_certs.sh: $outdir/learner.crt is not valid for: ${missing[*]}; use --force to replace the set" >&2
    exit 2
  fi
  echo "certificates already in $outdir (use --force to replace)"
  exit 0
fi

umask 077
if [[ ! -d $outdir ]]; then
  mkdir -p -m 0700 "$outdir"
elif [[ -n $(find "$outdir" -maxdepth 0 -perm /077) ]]; then
  echo "make_certs.sh: warning: $outdir is accessible to other users; keys and token stay 0600" >&2
fi

# Everything is made in a scratch dir and moved in at the end: a failure never leaves a half-made set.
work=$(mktemp -d "$outdir/.make_certs.XXXXXX")
trap 'rm -rf "$work"' EXIT

san_list=$(IFS=,; echo "${sans[*]}")
cat >"$work/openssl.cnf" <<EOF
# Own config, so the system openssl.cnf cannot add or change extensions.
[req]
distinguished_name = dn
prompt = no
[dn]
[ca_ext]
basicConstraints = critical,CA:true
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[learner_ext]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = $san_list
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[actor_ext]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF

days=825
ssl() { openssl "$@" 2>>"$work/openssl.log" || {
  echo "make_certs.sh: openssl $1 failed:" >&2
  cat "$work/openssl.log" >&2
  exit 1
}; }
newkey() { ssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/$1.key"; }
serial() { echo "0x1$(openssl rand -hex 15)"; } # random, positive, 124 bits: no serial file to keep

newkey ca
ssl req -config "$work/openssl.cnf" -new -x509 -key "$work/ca.key" -sha256 -days "$days" -set_serial "$(serial)" \
  -subj "/O=SEED/CN=SEED run CA $(date -u +%Y-%m-%dT%H:%M:%SZ)" -extensions ca_ext -out "$work/ca.crt"

leaf() { # name, common name
  newkey "$1"
  ssl req -config "$work/openssl.cnf" -new -key "$work/$1.key" -subj "/O=SEED/CN=$2" -out "$work/$1.csr"
  ssl x509 -req -in "$work/$1.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -set_serial "$(serial)" -sha256 \
    -days "$days" -extfile "$work/openssl.cnf" -extensions "$1_ext" -out "$work/$1.crt"
}
leaf learner "${hostnames[0]}"
leaf actor actor
ssl verify -CAfile "$work/ca.crt" -purpose sslserver "$work/learner.crt" >/dev/null
ssl verify -CAfile "$work/ca.crt" -purpose sslclient "$work/actor.crt" >/dev/null
ssl rand -hex 32 >"$work/token"

chmod 0644 "$work"/*.crt
chmod 0600 "$work"/*.key "$work/token"
for f in "${files[@]}"; do
  mv -f "$work/$f" "$outdir/$f"
done

cat <<EOF
Made in $outdir: CA, learner certificate for ${sans[*]}, actor certificate, token.
  learner host: learner.crt learner.key token, and ca.crt for mutual TLS (--tls_ca)
  actor hosts:  ca.crt token, and actor.crt actor.key for mutual TLS
  ca.key:       stays here (or offline); no host needs it
Keep keys and token private (mode 0600); copy them over a secure channel (e.g. scp).
EOF
