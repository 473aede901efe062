package secretfile

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/clearance/clearance/pkg/atomicfile"
)

// MinTokenLen is the shortest bearer token LoadOrCreateToken accepts.
const MinTokenLen = 32

// LoadOrCreateToken reads the bearer token in path (a secret file, read as
// Read reads it), creating a random one (32 bytes, base64url, 0600) if the
// file does not exist; what names the token in errors ("admin token").
func LoadOrCreateToken(path, what string) (string, error) {
	b, err := Read(path)
	if errors.Is(err, fs.ErrNotExist) {
		var raw [32]byte
		if _, err := rand.Read(raw[:]); err != nil {
			return "", err
		}
		tok := base64.RawURLEncoding.EncodeToString(raw[:])
		if err := atomicfile.Write(path, []byte(tok+"\n"), 0o600); err != nil {
			return "", fmt.Errorf("creating the %s: %w", what, err)
		}
		return tok, nil
	}
	if err != nil {
		return "", fmt.Errorf("reading the %s: %w", what, err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < MinTokenLen {
		return "", fmt.Errorf("%s holds a token shorter than %d characters; delete it to have a new one generated", path, MinTokenLen)
	}
	return tok, nil
}
