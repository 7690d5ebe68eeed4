package mux

import "crypto/tls"

// tls12Suites are the TLS 1.2 suites nexmux offers: ECDHE with AEAD only.
// CBC suites (Lucky13-style padding oracles) and static-RSA key exchange
// (no forward secrecy) are left out; every client that speaks the Registry
// API has these. TLS 1.3 suites are not configurable and stay Go's.
var tls12Suites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}
