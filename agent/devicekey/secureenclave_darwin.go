//go:build darwin && cgo

package devicekey

import (
	// Registers the mackms key manager (Keychain and Secure Enclave).
	_ "go.step.sm/crypto/kms/mackms"
)

func secureEnclaveSupport() error { return nil }
