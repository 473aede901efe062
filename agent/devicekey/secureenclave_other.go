//go:build !darwin || !cgo

package devicekey

import (
	"errors"
	"runtime"
)

func secureEnclaveSupport() error {
	if runtime.GOOS == "darwin" {
		return errors.New("Secure Enclave keys are not supported by this build (compiled without cgo)")
	}
	return errors.New("Secure Enclave keys are not supported on this platform")
}
