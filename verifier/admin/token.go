package admin

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/clearance/clearance/pkg/atomicfile"
	"github.com/clearance/clearance/verifier/secretfile"
)

// TokenFile is the admin token's file name in the data dir.
const TokenFile = "admin.token"

// LoadOrCreateToken reads the admin token from path, creating a random one
// (0600) if the file does not exist. A token file that is a symbolic link, is
// not ours, or is readable by group or others is refused: it grants full
// control of the verifier, and an admin's command sends it to the server.
func LoadOrCreateToken(path string) (string, error) {
	b, err := secretfile.Read(path)
	if errors.Is(err, fs.ErrNotExist) {
		var raw [32]byte
		if _, err := rand.Read(raw[:]); err != nil {
			return "", err
		}
		tok := base64.RawURLEncoding.EncodeToString(raw[:])
		if err := atomicfile.Write(path, []byte(tok+"\n"), 0o600); err != nil {
			return "", fmt.Errorf("creating admin token: %w", err)
		}
		return tok, nil
	}
	if err != nil {
		return "", fmt.Errorf("reading admin token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < 32 {
		return "", fmt.Errorf("%s holds a token shorter than 32 characters; delete it to have a new one generated", path)
	}
	return tok, nil
}
