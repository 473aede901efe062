package scim

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
)

// randomID is a resource id: 16 random bytes in hex, never reused.
func randomID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

func itoa(n int) string { return strconv.Itoa(n) }
